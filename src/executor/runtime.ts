/**
 * Runs a process in a container through a real OCI runtime: crun, or runc when crun is missing.
 * We write the bundle's config.json (namespaces, mounts, user, environment); the runtime does
 * the rest. On hosts that mix cgroup v1 and v2 (hybrid mode) crun refuses to start, so the
 * runtime is started in a private mount namespace with /sys/fs/cgroup/unified unmounted there
 * (made by system calls, src/sys/namespace.ts: no wrapper processes).
 */
import { randomHex } from "../util/random.ts";
import { UserError } from "../errors.ts";
import { constants, existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { spawnInNewMountNamespace } from "../sys/namespace.ts";
import { seccompProfile } from "./seccomp.ts";
import { addSeals, ALL_SEALS, closeFd, memfdCreate, openPath, sendAll, umount } from "../sys/libc.ts";

export interface RuntimeMount {
  destination: string;
  type: "bind" | "tmpfs";
  source: string;
  options: string[];
}

export interface ContainerSpec {
  rootfs: string;
  args: string[];
  env: string[];
  cwd: string;
  uid: number;
  gid: number;
  additionalGids?: number[];
  mounts: RuntimeMount[];
  /** "none" (own empty network namespace), "host", or a namespace made beforehand (see network.ts) to join. */
  network: "none" | "host" | { namespace: string };
  hostname?: string;
  /**
   * RUN --security=insecure: every capability, /proc and /sys writable and unmasked, no seccomp filter, as
   * BuildKit's privileged mode (the host's devices are not added: /dev stays the container's).
   */
  privileged?: boolean;
  /** /dev/shm's size (default 64 MiB). */
  shmBytes?: number;
  rlimits?: { type: string; soft: number; hard: number }[];
}

export interface RunOutput {
  exitCode: number;
  /** The last lines of combined output, for error messages. */
  tail: string[];
}

export class RuntimeError extends UserError {}

/** The longest line of RUN output passed on as one line. */
export const MAX_LINE = 16 * 1024;

/** Docker's default capability set for containers. */
const CAPABILITIES = [
  "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID",
  "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
];

/** Capability names by number (linux/capability.h, up to CAP_CHECKPOINT_RESTORE = 40). */
const CAPABILITY_NAMES = [
  "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP", "LINUX_IMMUTABLE",
  "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT",
  "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE",
  "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
  "PERFMON", "BPF", "CHECKPOINT_RESTORE",
].map((name) => `CAP_${name}`);

/**
 * For a privileged RUN: every capability this process may hand on (its bounding set), as
 * Docker's privileged mode does; asking for one outside it makes the runtime fail.
 */
function allCapabilities(): string[] {
  const line = /^CapBnd:\s*([0-9a-f]+)$/m.exec(readFileSync("/proc/self/status", "utf8"));
  const bits = BigInt(`0x${line?.[1] ?? "0"}`);
  return CAPABILITY_NAMES.filter((_, bit) => (bits >> BigInt(bit)) & 1n);
}

export function findRuntime(): string {
  for (const name of ["crun", "runc"]) {
    const path = Bun.which(name) ?? (existsSync(`/usr/sbin/${name}`) ? `/usr/sbin/${name}` : undefined);
    if (path) return path;
  }
  throw new RuntimeError("no OCI runtime found: install crun (apt-get install crun) or runc");
}

/**
 * crun is told to make no cgroup for the container. The cgroups it would make hold no limit and
 * no device rule (the config asks for none), and they sit at the root of each hierarchy, so they
 * took a RUN out of the cgroups the builder runs in (an operator's memory or pids limit on
 * memobuild did not apply to its RUNs; now they do). Moving a process into a cgroup v1 takes the
 * kernel's cgroup_threadgroup_rwsem for writing, which waits for an RCU grace period: 7-20 ms of
 * wall time per RUN on the 2-core VM (crun run: 23-27 ms with, 9-13 ms without). Processes a RUN
 * leaves behind still die with it: they are in its PID namespace, whose end kills them.
 * runc has no such option and keeps its default.
 */
export function globalOptions(runtime: string): string[] {
  return isCrun(runtime) ? ["--cgroup-manager=disabled"] : [];
}

const isCrun = (runtime: string) => runtime.endsWith("/crun") || runtime === "crun";

/**
 * crun guards the binary it runs from against a container writing to it through /proc/self/exe
 * (CVE-2019-5736): unless that binary is a sealed in-memory file, it bind-mounts itself
 * read-only onto a new file in /tmp and executes itself again from there, each RUN (a second
 * exec and dynamic link, a file made and removed on disk, a mount and an unmount). Started from
 * a sealed copy, made once per process, it skips all that and is guarded the same way: the
 * copy can never be written (crun's own test is that every seal is set). `crun run` of
 * /bin/true, 20 runs: 9.2-10.5 ms median from its path, 7.6-8.0 ms from the copy. runc starts
 * from its path. Undefined when no copy can be made (then the runtime's own path is used).
 */
let sealed: { runtime: string; path: string } | null | undefined;

export function sealedCopy(runtime: string): string | undefined {
  if (!isCrun(runtime)) return undefined;
  if (sealed === undefined) {
    let fd: number | undefined;
    try {
      fd = memfdCreate("crun");
      const binary = openPath(runtime, constants.O_RDONLY);
      try {
        sendAll(fd, binary); // in the kernel: 0.3 ms for crun's 490 KB, reading and writing it 0.8-5 ms
      } finally {
        closeFd(binary);
      }
      addSeals(fd, ALL_SEALS);
      // Open as long as this process lives; its children reach it through our /proc entry.
      sealed = { runtime, path: `/proc/${process.pid}/fd/${fd}` };
    } catch {
      if (fd !== undefined) closeFd(fd);
      sealed = null;
    }
  }
  return sealed?.runtime === runtime ? sealed.path : undefined;
}

/** The runtime with `args`, from its sealed `copy` when there is one (see sealedCopy). */
function spawnRuntime(runtime: string, copy: string | undefined, args: string[]) {
  const options = { stdin: "ignore", stdout: "pipe", stderr: "pipe" } as const;
  if (copy !== undefined) {
    try {
      return Bun.spawn([copy, ...args], { ...options, argv0: runtime });
    } catch {
      sealed = null; // not executable here (a noexec policy on in-memory files): as before
    }
  }
  return Bun.spawn([runtime, ...args], options);
}

/**
 * Read once per process (0.3-0.6 ms each RUN here): the host's cgroup hierarchies are mounted
 * at boot and do not change while a build runs.
 */
let hybrid: boolean | undefined;
function hybridCgroups(): boolean {
  if (hybrid !== undefined) return hybrid;
  try {
    hybrid = readFileSync("/proc/self/mountinfo", "utf8").includes(" /sys/fs/cgroup/unified ");
  } catch {
    hybrid = false;
  }
  return hybrid;
}

/**
 * The devices a container can open. A RUN is root with CAP_MKNOD and no device cgroup (crun
 * makes no cgroup, see globalOptions; a device cgroup's rules would cost a cgroup per RUN), so
 * the rule is kept by mounts instead: every place a RUN can make or find a device node is nodev
 * (the root overlay, /dev, /dev/shm, every --mount; /proc, /sys and devpts make none), and these,
 * BuildKit's allowed devices less the terminal ones no RUN has, are bind mounts of the host's
 * nodes: each its own mount, without nodev, over the node crun makes in /dev. mknod still works
 * and its node is kept in the layer, as in BuildKit; only opening it fails (EACCES).
 *
 * A privileged RUN keeps all of this, so /dev stays the container's as documented. It is no
 * boundary there: with CAP_SYS_ADMIN it can remount without nodev or mount devtmpfs, as it can
 * mount the host's disks by other ways; that is what --allow security.insecure consents to.
 */
const DEVICES = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"];

/** A mount's options with nodev: a bind keeps its source's device nodes openable without it. */
function withNodev(options: string[]): string[] {
  return options.includes("nodev") ? options : [...options, "nodev"];
}

/**
 * crun bind-mounts the root onto itself and remounts that bind with no flags, which drops the
 * overlay's nodev; this mount entry remounts the root again, nodev, before anything runs in it.
 * "/." and not "/": crun 1.8 resolves an empty target (what "/" becomes) to no file and fails.
 * runc binds the root without a remount, so the overlay's nodev stays.
 */
export function runtimeConfig(spec: ContainerSpec, runtime: string): object {
  const namespaces: { type: string; path?: string }[] = [{ type: "pid" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }];
  if (spec.network === "none") namespaces.push({ type: "network" });
  else if (spec.network !== "host") namespaces.push({ type: "network", path: spec.network.namespace });
  const capabilities = spec.privileged ? allCapabilities() : CAPABILITIES;
  return {
    ociVersion: "1.0.2",
    process: {
      terminal: false,
      user: { uid: spec.uid, gid: spec.gid, additionalGids: spec.additionalGids ?? [] },
      args: spec.args,
      env: spec.env,
      cwd: spec.cwd,
      capabilities: { bounding: capabilities, effective: capabilities, permitted: capabilities },
      noNewPrivileges: false,
      ...(spec.rlimits?.length ? { rlimits: spec.rlimits } : {}),
    },
    root: { path: spec.rootfs, readonly: false },
    hostname: spec.hostname ?? "memobuild",
    mounts: [
      ...(isCrun(runtime) ? [{ destination: "/.", type: "bind", source: spec.rootfs, options: ["bind", "remount", "nodev"] }] : []),
      { destination: "/proc", type: "proc", source: "proc" },
      { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "strictatime", "mode=755", "size=65536k"] },
      ...DEVICES.map((device) => ({ destination: device, type: "bind", source: device, options: ["bind", "rw", "nosuid", "noexec"] })),
      { destination: "/dev/pts", type: "devpts", source: "devpts", options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
      { destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "noexec", "nodev", "mode=1777", `size=${Math.ceil((spec.shmBytes ?? 64 * 1024 * 1024) / 1024)}k`] },
      { destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"] },
      { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", spec.privileged ? "rw" : "ro"] },
      ...spec.mounts.map((m) => ({ destination: m.destination, type: m.type, source: m.source, options: withNodev(m.options) })),
    ],
    linux: {
      namespaces,
      maskedPaths: spec.privileged ? [] : ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
      readonlyPaths: spec.privileged ? [] : ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
      // A privileged RUN is unfiltered, as in BuildKit's insecure mode.
      ...(spec.privileged ? {} : { seccomp: seccompProfile() }),
    },
  };
}

/**
 * Runs the container to completion, streaming its output to `onOutput` line by line.
 * `bundleDir` must exist; config.json is written there.
 */
export async function runContainer(spec: ContainerSpec, bundleDir: string, onOutput: (line: string, stream: "stdout" | "stderr") => void): Promise<RunOutput> {
  const runtime = findRuntime();
  // Made here, not in the namespace window below: that thread must create no other thread
  // (a thread sharing its file system context could not return), and reading and copying
  // the binary allocates enough to start the garbage collector's helpers.
  const copy = sealedCopy(runtime);
  writeFileSync(join(bundleDir, "config.json"), JSON.stringify(runtimeConfig(spec, runtime)));
  const id = `memobuild-${process.pid}-${randomHex(4)}`;
  const start = () => {
    // Known to the watchdog before the container exists, so no moment is left uncovered.
    // Started with the first RUN, in its namespace: `crun kill`/`delete` refuse hybrid cgroups too.
    watchdogOf(runtime).watch(id);
    return spawnRuntime(runtime, copy, [...globalOptions(runtime), "run", "--bundle", bundleDir, id]);
  };
  let child: ReturnType<typeof start>;
  try {
    child = hybridCgroups() ? spawnInNewMountNamespace(() => umount("/sys/fs/cgroup/unified", true), start) : start();
  } catch (error) {
    watchdog?.forget(id);
    throw error;
  }
  const tail: string[] = [];
  const pump = async (stream: ReadableStream<Uint8Array>, name: "stdout" | "stderr") => {
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of stream) {
      pending += decoder.decode(chunk, { stream: true });
      let newline: number;
      // A line is cut at MAX_LINE characters (the rest follows as further lines), so output
      // without newlines costs bounded memory; every byte is still shown.
      while ((newline = pending.indexOf("\n")) >= 0 || pending.length > MAX_LINE) {
        const cut = newline >= 0 && newline <= MAX_LINE ? newline : MAX_LINE;
        const line = pending.slice(0, cut);
        pending = pending.slice(cut === newline ? cut + 1 : cut);
        tail.push(line);
        if (tail.length > 20) tail.shift();
        onOutput(line, name);
      }
    }
    if (pending) {
      tail.push(pending);
      onOutput(pending, name);
    }
  };
  try {
    await Promise.all([pump(child.stdout, "stdout"), pump(child.stderr, "stderr")]);
    return { exitCode: await child.exited, tail };
  } finally {
    watchdog?.forget(id);
  }
}

/**
 * A container outlives its runtime process (its init is reparented when `crun run` dies), so
 * a build killed with -9 would leave it running. The watchdog, one shell per process (it was one
 * per RUN: a process more for every RUN), reads a pipe from us: "+ID" when a container starts,
 * "-ID" once its runtime has returned. When we die, the kernel closes the pipe, its loop ends,
 * and the containers it still knows are killed and deleted. When we exit normally it knows none
 * and just exits. Ids are ours (memobuild-PID-HEX): no quoting is needed.
 */
const WATCHDOG = `
ids=
while IFS= read -r line; do
  case $line in
    +*) ids="$ids \${line#+}" ;;
    -*) kept=; for id in $ids; do [ "$id" = "\${line#-}" ] || kept="$kept $id"; done; ids=$kept ;;
  esac
done
for id in $ids; do "$0" kill "$id" KILL 2>/dev/null; "$0" delete -f "$id" 2>/dev/null; done
`;

let watchdog: Watchdog | undefined;

interface Watchdog {
  watch(id: string): void;
  forget(id: string): void;
}

function watchdogOf(runtime: string): Watchdog {
  if (watchdog) return watchdog;
  const current = startWatchdog(runtime);
  watchdog = current;
  void current.exited.then(() => {
    if (watchdog === current) watchdog = undefined; // killed by someone: the next RUN starts another
  });
  return current;
}

/** A watchdog (see WATCHDOG) calling `runtime` to kill and delete what it still knows when this process dies. */
export function startWatchdog(runtime: string): Watchdog & { exited: Promise<number> } {
  const shell = Bun.spawn(["sh", "-c", WATCHDOG, runtime], { stdin: "pipe", stdout: "ignore", stderr: "ignore" });
  shell.unref(); // it must not keep this process alive: its end is this process's end
  shell.stdin.unref();
  const say = (line: string) => {
    try {
      shell.stdin.write(`${line}\n`);
      void Promise.resolve(shell.stdin.flush()).catch(() => {});
    } catch {
      // it is gone: watchdogOf starts another for the next RUN
    }
  };
  return { watch: (id) => say(`+${id}`), forget: (id) => say(`-${id}`), exited: shell.exited };
}

/**
 * Containers of memobuild processes that are gone (the watchdog died too, or the machine lost
 * power mid-RUN): killed and deleted by the next command.
 */
export function reapAbandonedContainers(alive: (pid: number) => boolean) {
  for (const stateRoot of ["/run/crun", "/run/runc"]) {
    let names: string[];
    try {
      names = readdirSync(stateRoot);
    } catch {
      continue;
    }
    for (const name of names) {
      const match = /^memobuild-(\d+)-[0-9a-f]+$/.exec(name);
      if (!match || Number(match[1]) === process.pid || alive(Number(match[1]))) continue;
      const runtime = stateRoot.endsWith("crun") ? "crun" : "runc";
      Bun.spawnSync([runtime, "kill", name, "KILL"], { stdout: "ignore", stderr: "ignore", timeout: 10_000 });
      Bun.spawnSync([runtime, "delete", "-f", name], { stdout: "ignore", stderr: "ignore", timeout: 10_000 });
    }
  }
}
