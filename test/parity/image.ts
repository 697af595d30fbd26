/**
 * What two builders' images are compared on: the root filesystem a container would see (layers
 * applied in order, whiteouts and opaque directories included) and the parts of the config a
 * user relies on. Reads a docker archive (`docker save`) or an OCI layout directory.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, posix } from "node:path";
import { gunzipSync } from "node:zlib";
import { TarReader } from "../../src/sys/tar.ts";

/** One entry of a flattened root filesystem; times are left out on purpose. */
export interface TreeEntry {
  type: string;
  mode: string;
  owner: string;
  /** sha256 of a file's content (first 16 hex digits), or a symlink's target. */
  content?: string;
  xattrs?: string;
  /** The first path (sorted) of the hard-link group the file belongs to, if it has others. */
  linkedTo?: string;
}

export interface ImageSummary {
  /** One sorted line per path: `path type mode uid:gid [content] [xattrs] [=linked]`. */
  tree: string[];
  config: Record<string, unknown>;
  layers: number;
  history: number;
}

/** The config fields a user of the image relies on, with "absent", null and empty made one. */
const CONFIG_FIELDS = ["Env", "Cmd", "Entrypoint", "WorkingDir", "User", "Labels", "ExposedPorts", "Volumes", "Healthcheck", "StopSignal", "OnBuild", "Shell"];

function readMember(archive: string, name: string): Buffer | undefined {
  const reader = new TarReader(archive);
  try {
    for (let entry = reader.next(); entry; entry = reader.next()) {
      if (entry.name.replace(/^\.\//, "") === name) return Buffer.concat([...reader.readContent()]);
    }
  } finally {
    reader.close();
  }
  return undefined;
}

function isGzip(bytes: Buffer): boolean {
  return bytes.length > 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** The config JSON and the layer tars (bottom first, written under `scratch`) of an image. */
function openImage(image: string, scratch: string): { config: any; layers: string[] } {
  let config: any;
  const layers: Buffer[] = [];
  if (existsSync(join(image, "index.json"))) {
    const blob = (digest: string) => readFileSync(join(image, "blobs/sha256", digest.slice(7)));
    const index = JSON.parse(readFileSync(join(image, "index.json"), "utf8"));
    const manifest = JSON.parse(blob(index.manifests[0].digest).toString());
    config = JSON.parse(blob(manifest.config.digest).toString());
    for (const layer of manifest.layers) layers.push(blob(layer.digest));
  } else {
    const manifest = JSON.parse(readMember(image, "manifest.json")!.toString())[0];
    config = JSON.parse(readMember(image, manifest.Config)!.toString());
    for (const layer of manifest.Layers) layers.push(readMember(image, layer)!);
  }
  mkdirSync(scratch, { recursive: true });
  const paths = layers.map((bytes, i) => {
    const path = join(scratch, `layer-${i}.tar`);
    writeFileSync(path, isGzip(bytes) ? gunzipSync(bytes) : bytes);
    return path;
  });
  return { config, layers: paths };
}

function cleanPath(name: string): string {
  return posix.normalize(name).replace(/^\.?\/+|\/+$/g, "");
}

/** Applies layers in order into one tree, hard-link groups included. */
export function flattenLayers(layerTars: string[]): Map<string, TreeEntry> {
  const tree = new Map<string, TreeEntry>();
  const group = new Map<string, string>(); // path → the path it is hard-linked to (its group root)
  const removeBelow = (dir: string, self: boolean) => {
    for (const path of [...tree.keys()]) {
      if ((self && path === dir) || (dir === "" ? path !== "" : path.startsWith(dir + "/"))) {
        tree.delete(path);
        group.delete(path);
      }
    }
  };
  for (const layer of layerTars) {
    const reader = new TarReader(layer);
    try {
      for (let entry = reader.next(); entry; entry = reader.next()) {
        const path = cleanPath(entry.name);
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
        else if (entry.type === "hardlink") {
          const target = cleanPath(entry.linkname ?? "");
          content = tree.get(target)?.content;
          group.set(path, group.get(target) ?? target);
        } else if (entry.type === "char" || entry.type === "block") content = `${entry.devmajor},${entry.devminor}`;
        const xattrs = entry.xattrs ? Object.entries(entry.xattrs).sort().map(([k, v]) => `${k}=${Buffer.from(v, "latin1").toString("hex")}`).join(",") : undefined;
        tree.set(path, {
          type: entry.type === "hardlink" ? "file" : entry.type,
          mode: (entry.mode & 0o7777).toString(8),
          owner: `${entry.uid}:${entry.gid}`,
          ...(content !== undefined ? { content } : {}),
          ...(xattrs ? { xattrs } : {}),
        });
      }
    } finally {
      reader.close();
    }
  }
  // A group is named by its smallest path, so the order a builder wrote the links in is irrelevant.
  const members = new Map<string, string[]>();
  for (const [path, root] of group) if (tree.has(path) && tree.has(root)) members.set(root, [...(members.get(root) ?? [root]), path]);
  for (const paths of members.values()) {
    const name = paths.sort()[0];
    for (const path of paths) tree.get(path)!.linkedTo = name;
  }
  return tree;
}

function treeLine(path: string, e: TreeEntry): string {
  const parts = [`/${path}`, e.type, e.mode, e.owner];
  if (e.content !== undefined) parts.push(e.content);
  if (e.xattrs) parts.push(`xattrs[${e.xattrs}]`);
  if (e.linkedTo) parts.push(`=/${e.linkedTo}`);
  return parts.join(" ");
}

/** Empty, null and absent are the same to a user of the image. */
function normalizeConfig(config: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of CONFIG_FIELDS) {
    const value = config[field];
    if (value === null || value === undefined || value === "") continue;
    if (typeof value === "object" && Object.keys(value).length === 0) continue;
    out[field] = value;
  }
  return out;
}

export function summarizeImage(image: string, scratch: string): ImageSummary {
  const { config, layers } = openImage(image, scratch);
  const tree = flattenLayers(layers);
  return {
    tree: [...tree.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([path, e]) => treeLine(path, e)),
    config: normalizeConfig(config.config ?? {}),
    layers: layers.length,
    history: (config.history ?? []).length,
  };
}
