/**
 * Unpacks a layer tar into a snapshot directory in overlayfs format, so the directory can be a
 * lower layer as it is: `.wh.NAME` becomes a 0/0 character device and `.wh..wh..opq` the
 * `trusted.overlay.opaque` attribute. Every write goes through the root-confined file system
 * (src/rootfs): a symlink in the layer (`l -> /etc`) is followed inside the destination only,
 * so a later entry `l/x` or a hard link to `l/shadow` can never reach the host. Entries with
 * `..` are rejected. Modes (setuid included), owners, hardlinks, symlinks (absolute ones kept as
 * they are), devices, FIFOs and timestamps are kept.
 */
import { diskFullError, UserError } from "../errors.ts";
import { EnsuredDirectories, Root } from "../rootfs/root.ts";
import { TarReader, type TarEntry } from "../sys/tar.ts";
import { OVERLAY_OPAQUE, S_IFBLK, S_IFCHR, S_IFIFO } from "../sys/libc.ts";

export class UnsafeLayerError extends UserError {}

const WHITEOUT_PREFIX = ".wh.";
const OPAQUE_MARKER = ".wh..wh..opq";

/** `./a//b/` → `a/b`; throws on `..`. "" is the layer root. */
export function cleanEntryName(name: string): string {
  const parts: string[] = [];
  for (const part of name.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") throw new UnsafeLayerError(`layer entry ${JSON.stringify(name)} escapes the layer root`);
    parts.push(part);
  }
  return parts.join("/");
}

export interface ExtractResult {
  entries: number;
}

export interface ExtractOptions {
  /**
   * `.wh.` entries: true (the default) turns them into overlay whiteouts (a snapshot); "apply"
   * deletes what they name, for layers unpacked one over another into a plain tree (`-o
   * type=local`); false keeps them as files (plain archives, ADD).
   */
  whiteouts?: boolean | "apply";
  /** Give every entry this owner instead of the archive's (ADD --chown). */
  owner?: { uid: number; gid: number };
  /** Unpack below this directory of the root (ADD's destination); default the root itself. */
  base?: string;
}

/** Unpacks `tarPath` into the host directory `destination` (a fresh snapshot directory). */
export function extractLayer(tarPath: string, destination: string, options: ExtractOptions = {}): ExtractResult {
  return Root.with(destination, (root) => extractInto(tarPath, root, options));
}

/** Unpacks `tarPath` into `root` (below `options.base`). */
export function extractInto(tarPath: string, root: Root, options: ExtractOptions = {}): ExtractResult {
  const whiteouts = options.whiteouts ?? true;
  const base = (options.base ?? "").replace(/^\/+|\/+$/g, "");
  const at = (relative: string) => (base ? (relative ? `${base}/${relative}` : base) : relative);
  const reader = new TarReader(tarPath);
  const directories = new EnsuredDirectories(root, { mode: 0o755 });
  const directoryTimes: [Buffer, number][] = [];
  /** Paths this layer wrote (an opaque directory keeps them). */
  const written = new Set<string>();
  let count = 0;
  try {
    for (let entry = reader.next(); entry; entry = reader.next()) {
      count++;
      const path = cleanEntryName(entry.name);
      if (path === "") continue; // the root itself
      const slash = path.lastIndexOf("/");
      // Stryker disable next-line EqualityOperator: a cleaned name never starts with "/"
      const parent = slash < 0 ? "" : path.slice(0, slash);
      const name = path.slice(slash + 1);
      // Stryker disable next-line ConditionalExpression: ensuring "" is a no-op
      if (parent) directories.ensure(at(parent));
      if (options.owner) {
        entry.uid = options.owner.uid;
        entry.gid = options.owner.gid;
      }
      if (whiteouts === "apply" && name === OPAQUE_MARKER) {
        // The directory hides what lower layers put in it; this layer's own entries stay.
        for (const child of root.readdir(raw(at(parent)))) {
          const childPath = `${parent ? `${parent}/` : ""}${child.toString("latin1")}`;
          if (written.has(childPath)) continue;
          directories.forget(at(childPath));
          root.removeAll(raw(at(childPath)));
        }
        continue;
      }
      if (whiteouts && name === OPAQUE_MARKER) {
        root.setXattr(raw(at(parent)), OVERLAY_OPAQUE, Buffer.from("y"));
        continue;
      }
      if (whiteouts && name.startsWith(WHITEOUT_PREFIX)) {
        const hidden = name.slice(WHITEOUT_PREFIX.length);
        if (hidden === "" || hidden === "." || hidden === "..") {
          throw new UnsafeLayerError(`layer entry ${JSON.stringify(entry.name)} is a whiteout that names no file`);
        }
        const whiteout = at(parent ? `${parent}/${hidden}` : hidden);
        directories.forget(whiteout);
        if (whiteouts === "apply") root.removeAll(raw(whiteout));
        else root.mknod(raw(whiteout), S_IFCHR, 0, 0);
        continue;
      }
      const target = raw(at(path));
      directories.forget(at(path));
      written.add(path);
      writeEntry(entry, target, root, reader, (name) => raw(at(cleanEntryName(name))));
      if (entry.type === "dir") {
        // Stryker disable next-line CallExpression: only saves checking the directory again
        directories.add(at(path));
        directoryTimes.push([target, entry.mtime]);
      }
    }
  } catch (error) {
    if (error instanceof UserError) throw error;
    throw diskFullError(error) ?? new UnsafeLayerError(`cannot unpack layer entry: ${(error as Error).message}`);
  } finally {
    reader.close();
  }
  // Directory times last: creating their children changed them.
  for (const [path, mtime] of directoryTimes) root.setAttributes(path, { mtime });
  return { entries: count };
}

/** Tar names are byte strings (latin1); the file system takes their bytes. */
const raw = (name: string) => Buffer.from(name, "latin1");

function writeEntry(entry: TarEntry, path: Buffer, root: Root, reader: TarReader, inRoot: (name: string) => Buffer) {
  const owner = { uid: entry.uid, gid: entry.gid };
  // Stryker disable next-line StringLiteral: the tar reader always gives a linkname ("" when there is none)
  const linkname = entry.linkname ?? "";
  const attributes = { mode: entry.mode & 0o7777, owner, mtime: entry.mtime };
  switch (entry.type) {
    case "dir":
      if (!root.mkdir(path, attributes)) root.setAttributes(path, { owner, mode: entry.mode & 0o7777 });
      return;
    case "file":
      root.writeFile(path, { chunks: reader.readContent() }, attributes);
      return;
    case "symlink":
      root.symlink(Buffer.from(linkname, "latin1"), path, { owner, mtime: entry.mtime });
      return;
    case "hardlink": {
      const target = cleanEntryName(linkname);
      if (target === "") throw new UnsafeLayerError(`hardlink ${JSON.stringify(entry.name)} has no target`);
      try {
        root.link(inRoot(linkname), path);
      } catch (error) {
        throw new UnsafeLayerError(`hardlink ${JSON.stringify(entry.name)} points to ${JSON.stringify(entry.linkname)}, which is not in the layer: ${(error as Error).message}`);
      }
      return;
    }
    case "char":
    case "block":
    case "fifo": {
      const kind = entry.type === "char" ? S_IFCHR : entry.type === "block" ? S_IFBLK : S_IFIFO;
      root.mknod(path, kind | (entry.mode & 0o7777), entry.devmajor ?? 0, entry.devminor ?? 0, { owner, mtime: entry.mtime });
      return;
    }
  }
}
