/**
 * RUN: an overlayfs snapshot over the step's parent layers, a container started by the OCI
 * runtime on it, and the upper directory kept as the step's layer. `--mount` types: cache
 * (persistent per id, shared across builds, never in a layer), bind (from the context or a
 * stage, read-only unless rw), tmpfs, secret (from --secret; never in a layer, key or log).
 * Mount points that did not exist are removed from the layer afterwards.
 */
import { rlimits, wantsHostGateway } from "./sandbox.ts";
import { effectiveNetwork, HOST_GATEWAY, openNetwork, type RunNetwork } from "./network.ts";
import { PrivateTmpfs, TMPFS_BYTES } from "./private-tmpfs.ts";
import { formatBytes } from "../util/sizes.ts";
import { chownSync, closeSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join, posix } from "node:path";
import type { Instruction } from "../frontend/instructions.ts";
import type { Mount } from "../frontend/mounts.ts";
import { DEFAULT_PATH, DEFAULT_SHELL } from "../image/config.ts";
import { Root } from "../rootfs/root.ts";
import { mount, O_PATH } from "../sys/libc.ts";
import { mountOverlay, unmount } from "../snapshot/overlay.ts";
import { resolveUser } from "../snapshot/view.ts";
import { executeCopy } from "./copy.ts";
import { relayAgent } from "./ssh.ts";
import type { CacheMount, CacheMountLease, CacheMountSeed } from "./cache-mount.ts";
import type { ResolvedStep } from "./request.ts";
import { runContainer, type RuntimeMount } from "./runtime.ts";
import { ensureEmulation } from "./emulation.ts";
import { parsePlatform } from "../frontend/platform.ts";

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

/**
 * A secret file in the RUN's private tmpfs. Full, it is that tmpfs (TMPFS_BYTES, in memory) and
 * not the disk: said so, instead of the disk-full advice to shrink the cache.
 */
function writeSecret(file: string, value: Buffer, mode: number, id: string) {
  try {
    writeFileSync(file, value, { mode });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
    const size = formatBytes(value.length);
    throw new RunFailedError(`secret "${id}" (${size}) does not fit, with this RUN's other secrets, in the ${formatBytes(TMPFS_BYTES)} in-memory file system secrets are mounted from`, 1, []);
  }
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
export async function executeRun(request: ResolvedStep, work: string): Promise<string> {
  const { instruction, config } = request;
  if (instruction.kind !== "RUN") throw new Error("not a RUN step");
  // Another architecture's programs run through QEMU: checked (and registered) before any work.
  if (request.platform) ensureEmulation(parsePlatform(request.platform));
  const upper = join(work, "upper");
  const rootfs = join(work, "rootfs");
  // The bundle (its config.json holds env secrets) and secret files live in memory only.
  const secure = PrivateTmpfs.create();
  const bundle = secure.path;
  const mounted: string[] = [];
  const leases: CacheMountLease[] = [];
  const held = new Held(work);
  const relays: { stop(): void }[] = [];
  let network: RunNetwork | undefined;
  try {
    // Started first: slirp4netns sets the network up while the file system below is prepared.
    network = openNetwork(effectiveNetwork(instruction.network, request.network), { hostLoopback: wantsHostGateway(request.sandbox) });
    mountOverlay({ layers: request.lowers, upper, work: join(work, "work"), target: rootfs });
    mounted.push(rootfs);
    const root = held.root(rootfs);

    const user = resolveUser(config.config.User, (path) => root.readFile(path)?.toString("utf8"));
    const cwd = config.config.WorkingDir || "/";
    // WORKDIR exists for RUN, owned by the user, as in BuildKit.
    root.mkdirAll(cwd, { mode: 0o755, owner: { uid: user.uid, gid: user.gid } });
    const createdMountPoints: Buffer[] = [];

    const runtimeMounts: RuntimeMount[] = [];
    let sshMounts = 0;
    const env = new Map(request.env);
    if (!env.has("PATH")) env.set("PATH", DEFAULT_PATH);
    /** Makes the mount point (a directory, or an empty file for a file source) when it is missing. */
    const mountPoint = (target: string, kind: "dir" | "file") => {
      if (root.stat(target)) return;
      if (kind === "dir") createdMountPoints.push(...root.mkdirAll(target));
      else {
        createdMountPoints.push(...root.mkdirAll(posix.dirname(target)));
        const file = root.resolvePath(target);
        root.writeFile(file, { content: "" }, { mode: 0o644 });
        createdMountPoints.push(file);
      }
    };
    // What BuildKit's runc gives every RUN and leaves behind: /dev (0755, where the runtime
    // would make it 1755) stays; /etc/hosts and /etc/resolv.conf are mounted read-only on empty
    // mount-point files that are removed after, while a new /etc stays.
    if (!root.lstat("/dev")) root.mkdirAll("/dev", { mode: 0o755 });
    for (const [name, content] of networkFiles(network, request.sandbox?.hosts ?? [])) {
      const file = join(secure.path, name.replaceAll("/", "_"));
      writeFileSync(file, content, { mode: 0o644 });
      mountPoint(name, "file");
      runtimeMounts.push({ destination: name, type: "bind", source: file, options: ["bind", "ro"] });
    }
    for (const mount of instruction.mounts) {
      const target = mount.type === "secret" ? mount.target : posix.resolve(cwd, mount.target);
      switch (mount.type) {
        case "cache": {
          const lease = await request.cacheMounts.acquire(mount, cacheSeed(request, mount, work));
          leases.push(lease);
          mountPoint(target!, "dir");
          runtimeMounts.push({ destination: target!, type: "bind", source: lease.path, options: ["rbind", mount.readonly ? "ro" : "rw"] });
          break;
        }
        case "tmpfs":
          mountPoint(target!, "dir");
          runtimeMounts.push({ destination: target!, type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", ...(mount.sizeBytes ? [`size=${mount.sizeBytes}`] : [])] });
          break;
        case "secret": {
          const value = request.secrets.get(mount.id);
          if (value === undefined) {
            if (mount.required) throw new RunFailedError(`secret "${mount.id}" is required but was not given (--secret id=${mount.id},src=PATH)`, 1, []);
            break;
          }
          if (mount.env) env.set(mount.env, value.toString("utf8"));
          if (mount.target) {
            // Secrets live in memory (a private tmpfs), never in the cache directory or a layer.
            const file = join(secure.path, `secret-${runtimeMounts.length}`);
            writeSecret(file, value, mount.mode, mount.id);
            chownSync(file, mount.uid, mount.gid);
            mountPoint(mount.target, "file");
            runtimeMounts.push({ destination: mount.target, type: "bind", source: file, options: ["bind", "ro"] });
          }
          break;
        }
        case "ssh": {
          const agent = request.ssh?.socket(mount.id);
          if (agent === undefined) {
            if (mount.required) throw new RunFailedError(`ssh agent "${mount.id}" is required but was not given (--ssh ${mount.id}[=SOCKET|KEY])`, 1, []);
            break;
          }
          // Each RUN gets a socket of its own (in memory, with the mount's owner and mode) that
          // relays to the agent; the first ssh mount is SSH_AUTH_SOCK, as in BuildKit.
          const destination = mount.target ? posix.resolve(cwd, mount.target) : `/run/buildkit/ssh_agent.${sshMounts}`;
          const socket = join(secure.path, `ssh-${sshMounts}.sock`);
          relays.push(relayAgent(agent, socket, mount));
          if (sshMounts++ === 0) env.set("SSH_AUTH_SOCK", destination);
          mountPoint(destination, "file");
          runtimeMounts.push({ destination, type: "bind", source: socket, options: ["bind"] });
          break;
        }
        case "bind": {
          const source = bindSource(request, mount, work, mounted, held);
          mountPoint(target!, source.kind);
          runtimeMounts.push({ destination: target!, type: "bind", source: source.path, options: ["rbind", mount.readonly ? "ro" : "rw"] });
          break;
        }
      }
    }

    await network.ready;
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
        network: network.namespace ? { namespace: network.namespace } : effectiveNetwork(instruction.network, request.network) === "host" ? "host" : "none",
        privileged: instruction.security === "insecure",
        shmBytes: request.sandbox?.shmBytes,
        rlimits: rlimits(request.sandbox?.ulimits ?? []),
      },
      bundle,
      request.onOutput,
    );
    if (result.exitCode !== 0) {
      throw new RunFailedError(`process did not complete successfully: exit code ${result.exitCode}`, result.exitCode, result.tail);
    }
    removeCreatedMountPoints(root, createdMountPoints);
    held.close();
    for (const target of mounted.splice(0).reverse()) unmount(target);
    const layer = join(work, "layer");
    renameSync(upper, layer);
    return layer;
  } finally {
    held.close();
    for (const target of mounted.reverse()) unmount(target);
    for (const lease of leases) lease.release();
    for (const relay of relays) relay.stop();
    await network?.close();
    secure.remove();
  }
}

/**
 * /etc/hosts (with --add-host's entries after BuildKit's own; host-gateway is the host as this
 * RUN's network reaches it) and /etc/resolv.conf for a RUN.
 */
function networkFiles(network: RunNetwork, extraHosts: [string, string][]): [string, string][] {
  const entries = extraHosts.map(([name, address]) => `${address === HOST_GATEWAY ? network.hostGateway : address}\t${name}\n`);
  const hosts = "127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n" + entries.join("");
  return [
    ["/etc/hosts", hosts],
    ["/etc/resolv.conf", network.resolvConf],
  ];
}

/** Roots a RUN holds open, and the private binds it made, until its container is gone. */
class Held {
  private readonly roots: Root[] = [];
  private readonly binds: string[] = [];
  constructor(private readonly work: string) {}
  root(directory: string): Root {
    const root = Root.open(directory);
    this.roots.push(root);
    return root;
  }
  /**
   * A path the runtime can bind: exactly the entry open as `fd`, wherever links pointed. The
   * entry is bind-mounted (through its descriptor) onto a path of our own staging directory,
   * which has no links, so the runtime (perhaps in another mount namespace) opens that.
   */
  bindDescriptor(fd: number, kind: "dir" | "file"): string {
    try {
      const point = join(this.work, `bind-point-${this.binds.length}`);
      if (kind === "dir") mkdirSync(point);
      else writeFileSync(point, "");
      mountAt(`/proc/self/fd/${fd}`, point);
      this.binds.push(point);
      return point;
    } finally {
      closeSync(fd);
    }
  }
  close() {
    for (const point of this.binds.splice(0).reverse()) unmount(point);
    for (const root of this.roots.splice(0)) root.close();
  }
}

const MS_BIND = 4096;
const MS_REC = 16384;
function mountAt(source: string, target: string) {
  mount(source, target, null, MS_BIND | MS_REC, null);
}


/**
 * Where a bind mount's content comes from: a copy of context files (the context as the build
 * sees it, .dockerignore applied), or a stage's file system with the source looked up inside
 * it. The runtime gets a descriptor path, so what it binds is exactly what was looked up.
 */
function bindSource(request: ResolvedStep, mount: Extract<Mount, { type: "bind" }>, work: string, mounted: string[], held: Held): { path: string; kind: "dir" | "file" } {
  const dir = join(work, `bind-${mounted.length}-${Math.random().toString(36).slice(2, 8)}`);
  const source = mount.source || ".";
  const named = mount.from !== undefined ? request.namedContexts.get(mount.from) : undefined;
  if (mount.from === undefined || named) {
    mkdirSync(dir);
    const context = named ?? request.context!;
    const copyRoot = held.root(dir);
    executeCopy({
      instruction: { kind: "COPY", location: request.instruction.location, sources: [source], inline: [], dest: "/", link: false, excludes: [], parents: false },
      workdir: "/",
      root: copyRoot,
      owner: { uid: 0, gid: 0 },
      context,
      scratch: work,
    });
    const selected = context.resolveSource(source)[0];
    if (selected === undefined) throw new RunFailedError(`--mount source=${source}: nothing in the build context matches`, 1, []);
    const isDir = selected === "" || context.byPath.get(selected)?.type === "dir";
    const inside = isDir ? "/" : "/" + selected.slice(selected.lastIndexOf("/") + 1);
    const kind = isDir ? "dir" : "file";
    return { path: held.bindDescriptor(copyRoot.open(Buffer.from(inside, "latin1"), O_PATH), kind), kind };
  }
  const layers = request.sources.get(mount.from);
  if (!layers) throw new RunFailedError(`--mount from=${mount.from}: no such stage or image`, 1, []);
  const rootDir = join(dir, "root");
  mountOverlay(mount.readonly ? { layers, target: rootDir } : { layers, upper: join(dir, "upper"), work: join(dir, "work"), target: rootDir });
  mounted.push(rootDir);
  const stageRoot = held.root(rootDir);
  const stat = stageRoot.stat(source);
  if (!stat) throw new RunFailedError(`--mount from=${mount.from}: ${mount.source} does not exist there`, 1, []);
  const kind = stat.isDirectory() ? "dir" : "file";
  return { path: held.bindDescriptor(stageRoot.open(source, O_PATH), kind), kind };
}

/**
 * `--mount=type=cache,from=STAGE,source=DIR`: a new cache starts with the stage's (or image's)
 * files below DIR, copied as COPY --from copies them (owners kept, links never followed out).
 */
function cacheSeed(request: ResolvedStep, mount: CacheMount, work: string): CacheMountSeed | undefined {
  if (mount.from === undefined) return undefined;
  const layers = request.sources.get(mount.from);
  if (!layers) throw new RunFailedError(`--mount from=${mount.from}: no such stage or image`, 1, []);
  const source = mount.source || "/";
  return {
    identity: `${layers.join(",")}:${source}`,
    fill: (directory) => {
      if (layers.length === 0) return; // an empty stage seeds nothing
      const stageDir = join(work, `cache-seed-${Math.random().toString(36).slice(2, 8)}`);
      mountOverlay({ layers, target: stageDir });
      try {
        Root.with(stageDir, (stage) => {
          if (!stage.stat(source)) throw new RunFailedError(`--mount type=cache,from=${mount.from}: ${source} does not exist there`, 1, []);
          Root.with(directory, (root) =>
            executeCopy({
              instruction: { kind: "COPY", location: request.instruction.location, sources: [source], inline: [], dest: "/", link: false, excludes: [], parents: false },
              workdir: "/",
              root,
              owner: { uid: 0, gid: 0 },
              source: stage,
              scratch: work,
            }),
          );
        });
      } finally {
        unmount(stageDir);
      }
    },
  };
}

/**
 * Removes the empty files the run made as mount points for file mounts. Directories made for
 * mounts stay, empty, as BuildKit leaves them (its image of `--mount target=/new/dir` has /new/dir).
 */
function removeCreatedMountPoints(root: Root, created: Buffer[]) {
  for (const path of [...created].reverse()) {
    const stat = root.lstat(path);
    if (stat?.isFile() && stat.size === 0) root.remove(path);
  }
}
