/**
 * Unpacks a layer tar into a snapshot directory in overlayfs format, so the directory can be a
 * lower layer as it is: `.wh.NAME` becomes a 0/0 character device and `.wh..wh..opq` the
 * `trusted.overlay.opaque` attribute. Nothing is ever written outside the directory: entries
 * with `..`, and writes through a symlink (from this layer or an earlier entry), are rejected.
 * Modes (setuid included), owners, hardlinks, symlinks (absolute ones kept as they are),
 * devices, FIFOs and timestamps are kept.
 */
import { UserError } from "../errors.ts";
import {
  chmodSync,
  closeSync,
  constants,
  existsSync,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeSync,
} from "node:fs";
import { fsPath } from "../context/paths.ts";
import { TarReader, type TarEntry } from "../image/tar.ts";
import { mknod, OVERLAY_OPAQUE, S_IFBLK, S_IFCHR, S_IFIFO, setXattr } from "./libc.ts";

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
  /** Turn `.wh.` entries into overlay whiteouts (layers); false for plain archives (ADD). */
  whiteouts?: boolean;
  /** Give every entry this owner instead of the archive's (ADD --chown). */
  owner?: { uid: number; gid: number };
}

export function extractLayer(tarPath: string, destination: string, options: ExtractOptions = {}): ExtractResult {
  const whiteouts = options.whiteouts ?? true;
  const root = Buffer.from(destination);
  const rootText = destination;
  const at = (relative: string) => fsPath(root, relative, rootText);
  const reader = new TarReader(tarPath);
  const directoryTimes: [string, number][] = [];
  let count = 0;

  /** Makes sure every parent of `path` is a real directory inside the root. */
  const ensureParents = (path: string, original: string) => {
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join("/");
      let stat;
      try {
        stat = lstatSync(at(parent));
      } catch {
        mkdirSync(at(parent), { mode: 0o755 });
        continue;
      }
      if (stat.isSymbolicLink()) {
        throw new UnsafeLayerError(`layer entry ${JSON.stringify(original)} would be written through the symlink ${JSON.stringify(parent)}`);
      }
      if (!stat.isDirectory()) {
        throw new UnsafeLayerError(`layer entry ${JSON.stringify(original)} is below ${JSON.stringify(parent)}, which is not a directory`);
      }
    }
  };

  /** Removes whatever is at `path` unless it is a directory and a directory is coming. */
  const clear = (path: string, keepDirectory: boolean) => {
    let stat;
    try {
      stat = lstatSync(at(path));
    } catch {
      return;
    }
    if (keepDirectory && stat.isDirectory()) return;
    rmSync(at(path), { recursive: true, force: true });
  };

  try {
    for (let entry = reader.next(); entry; entry = reader.next()) {
      count++;
      const path = cleanEntryName(entry.name);
      if (path === "") continue; // the root itself
      ensureParents(path, entry.name);
      const slash = path.lastIndexOf("/");
      const parent = slash < 0 ? "" : path.slice(0, slash);
      const base = path.slice(slash + 1);

      if (options.owner) {
        entry.uid = options.owner.uid;
        entry.gid = options.owner.gid;
      }
      if (whiteouts && base === OPAQUE_MARKER) {
        setXattr(at(parent), OVERLAY_OPAQUE, Buffer.from("y"));
        continue;
      }
      if (whiteouts && base.startsWith(WHITEOUT_PREFIX)) {
        const hidden = (parent ? parent + "/" : "") + base.slice(WHITEOUT_PREFIX.length);
        cleanEntryName(hidden);
        clear(hidden, false);
        mknod(at(hidden), S_IFCHR | 0o000, 0, 0);
        continue;
      }
      writeEntry(entry, path, reader, at, clear);
      if (entry.type === "dir") directoryTimes.push([path, entry.mtime]);
      else if (entry.type === "symlink") lutimesSync(at(path), entry.mtime, entry.mtime);
      else if (entry.type !== "hardlink") utimesSync(at(path), entry.mtime, entry.mtime);
    }
  } finally {
    reader.close();
  }
  // Directory times last: creating their children changed them.
  for (const [path, mtime] of directoryTimes.reverse()) utimesSync(at(path), mtime, mtime);
  return { entries: count };
}

function writeEntry(
  entry: TarEntry,
  path: string,
  reader: TarReader,
  at: (relative: string) => string | Buffer,
  clear: (path: string, keepDirectory: boolean) => void,
) {
  const full = at(path);
  switch (entry.type) {
    case "dir":
      clear(path, true);
      if (!existsSync(full)) mkdirSync(full, { mode: 0o700 });
      break;
    case "file": {
      clear(path, false);
      // O_NOFOLLOW: never write through a symlink, even one raced into place.
      const fd = openSync(full, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      try {
        for (const chunk of reader.readContent()) writeSync(fd, chunk);
      } finally {
        closeSync(fd);
      }
      break;
    }
    case "symlink":
      clear(path, false);
      symlinkSync(Buffer.from(entry.linkname ?? "", "latin1"), full);
      lchownSync(full, entry.uid, entry.gid);
      return;
    case "hardlink": {
      const target = cleanEntryName(entry.linkname ?? "");
      if (target === "") throw new UnsafeLayerError(`hardlink ${JSON.stringify(entry.name)} has no target`);
      let targetStat;
      try {
        targetStat = lstatSync(at(target));
      } catch {
        throw new UnsafeLayerError(`hardlink ${JSON.stringify(entry.name)} points to ${JSON.stringify(entry.linkname)}, which is not in the layer`);
      }
      if (targetStat.isDirectory()) throw new UnsafeLayerError(`hardlink ${JSON.stringify(entry.name)} points to a directory`);
      clear(path, false);
      linkSync(at(target), full);
      return;
    }
    case "char":
    case "block":
    case "fifo": {
      clear(path, false);
      const kind = entry.type === "char" ? S_IFCHR : entry.type === "block" ? S_IFBLK : S_IFIFO;
      mknod(full, kind | (entry.mode & 0o777), entry.devmajor ?? 0, entry.devminor ?? 0);
      break;
    }
  }
  // chown first: it clears setuid/setgid bits, which chmod then sets.
  lchownSync(full, entry.uid, entry.gid);
  chmodSync(full, entry.mode & 0o7777);
}
