/**
 * A RUN's network, as BuildKit gives one: by default ("default") a network namespace of its own
 * whose only way out is a user-mode TCP/IP stack (slirp4netns) running on the host side, so the
 * RUN reaches the internet and the host's DNS without any change to the host's firewall, routes
 * or interfaces; "none" is an empty namespace (loopback only); "host" shares the host's.
 *
 * slirp4netns gives the namespace tap0 = 10.0.2.100/24, a gateway 10.0.2.2 and a DNS forwarder
 * 10.0.2.3 (which asks the host's resolvers). Its gateway also answers for the host's own
 * loopback, but only when a RUN was given `--add-host NAME:host-gateway`: by default a RUN
 * cannot reach services the host keeps on 127.0.0.1 (as BuildKit's rootless network).
 *
 * Each RUN has its own namespace, bound to a file under /run/memobuild-net/PID-RANDOM so the
 * runtime can join it and slirp4netns can find it. One namespace per build, shared by its RUNs,
 * would save starting slirp4netns again for each, but RUNs of a build may run at the same time
 * and would then reach each other's loopback services and abstract Unix sockets (those belong
 * to the network namespace), and a RUN --security=insecure (CAP_NET_ADMIN) could change routes
 * or filters for the RUNs after it; BuildKit gives each RUN its own, and so do we. What is made
 * cheaper instead: the namespace by system calls (no `unshare` process), and slirp4netns started
 * while the RUN's file system is set up, waited for only just before the container starts. slirp4netns exits when the pipe on its stdin
 * closes, which the kernel does when the build dies, even by kill -9; the next command unmounts
 * what such a build left (`reapAbandonedNetworks`).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { RuntimeError } from "./runtime.ts";
import { randomHex } from "../util/random.ts";
import { umount } from "../sys/libc.ts";
import { createNetworkNamespace } from "../sys/namespace.ts";
import { terminalText } from "../util/terminal-text.ts";

export const NETWORK_MODES = ["default", "none", "host"] as const;
export type NetworkMode = (typeof NETWORK_MODES)[number];

/** What `--add-host NAME:host-gateway` names: the host, as the RUN's network reaches it. */
export const HOST_GATEWAY = "host-gateway";
/** slirp4netns's fixed addresses (with --configure and its default 10.0.2.0/24). */
export const SLIRP_GATEWAY = "10.0.2.2";
const SLIRP_DNS = "10.0.2.3";
/** The tap device slirp4netns serves in a RUN's namespace. */
const TAP = "tap0";

const BASE = "/run/memobuild-net";
/** How long slirp4netns may take to set the namespace up (it takes milliseconds). */
const READY_TIMEOUT_MS = 10_000;

/**
 * slirp4netns processes told to stop that have not exited yet: a RUN does not wait for that, the
 * build waits for all of them once, at its end (`networksStopped`), so none outlives it. (Each
 * took ~20-30 ms to exit while it unregistered its own tap device; see `createNamespace`.)
 */
const exiting = new Set<Promise<void>>();

/** Settles once every slirp4netns stopped so far has exited. */
export async function networksStopped() {
  while (exiting.size > 0) await Promise.all(exiting);
}

/** The network a RUN's container gets. */
export interface RunNetwork {
  /** A network namespace for the runtime to join (default mode); none: the runtime's own choice. */
  namespace?: string;
  /** /etc/resolv.conf as the RUN must see it. */
  resolvConf: string;
  /** The address `host-gateway` stands for in /etc/hosts. */
  hostGateway: string;
  /** Settles when the network is usable (slirp4netns has configured it); rejects if it cannot be. */
  ready: Promise<void>;
  /** Stops the user-mode stack (its exit is awaited by `networksStopped`) and removes the namespace. */
  close(): Promise<void>;
}

/** The mode a RUN runs with: its own --network, unless absent or "default" (then the build's). */
export function effectiveNetwork(instruction: NetworkMode | undefined, build: NetworkMode): NetworkMode {
  return instruction === undefined || instruction === "default" ? build : instruction;
}

/**
 * The RUN's network, being set up: its container may start once `ready` settles. `hostLoopback`:
 * whether the gateway address reaches the host's loopback (only when the build asked for
 * host-gateway). The caller must `close()` it, ready or not.
 */
export function openNetwork(mode: NetworkMode, options: { hostLoopback: boolean }): RunNetwork {
  const hostResolv = readHostResolvConf();
  const nothing = { ready: Promise.resolve(), close: async () => {} };
  if (mode === "host") return { resolvConf: hostResolv, hostGateway: "127.0.0.1", ...nothing };
  // An empty namespace has no resolver to name; host-gateway stays unreachable there.
  if (mode === "none") return { resolvConf: "", hostGateway: SLIRP_GATEWAY, ...nothing };
  const slirp = findSlirp();
  const namespace = createNamespace();
  let stack: ReturnType<typeof startSlirp>;
  try {
    stack = startSlirp(slirp, namespace, options.hostLoopback);
  } catch (error) {
    removeNamespace(namespace);
    throw error;
  }
  return {
    namespace,
    resolvConf: sandboxResolvConf(hostResolv),
    hostGateway: SLIRP_GATEWAY,
    ready: stack.ready,
    close: async () => {
      const stopping = stack.stop();
      exiting.add(stopping);
      void stopping.finally(() => exiting.delete(stopping));
      // Lazily: slirp4netns still holds the namespace (by descriptor) until it has exited.
      removeNamespace(namespace);
    },
  };
}

function findSlirp(): string {
  const path = Bun.which("slirp4netns") ?? (existsSync("/usr/bin/slirp4netns") ? "/usr/bin/slirp4netns" : undefined);
  if (!path) throw new RuntimeError("RUN's default network needs slirp4netns (apt-get install slirp4netns); or build with --network none");
  return path;
}

function readHostResolvConf(): string {
  try {
    return readFileSync("/etc/resolv.conf", "utf8").slice(0, 64 * 1024);
  } catch {
    return ""; // no resolver configured on the host: an empty file, as the container would see
  }
}

/**
 * The host's resolv.conf with its name servers replaced by slirp4netns's forwarder: a server
 * the host reaches on its loopback (systemd-resolved's 127.0.0.53) is not the RUN's loopback,
 * and the forwarder asks the host's servers on the RUN's behalf. Search domains and options stay.
 */
export function sandboxResolvConf(host: string): string {
  const kept = host.split("\n").filter((line) => line.trim() !== "" && !/^\s*nameserver\s/.test(line));
  return [`nameserver ${SLIRP_DNS}`, ...kept].join("\n") + "\n";
}

/**
 * A new network namespace, kept alive by a bind mount on a file of our own, with slirp4netns's
 * tap device already in it, persistent: a tap its own process made is unregistered when that
 * process exits, inside its exit, waiting ~20-30 ms for the kernel (RCU); the build waited for
 * that after its last RUN. A persistent one goes with the namespace, in the kernel's own worker,
 * and slirp4netns exits in under a millisecond.
 */
function createNamespace(): string {
  mkdirSync(BASE, { recursive: true, mode: 0o700 });
  const path = join(BASE, `${process.pid}-${randomHex(6)}`);
  writeFileSync(path, "", { mode: 0o600, flag: "wx" }); // a new file, never one planted there
  try {
    createNetworkNamespace(path, TAP);
  } catch (error) {
    rmSync(path, { force: true });
    throw new RuntimeError(`could not create a network namespace for RUN: ${(error as Error).message}`);
  }
  return path;
}

function removeNamespace(path: string) {
  umount(path, true); // lazily: a process of the RUN may still be leaving it
  rmSync(path, { force: true });
}

/**
 * slirp4netns on the namespace. Its stdin is a pipe only we hold (--exit-fd=0): when it closes,
 * because we stop it or because this process died, slirp4netns exits. It writes "1" on fd 3
 * once tap0 is configured: `ready` settles then, and the RUN starts only after it.
 */
function startSlirp(slirp: string, namespace: string, hostLoopback: boolean): { ready: Promise<void>; stop(): Promise<void> } {
  const args = [slirp, "--configure", "--mtu=65520", "--enable-sandbox", "--enable-seccomp", "--exit-fd=0", "--ready-fd=3", "--netns-type=path"];
  if (!hostLoopback) args.push("--disable-host-loopback");
  const child = Bun.spawn([...args, namespace, TAP], { stdio: ["pipe", "ignore", "pipe", "pipe"] });
  let stopped: Promise<void> | undefined;
  // Once, whoever asks first (a failed start, then the RUN's close).
  const stop = () =>
    (stopped ??= (async () => {
      child.stdin.end();
      if ((await within(child.exited, 5_000)) === undefined) child.kill("SIGKILL");
      await child.exited;
    })());
  const ready = (async () => {
    const reader = Bun.file(child.stdio[3] as number).stream().getReader();
    const answer = await within(reader.read(), READY_TIMEOUT_MS);
    void reader.cancel().catch(() => {});
    if (answer !== undefined && !answer.done) return;
    await stop();
    // Its own words, made safe to print (it is another program, and may say anything).
    const why = answer === undefined ? "it did not get ready in time" : terminalText((await new Response(child.stderr).text()).trim().split("\n").slice(-3).join("; "), { max: 500 });
    throw new RuntimeError(`slirp4netns could not set up RUN's network (${why}); build with --network none to run without one`);
  })();
  // A RUN that fails before it would start never awaits this; its close() stops slirp4netns.
  ready.catch(() => {});
  return { ready, stop };
}

/** What `promise` gives, or undefined after `ms` (the timer never outlives the answer). */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: Timer | undefined;
  const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  return await Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/**
 * What builds that died (kill -9, power loss) left of their networks: slirp4netns processes
 * still serving a dead build's namespace (they exit by themselves when their build dies, unless
 * the build's whole process tree was frozen) are killed, and the namespaces unmounted and removed.
 */
export function reapAbandonedNetworks(alive: (pid: number) => boolean, base = BASE) {
  let names: string[];
  try {
    names = readdirSync(base);
  } catch {
    return; // no RUN has had a network on this machine since boot
  }
  const abandoned = names.filter((name) => {
    const pid = Number(name.split("-")[0]);
    return !(Number.isInteger(pid) && pid > 0 && (pid === process.pid || alive(pid)));
  });
  if (abandoned.length === 0) return;
  const paths = new Set(abandoned.map((name) => join(base, name)));
  for (const pid of slirpProcessesOn(paths)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  for (const path of paths) removeNamespace(path);
}

/** The slirp4netns processes whose namespace argument is one of `paths`. */
function slirpProcessesOn(paths: Set<string>): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
    } catch {
      continue; // exited meanwhile
    }
    if (argv[0]?.endsWith("slirp4netns") && argv.some((arg) => paths.has(arg))) found.push(Number(entry));
  }
  return found;
}
