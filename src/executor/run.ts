/**
 * RUN: an overlayfs snapshot over the step's parent layers, a container started by the OCI
 * runtime on it, and the upper directory kept as the step's layer. `--mount` types: cache
 * (persistent per id, shared across builds, never in a layer), bind (from the context or a
 * stage, read-only unless rw), tmpfs, secret (from --secret; never in a layer, key or log).
 * Mount points that did not exist are removed from the layer afterwards.
 */
import { chownSync, existsSync, lstatSync, mkdirSync, readdirSync, renameSync, rmdirSync, rmSync, writeFileSync } from "node:fs";
import { join, posix } from "node:path";
import type { LocalStore } from "../cache/store.ts";
import type { BuildContext } from "../context/context.ts";
import type { Instruction } from "../frontend/instructions.ts";
import type { Mount } from "../frontend/mounts.ts";
import { DEFAULT_PATH, DEFAULT_SHELL, type ImageConfig } from "../image/config.ts";
import { mountOverlay, unmount } from "../snapshot/overlay.ts";
import { LayerView, resolveUser, rootfsFileReader } from "../snapshot/view.ts";
import { executeCopy } from "./copy.ts";
import { acquireCacheMount, type CacheMountLease } from "./cache-mount.ts";
import { runContainer, type RuntimeMount } from "./runtime.ts";

type Run = Extract<Instruction, { kind: "RUN" }>;

export class RunFailedError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    readonly tail: string[],
  ) {
    super(message);
  }
}

export interface RunInputs {
  instruction: Run;
  config: ImageConfig;
  /** The step's environment: ENV and ARG values in scope. */
  env: [string, string][];
  /** Parent layers' snapshot directories, bottom first. */
  lowers: string[];
  store: LocalStore;
  context: BuildContext;
  /** Snapshot directories (bottom first) of stages a mount reads, by stage reference. */
  stageLayers: (reference: string) => string[] | undefined;
  secrets: Map<string, Buffer>;
  network: "none" | "host";
  onOutput: (line: string) => void;
}

/** The command RUN runs: a lone heredoc is the script; other heredocs go to the shell. */
export function runArgs(instruction: Run, shell: string[] | undefined): string[] {
  const sh = shell ?? DEFAULT_SHELL;
  if (instruction.command.form === "exec") return instruction.command.args;
  const text = instruction.command.text;
  if (instruction.heredocs.length === 1 && /^\d*<<-?\s*["']?[^\s"']+["']?\s*$/.test(text.trim())) {
    return [...sh, instruction.heredocs[0].content];
  }
  if (instruction.heredocs.length === 0) return [...sh, text];
  return [...sh, text + "\n" + instruction.heredocs.map((h) => `${h.content}${h.name}`).join("\n")];
}

/**
 * Runs the step in `work` (a staging directory the caller removes); returns the directory
 * holding its layer (overlay upper format), inside `work`.
 */
export async function executeRun(inputs: RunInputs, work: string): Promise<string> {
  const { store, instruction, config } = inputs;
  const upper = join(work, "upper");
  const overlayWork = join(work, "work");
  const rootfs = join(work, "rootfs");
  const bundle = join(work, "bundle");
  for (const dir of [upper, overlayWork, rootfs, bundle]) mkdirSync(dir, { recursive: true });
  const mounted: string[] = [];
  const leases: CacheMountLease[] = [];
  let secretDir: string | undefined;
  try {
    const lowers = inputs.lowers.length ? [...inputs.lowers].reverse() : [emptyLower(work)];
    mountOverlay({ lowers, upper, work: overlayWork, target: rootfs });
    mounted.push(rootfs);

    const cwd = config.config.WorkingDir || "/";
    mkdirSync(join(rootfs, cwd), { recursive: true }); // WORKDIR exists for RUN, as in BuildKit
    const user = resolveUser(config.config.User, rootfsFileReader(rootfs));

    // Mount points that do not exist yet are created for the run and removed afterwards.
    const createdMountPoints: string[] = [];
    const runtimeMounts: RuntimeMount[] = [];
    const env = new Map(inputs.env);
    if (!env.has("PATH")) env.set("PATH", DEFAULT_PATH);
    for (const mount of instruction.mounts) {
      const target = mount.type === "secret" ? mount.target : posix.resolve(cwd, mount.target);
      if (target && !existsSync(join(rootfs, target))) {
        createdMountPoints.push(target);
        mkdirSync(join(rootfs, target), { recursive: true });
      }
      switch (mount.type) {
        case "cache": {
          const lease = await acquireCacheMount(store, mount);
          leases.push(lease);
          runtimeMounts.push({ destination: target!, type: "bind", source: lease.path, options: ["rbind", mount.readonly ? "ro" : "rw"] });
          break;
        }
        case "tmpfs":
          runtimeMounts.push({ destination: target!, type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", ...(mount.sizeBytes ? [`size=${mount.sizeBytes}`] : [])] });
          break;
        case "secret": {
          const value = inputs.secrets.get(mount.id);
          if (value === undefined) {
            if (mount.required) throw new RunFailedError(`secret "${mount.id}" is required but was not given (--secret id=${mount.id},src=PATH)`, 1, []);
            break;
          }
          if (mount.env) env.set(mount.env, value.toString("utf8"));
          if (mount.target) {
            // Secrets live in memory (tmpfs), never in the cache directory or a layer.
            secretDir ??= makeSecretDir();
            const file = join(secretDir, `s${runtimeMounts.length}`);
            writeFileSync(file, value, { mode: mount.mode });
            chownSync(file, mount.uid, mount.gid);
            if (createdMountPoints.at(-1) === mount.target) {
              rmdirSync(join(rootfs, mount.target));
              writeFileSync(join(rootfs, mount.target), "");
            }
            runtimeMounts.push({ destination: mount.target, type: "bind", source: file, options: ["bind", "ro"] });
          }
          break;
        }
        case "bind": {
          const source = bindSource(inputs, mount, work, mounted);
          runtimeMounts.push({ destination: target!, type: "bind", source, options: ["rbind", mount.readonly ? "ro" : "rw"] });
          break;
        }
      }
    }

    const result = await runContainer(
      {
        rootfs,
        args: runArgs(instruction, config.config.Shell),
        env: [...env].map(([k, v]) => `${k}=${v}`),
        cwd,
        uid: user.uid,
        gid: user.gid,
        additionalGids: user.additionalGids,
        mounts: runtimeMounts,
        network: inputs.network === "host" || instruction.network === "host" ? "host" : "none",
      },
      bundle,
      inputs.onOutput,
    );
    if (result.exitCode !== 0) {
      throw new RunFailedError(`process did not complete successfully: exit code ${result.exitCode}`, result.exitCode, result.tail);
    }
    for (const target of mounted.splice(0).reverse()) unmount(target);
    removeCreatedMountPoints(upper, createdMountPoints);
    const layer = join(work, "layer");
    renameSync(upper, layer);
    return layer;
  } finally {
    for (const target of mounted.reverse()) unmount(target);
    for (const lease of leases) lease.release();
    if (secretDir) rmSync(secretDir, { recursive: true, force: true });
  }
}

function emptyLower(work: string): string {
  const dir = join(work, "empty");
  mkdirSync(dir, { recursive: true });
  return dir;
}

function makeSecretDir(): string {
  const base = existsSync("/dev/shm") ? "/dev/shm" : "/run";
  const dir = join(base, `memobuild-secrets-${process.pid}-${Math.random().toString(36).slice(2)}`);
  mkdirSync(dir, { mode: 0o700 });
  return dir;
}

/** Where a bind mount's content comes from: a copy of context files, or a stage's rootfs. */
function bindSource(inputs: RunInputs, mount: Extract<Mount, { type: "bind" }>, work: string, mounted: string[]): string {
  const dir = join(work, `bind-${mounted.length}-${Math.random().toString(36).slice(2, 8)}`);
  if (mount.from === undefined) {
    // The context as the build sees it (.dockerignore applied), not the raw directory.
    mkdirSync(dir);
    const source = mount.source || ".";
    executeCopy(
      {
        instruction: { kind: "COPY", location: inputs.instruction.location, sources: [source], inline: [], dest: "/", link: false, excludes: [], parents: false },
        workdir: "/",
        view: new LayerView([]), // a fresh directory: nothing below it
        owner: { uid: 0, gid: 0 },
        context: inputs.context,
      },
      dir,
    );
    const selected = inputs.context.byPath.get(inputs.context.resolveSource(source)[0]);
    if (selected && selected.type !== "dir") return join(dir, posix.basename(source));
    return dir;
  }
  const layers = inputs.stageLayers(mount.from);
  if (!layers) throw new RunFailedError(`--mount from=${mount.from}: no such stage or image`, 1, []);
  const root = join(dir, "root");
  if (mount.readonly) {
    mountOverlay({ lowers: [...layers].reverse(), target: root });
  } else {
    const upper = join(dir, "upper");
    const overlayWork = join(dir, "work");
    mkdirSync(upper, { recursive: true });
    mkdirSync(overlayWork, { recursive: true });
    mountOverlay({ lowers: [...layers].reverse(), upper, work: overlayWork, target: root });
  }
  mounted.push(root);
  const source = join(root, posix.normalize("/" + (mount.source || "/")));
  if (!existsSync(source)) throw new RunFailedError(`--mount from=${mount.from}: ${mount.source} does not exist there`, 1, []);
  return source;
}

/** Removes mount points the run created, when they are still empty. */
function removeCreatedMountPoints(upper: string, createdMountPoints: string[]) {
  for (const mountPoint of createdMountPoints.reverse()) {
    let path = join(upper, mountPoint);
    try {
      const stat = lstatSync(path);
      if (stat.isDirectory() && readdirSync(path).length === 0) rmdirSync(path);
      else if (stat.isFile() && stat.size === 0) rmSync(path);
    } catch {
      continue;
    }
    // Parents created only for the mountPoint go too.
    for (let parent = posix.dirname(mountPoint); parent !== "/"; parent = posix.dirname(parent)) {
      path = join(upper, parent);
      try {
        if (readdirSync(path).length > 0) break;
        rmdirSync(path);
      } catch {
        break;
      }
    }
  }
}
