/**
 * What `--add-host`, `--shm-size` and `--ulimit` change in every RUN's container, as docker
 * build reads them. They change what a RUN sees, so they are part of its key (only when given:
 * keys of builds without them do not change).
 */
import { isIP } from "node:net";
import { parseSize } from "../util/sizes.ts";
import { UserError } from "../errors.ts";
import { HOST_GATEWAY } from "./network.ts";

export interface Ulimit {
  /** As docker names it: nofile, nproc, ... */
  name: string;
  soft: number;
  hard: number;
}

export interface Sandbox {
  /** Extra /etc/hosts entries: [name, address]. */
  hosts: [string, string][];
  /** /dev/shm's size in bytes (default 64 MiB, as docker's). */
  shmBytes?: number;
  ulimits: Ulimit[];
}

export const DEFAULT_SHM_BYTES = 64 * 1024 * 1024;
const ULIMITS = ["core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack"];

/** `--add-host NAME:IP` (or NAME=IP, or NAME:host-gateway); an IPv6 address may be in brackets. */
export function parseAddHost(spec: string): [string, string] {
  const separator = /^[^:=]+[:=]/.exec(spec);
  if (!separator) throw new UserError(`--add-host ${spec}: use NAME:IP`);
  const name = spec.slice(0, separator[0].length - 1);
  const address = spec.slice(separator[0].length).replace(/^\[(.*)\]$/, "$1");
  if (!/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(name)) throw new UserError(`--add-host ${spec}: "${name}" is not a host name`);
  // host-gateway stays a name here: its address depends on each RUN's network (network.ts).
  if (!isIP(address) && address !== HOST_GATEWAY) throw new UserError(`--add-host ${spec}: "${address}" is not an IP address (or host-gateway)`);
  return [name, address];
}

/** `--ulimit NAME=SOFT[:HARD]` (-1: unlimited). */
export function parseUlimit(spec: string): Ulimit {
  const match = /^([a-z]+)=(-?\d+)(?::(-?\d+))?$/.exec(spec);
  if (!match) throw new UserError(`--ulimit ${spec}: use NAME=SOFT[:HARD], e.g. nofile=1024:2048`);
  const [, name, softText, hardText] = match;
  if (!ULIMITS.includes(name!)) throw new UserError(`--ulimit ${spec}: unknown limit "${name}" (known: ${ULIMITS.join(", ")})`);
  const value = (text: string) => (Number(text) === -1 ? Number.MAX_SAFE_INTEGER : Number(text));
  const soft = value(softText!);
  const hard = hardText === undefined ? soft : value(hardText);
  if (soft > hard) throw new UserError(`--ulimit ${spec}: the soft limit is above the hard one`);
  return { name: name!, soft, hard };
}

export function parseShmSize(spec: string): number {
  let bytes: number;
  try {
    bytes = parseSize(spec);
  } catch (error) {
    throw new UserError(`--shm-size ${spec}: ${(error as Error).message}`);
  }
  if (bytes < 1) throw new UserError(`--shm-size ${spec}: must be more than 0`);
  return bytes;
}

/** The sandbox as a RUN's key sees it; undefined when nothing differs from the default. */
export function describeSandbox(sandbox: Sandbox | undefined): string | undefined {
  if (!sandbox) return undefined;
  const parts = [
    ...sandbox.hosts.map(([name, address]) => `host ${name}=${address}`),
    ...(sandbox.shmBytes !== undefined && sandbox.shmBytes !== DEFAULT_SHM_BYTES ? [`shm ${sandbox.shmBytes}`] : []),
    ...sandbox.ulimits.map((u) => `ulimit ${u.name}=${u.soft}:${u.hard}`),
  ];
  return parts.length ? parts.join("; ") : undefined;
}

/** Whether some --add-host names the host itself (its loopback is then reachable from RUN). */
export function wantsHostGateway(sandbox: Sandbox | undefined): boolean {
  return sandbox?.hosts.some(([, address]) => address === HOST_GATEWAY) ?? false;
}

/** The OCI runtime's rlimits for the ulimits. */
export function rlimits(ulimits: Ulimit[]): { type: string; soft: number; hard: number }[] {
  return ulimits.map((u) => ({ type: `RLIMIT_${u.name.toUpperCase()}`, soft: u.soft, hard: u.hard }));
}
