/**
 * The OCI image config and how each Dockerfile instruction changes it, with Docker's rules:
 * WORKDIR is relative to the previous one, CMD/ENTRYPOINT in shell form run through SHELL,
 * ENTRYPOINT drops a CMD inherited from the base image, ENV replaces a variable in place.
 * (Healthcheck, OnBuild and Shell are Docker's extensions of the config; tools ignore them.)
 */
import { posix } from "node:path";
import type { CommandLine, Instruction } from "../frontend/instructions.ts";

export interface Healthcheck {
  Test: string[];
  Interval?: number;
  Timeout?: number;
  StartPeriod?: number;
  StartInterval?: number;
  Retries?: number;
}

export interface ContainerConfig {
  User?: string;
  ExposedPorts?: Record<string, object>;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Volumes?: Record<string, object> | null;
  WorkingDir?: string;
  Labels?: Record<string, string> | null;
  StopSignal?: string;
  Healthcheck?: Healthcheck;
  OnBuild?: string[] | null;
  Shell?: string[];
}

export interface HistoryEntry {
  created?: string;
  created_by?: string;
  comment?: string;
  empty_layer?: boolean;
}

export interface ImageConfig {
  created?: string;
  author?: string;
  architecture: string;
  os: string;
  variant?: string;
  config: ContainerConfig;
  rootfs: { type: "layers"; diff_ids: string[] };
  history?: HistoryEntry[];
}

export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
export const DEFAULT_SHELL = ["/bin/sh", "-c"];

export function emptyConfig(platform: { os: string; architecture: string; variant?: string }): ImageConfig {
  return {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    // BuildKit's empty image has WorkingDir "/" (dockerfile2llb's emptyImage): FROM scratch shows it.
    config: { Env: [`PATH=${DEFAULT_PATH}`], WorkingDir: "/" },
    rootfs: { type: "layers", diff_ids: [] },
    history: [],
  };
}

export function cloneConfig(config: ImageConfig): ImageConfig {
  return structuredClone(config);
}

export function getEnv(config: ImageConfig, name: string): string | undefined {
  const prefix = `${name}=`;
  return config.config.Env?.find((e) => e.startsWith(prefix))?.slice(prefix.length);
}

function setEnv(config: ImageConfig, name: string, value: string) {
  const env = (config.config.Env ??= []);
  const index = env.findIndex((e) => e.startsWith(`${name}=`));
  if (index >= 0) env[index] = `${name}=${value}`;
  else env.push(`${name}=${value}`);
}

/** The working directory after `WORKDIR path`: relative to the current one, as Docker's rule. */
export function workdirAfter(config: ImageConfig, path: string): string {
  return posix.resolve(config.config.WorkingDir || "/", path);
}

/** A command in the form the config stores: exec form as is, shell form through the shell. */
export function commandArgs(command: CommandLine, shell: string[] | undefined): string[] {
  return command.form === "exec" ? [...command.args] : [...(shell ?? DEFAULT_SHELL), command.text];
}

/** Per-stage state Docker's rules need: was CMD set in this stage (before ENTRYPOINT)? */
export interface StageConfigState {
  cmdSet: boolean;
}

/**
 * Applies a metadata instruction (everything but FROM/RUN/COPY/ADD, which the executor
 * handles) to the config, in place.
 */
export function applyInstruction(config: ImageConfig, instruction: Instruction, state: StageConfigState) {
  const c = config.config;
  switch (instruction.kind) {
    case "ENV":
      for (const [key, value] of instruction.pairs) setEnv(config, key, value);
      break;
    case "LABEL":
      c.Labels = { ...(c.Labels ?? {}) };
      for (const [key, value] of instruction.pairs) c.Labels[key] = value;
      break;
    case "WORKDIR":
      c.WorkingDir = workdirAfter(config, instruction.path);
      break;
    case "USER":
      c.User = instruction.user;
      break;
    case "CMD":
      c.Cmd = commandArgs(instruction.command, c.Shell);
      state.cmdSet = true;
      break;
    case "ENTRYPOINT":
      c.Entrypoint = commandArgs(instruction.command, c.Shell);
      if (!state.cmdSet) c.Cmd = null; // a CMD from the base image does not fit a new ENTRYPOINT
      break;
    case "SHELL":
      c.Shell = [...instruction.shell];
      break;
    case "EXPOSE":
      c.ExposedPorts = { ...(c.ExposedPorts ?? {}) };
      for (const port of instruction.ports) c.ExposedPorts[port] = {};
      break;
    case "VOLUME":
      c.Volumes = { ...(c.Volumes ?? {}) };
      for (const path of instruction.paths) c.Volumes[path] = {};
      break;
    case "STOPSIGNAL":
      c.StopSignal = instruction.signal;
      break;
    case "HEALTHCHECK": {
      const h = instruction.healthcheck;
      if (h.type === "NONE") {
        c.Healthcheck = { Test: ["NONE"] };
        break;
      }
      const ns = (ms?: number) => (ms === undefined ? undefined : Math.round(ms * 1e6));
      c.Healthcheck = {
        Test: h.test,
        ...(h.intervalMs !== undefined ? { Interval: ns(h.intervalMs) } : {}),
        ...(h.timeoutMs !== undefined ? { Timeout: ns(h.timeoutMs) } : {}),
        ...(h.startPeriodMs !== undefined ? { StartPeriod: ns(h.startPeriodMs) } : {}),
        ...(h.startIntervalMs !== undefined ? { StartInterval: ns(h.startIntervalMs) } : {}),
        ...(h.retries !== undefined ? { Retries: h.retries } : {}),
      };
      break;
    }
    case "ONBUILD":
      c.OnBuild = [...(c.OnBuild ?? []), instruction.trigger];
      break;
    case "MAINTAINER":
      config.author = instruction.maintainer;
      break;
    case "ARG":
      break; // build-time only
    default:
      throw new Error(`${instruction.kind} changes the filesystem, not only the config`);
  }
}

/** The history line Docker shows for a step. */
export function historyEntry(text: string, emptyLayer: boolean, created: string): HistoryEntry {
  return { created, created_by: `${text.split("\n")[0]} # memobuild`, ...(emptyLayer ? { empty_layer: true } : {}) };
}
