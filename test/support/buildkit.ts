/**
 * The reference builder for side-by-side tests: Debian's dockerd (BuildKit inside), started on
 * a private socket with its own data root, fed MemoBuild's own busybox base (no network), and
 * a way to read any image's final root filesystem as a flat map to compare.
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join, posix } from "node:path";
import { gunzipSync } from "node:zlib";
import { TarReader } from "../../src/image/tar.ts";

const DOCKER = existsSync("/usr/bin/docker") ? "/usr/bin/docker" : "docker";

export class BuildKit {
  private constructor(
    private readonly work: string,
    private readonly daemon: ReturnType<typeof Bun.spawn>,
    readonly env: Record<string, string>,
  ) {}

  /** Starts dockerd under `work` and waits until it answers. */
  static async start(work: string): Promise<BuildKit> {
    mkdirSync(work, { recursive: true });
    const socket = join(work, "docker.sock");
    const daemon = Bun.spawn(
      ["dockerd", "--iptables=false", "--ip-masq=false", "--bridge=none", "--host", `unix://${socket}`, "--data-root", join(work, "data"), "--exec-root", join(work, "exec"), "--pidfile", join(work, "docker.pid")],
      { stdout: "ignore", stderr: "ignore" },
    );
    const env = { ...(process.env as Record<string, string>), DOCKER_HOST: `unix://${socket}`, DOCKER_BUILDKIT: "1" };
    const kit = new BuildKit(work, daemon, env);
    for (let i = 0; i < 150; i++) {
      if (Bun.spawnSync([DOCKER, "info"], { env, stdout: "ignore", stderr: "ignore" }).exitCode === 0) return kit;
      await Bun.sleep(200);
    }
    await kit.stop();
    throw new Error("dockerd did not start");
  }

  docker(...args: string[]): { exitCode: number; stdout: string; stderr: string } {
    const result = Bun.spawnSync([DOCKER, ...args], { env: this.env, stdout: "pipe", stderr: "pipe" });
    return { exitCode: result.exitCode ?? -1, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
  }

  /** `docker load` of an archive (MemoBuild's base image, exported as a docker archive). */
  load(archive: string) {
    const result = this.docker("load", "-i", archive);
    if (result.exitCode !== 0) throw new Error(`docker load: ${result.stderr}`);
  }

  /** Builds `dir` with BuildKit and saves the image as a docker archive; returns its path. */
  build(dir: string, tag: string): string {
    const result = this.docker("build", "-q", "-t", tag, dir);
    if (result.exitCode !== 0) throw new Error(`docker build of ${dir}: ${result.stderr}`);
    const archive = join(this.work, `${tag.replace(/[^a-z0-9]/g, "_")}.tar`);
    const save = this.docker("save", "-o", archive, tag);
    if (save.exitCode !== 0) throw new Error(`docker save: ${save.stderr}`);
    return archive;
  }

  async stop() {
    this.daemon.kill("SIGTERM");
    await this.daemon.exited;
    Bun.spawnSync(["sh", "-c", `grep ' ${this.work}/' /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r -n1 umount -l`]);
  }
}

/** One entry of a flattened root filesystem: what a user of the image would see. */
export interface TreeEntry {
  type: string;
  mode: string;
  owner: string;
  /** sha256 of a file's content, or a symlink's target. */
  content?: string;
}

/** Reads a file from a docker archive (`docker save`) or returns undefined. */
function readMember(archive: string, name: string): Buffer | undefined {
  const reader = new TarReader(archive);
  try {
    for (let entry = reader.next(); entry; entry = reader.next()) {
      if (entry.name.replace(/^\.\//, "") !== name) continue;
      return Buffer.concat([...reader.readContent()]);
    }
  } finally {
    reader.close();
  }
  return undefined;
}

function isGzip(bytes: Buffer): boolean {
  return bytes.length > 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** The layer tars of an image, bottom first: from a docker archive or an OCI layout directory. */
export function imageLayers(image: string, scratch: string): string[] {
  const layers: Buffer[] = [];
  if (existsSync(join(image, "index.json"))) {
    const blob = (digest: string) => readFileSync(join(image, "blobs/sha256", digest.slice(7)));
    const index = JSON.parse(readFileSync(join(image, "index.json"), "utf8"));
    const manifest = JSON.parse(blob(index.manifests[0].digest).toString());
    for (const layer of manifest.layers) layers.push(blob(layer.digest));
  } else {
    const manifest = JSON.parse(readMember(image, "manifest.json")!.toString())[0];
    for (const layer of manifest.Layers) layers.push(readMember(image, layer)!);
  }
  mkdirSync(scratch, { recursive: true });
  return layers.map((bytes, i) => {
    const path = join(scratch, `layer-${i}.tar`);
    Bun.write(path, isGzip(bytes) ? gunzipSync(bytes) : bytes);
    return path;
  });
}

/** Applies layers in order (whiteouts and opaque directories included) into one tree. */
export function flattenLayers(layerTars: string[]): Map<string, TreeEntry> {
  const tree = new Map<string, TreeEntry>();
  const removeBelow = (dir: string, self: boolean) => {
    for (const path of [...tree.keys()]) if ((self && path === dir) || path.startsWith(dir === "" ? "" : dir + "/")) if (path !== dir || self) tree.delete(path);
  };
  for (const layer of layerTars) {
    const reader = new TarReader(layer);
    try {
      for (let entry = reader.next(); entry; entry = reader.next()) {
        const path = posix.normalize(entry.name).replace(/^\.?\/+|\/+$/g, "");
        if (path === "" || path === ".") continue;
        const base = posix.basename(path);
        const dir = posix.dirname(path) === "." ? "" : posix.dirname(path);
        if (base === ".wh..wh..opq") {
          removeBelow(dir, false);
          continue;
        }
        if (base.startsWith(".wh.")) {
          removeBelow(dir ? `${dir}/${base.slice(4)}` : base.slice(4), true);
          continue;
        }
        const existing = tree.get(path);
        if (existing && (existing.type !== "dir" || entry.type !== "dir")) removeBelow(path, true);
        let content: string | undefined;
        if (entry.type === "file") {
          const hasher = new Bun.CryptoHasher("sha256");
          for (const chunk of reader.readContent()) hasher.update(chunk);
          content = hasher.digest("hex").slice(0, 16);
        } else if (entry.type === "symlink") content = entry.linkname;
        else if (entry.type === "hardlink") content = tree.get(posix.normalize(entry.linkname ?? ""))?.content;
        const type = entry.type === "hardlink" ? "file" : entry.type;
        tree.set(path, { type, mode: (entry.mode & 0o7777).toString(8), owner: `${entry.uid}:${entry.gid}`, ...(content !== undefined ? { content } : {}) });
      }
    } finally {
      reader.close();
    }
  }
  return tree;
}

/** The tree as sorted lines, for readable diffs in test failures. */
export function treeLines(tree: Map<string, TreeEntry>, under?: string[]): string[] {
  return [...tree.entries()]
    .filter(([path]) => !under || under.some((u) => path === u || path.startsWith(u + "/")))
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([path, e]) => `${path} ${e.type} ${e.mode} ${e.owner}${e.content !== undefined ? " " + e.content : ""}`);
}
