/**
 * Content digests of context trees: a Merkle hash over what a COPY/ADD would land. It covers
 * each entry's name, type, permission and special mode bits, the uid/gid it will have in the
 * image, symlink targets and file content; never mtime, atime, ctime or inode numbers. So
 * `touch` changes nothing, while renaming, chmod or editing a file changes the digest.
 *
 * A directory's digest is BLAKE3 over its own header and one record per child:
 *   u32 name length, name bytes, u8 type, u32 mode, u32 uid, u32 gid, then
 *   file: 32-byte content digest | symlink: u32 length + target | dir: 32-byte dir digest.
 * Children are sorted by name bytes. One hash call per directory keeps this cheap; every
 * directory's digest is kept, so selecting a directory later is a lookup.
 */
import { blake3 } from "../hash/blake3.ts";
import type { EntryType } from "./walk.ts";
import { keepOutOfFTL } from "../util/jit.ts";

export interface DigestEntry {
  /** Relative byte-string path. */
  path: string;
  type: EntryType;
  /** Permission and special bits (mode & 0o7777). */
  mode: number;
  /** Content digest of a file (32 bytes). */
  contentDigest?: Uint8Array;
  /** Target of a symlink (byte string). */
  linkTarget?: string;
  /**
   * The directory it is in ("" for the root) and its own name, when the walk gave them:
   * then walkOrderDigests splits no path (~20,000 slices of a warm digest).
   */
  parent?: string;
  base?: string;
}

export interface Ownership {
  uid: number;
  gid: number;
}

/** COPY and ADD land files as root unless --chown says otherwise. */
export const ROOT_OWNER: Ownership = { uid: 0, gid: 0 };

const TYPE_TAG: Record<EntryType, number> = { file: 1, dir: 2, symlink: 3 };
const TREE_HEADER = Buffer.from("memobuild-tree-v1\0");

/**
 * Appends child records into one growing buffer without a Buffer per record. Bytes are stored
 * one by one: for names of a few dozen bytes that beats a native Buffer.write per call.
 */
class RecordWriter {
  // Called once per entry of a context (see util/jit.ts).
  static {
    keepOutOfFTL(this.prototype.raw, this.prototype.header, this.prototype.bytes, this.prototype.put32, this.prototype.ensure, this.prototype.digest);
  }

  private buffer = Buffer.allocUnsafe(4096);
  length = 0;

  private ensure(extra: number) {
    if (this.length + extra <= this.buffer.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.length + extra));
    this.buffer.copy(bigger, 0, 0, this.length);
    this.buffer = bigger;
  }

  private put32(value: number, at: number) {
    const b = this.buffer;
    b[at] = value >>> 24;
    b[at + 1] = (value >>> 16) & 0xff;
    b[at + 2] = (value >>> 8) & 0xff;
    b[at + 3] = value & 0xff;
  }

  u32(value: number) {
    this.ensure(4);
    this.put32(value >>> 0, this.length);
    this.length += 4;
  }

  bytes(data: Uint8Array) {
    this.ensure(data.length);
    this.buffer.set(data, this.length);
    this.length += data.length;
  }

  /** A byte string (latin1: one byte per character) with a length prefix. */
  raw(text: string) {
    this.ensure(4 + text.length);
    this.put32(text.length, this.length);
    const b = this.buffer;
    let at = this.length + 4;
    for (let i = 0; i < text.length; i++) b[at++] = text.charCodeAt(i);
    this.length = at;
  }

  header(type: EntryType, mode: number, owner: Ownership) {
    this.ensure(13);
    this.buffer[this.length] = TYPE_TAG[type];
    this.put32(mode & 0o7777, this.length + 1);
    this.put32(owner.uid >>> 0, this.length + 5);
    this.put32(owner.gid >>> 0, this.length + 9);
    this.length += 13;
  }

  digest(): Buffer {
    const result = blake3(this.buffer.subarray(0, this.length));
    this.length = 0;
    return result;
  }
}

function writeChild(writer: RecordWriter, name: string, entry: DigestEntry, owner: Ownership, dirDigest?: Uint8Array) {
  writer.raw(name);
  writer.header(entry.type, entry.mode, owner);
  if (entry.type === "file") {
    if (!entry.contentDigest) throw new Error(`no content digest for ${entry.path}`);
    writer.bytes(entry.contentDigest);
  } else if (entry.type === "symlink") {
    writer.raw(entry.linkTarget ?? "");
  } else {
    writer.bytes(dirDigest!);
  }
}

const byPath = (a: DigestEntry, b: DigestEntry) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);

function parentOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? "" : path.slice(0, slash);
}

/**
 * Digests of every directory of a tree: `entries` are the tree's entries (any order, paths
 * relative to the context); the result maps each directory path ("" for the root) to its
 * digest. Directory digests do not include the directory's own name or mode (its parent's
 * record does), so a directory's digest is the digest of its contents.
 */
export function directoryDigests(
  entries: Iterable<DigestEntry>,
  owner: Ownership = ROOT_OWNER,
  root = "",
): Map<string, Buffer> {
  const children = new Map<string, DigestEntry[]>([[root, []]]);
  for (const entry of entries) {
    const parent = parentOf(entry.path);
    let list = children.get(parent);
    if (!list) children.set(parent, (list = []));
    list.push(entry);
    if (entry.type === "dir" && !children.has(entry.path)) children.set(entry.path, []);
  }
  const digests = new Map<string, Buffer>();
  const writer = new RecordWriter();
  // Deepest directories first, so each child's digest exists before its parent needs it.
  const order = [...children.keys()].sort((a, b) => depth(b) - depth(a));
  for (const dir of order) {
    writer.bytes(TREE_HEADER);
    for (const child of children.get(dir)!.sort(byPath)) {
      writeChild(writer, child.path.slice(dir === "" ? 0 : dir.length + 1), child, owner, digests.get(child.path));
    }
    digests.set(dir, writer.digest());
  }
  return digests;
}

function depth(path: string): number {
  if (path === "") return 0;
  let count = 1;
  for (let i = 0; i < path.length; i++) if (path.charCodeAt(i) === 47) count++;
  return count;
}

/** Digest of one entry as it lands under `name` (a file, a symlink, or a directory's digest). */
export function entryDigest(name: string, entry: DigestEntry, owner: Ownership, dirDigest?: Uint8Array): Buffer {
  const writer = new RecordWriter();
  writeChild(writer, name, entry, owner, dirDigest);
  return writer.digest();
}

/**
 * Directory digests made before, for walkOrderDigests to reuse: `stored(dir)` is what `dir`'s
 * digest was when its other children (directories and symlinks, described as in `others`
 * below) were as they were then, and only when its files are known unchanged since (the stat
 * cache says so); `record` is told each directory's digest and other children as made now.
 */
export interface TreeReuse {
  stored(dir: string): { digest: Uint8Array; others: string } | undefined;
  record(dir: string, tree: { digest: Uint8Array; others: string }): void;
}

/**
 * What every stored `others` begins with: the digest format. A stored digest is reused only
 * when the binary that made it made digests the way this one does, so a binary with another
 * format (which has another header) sharing the cache file can never lend this one a digest.
 */
const TREE_FORMAT = TREE_HEADER.toString("latin1");

/**
 * A directory's or a symlink's part of what its parent's digest is made of, as one string:
 * type, name, mode, then a directory's 32-byte digest or a symlink's target. Names hold no NUL,
 * targets neither, and a digest has a fixed length, so no two lists read the same.
 */
function describeOther(name: string, entry: DigestEntry, dirDigest?: Buffer): string {
  const what = entry.type === "dir" ? dirDigest!.toString("latin1") : `${entry.linkTarget ?? ""}\0`;
  return `${entry.type === "dir" ? "d" : "l"}${name}\0${entry.mode.toString(8)}\0${what}`;
}

/**
 * directoryDigests for entries in the walk's order (each directory before its contents,
 * siblings sorted by name bytes), in one pass with a writer per open directory: no grouping
 * map, no sorts (those were ~35 ms of a warm 20,000-file digest). Undefined when the entries
 * are not in that order; then directoryDigests is the answer.
 *
 * With `reuse` (root-owned files only), a directory with a stored digest keeps its children's
 * records unwritten until it closes, and takes the stored digest when its other children are
 * as they were: writing and hashing every record was ~12 ms of a warm 20,000-file digest.
 */
export function walkOrderDigests(entries: readonly DigestEntry[], owner: Ownership = ROOT_OWNER, reuse?: TreeReuse): Map<string, Buffer> | undefined {
  const digests = new Map<string, Buffer>();
  const writers: RecordWriter[] = [new RecordWriter()];
  const open: DigestEntry[] = []; // the open directories below the root; depth = open.length
  const openPaths: string[] = [""];
  const lastNames: string[] = [""]; // per depth: the last child written, to check the order
  const others: string[] = [""]; // per depth: its directories and symlinks (describeOther)
  // Per depth: where the directory's entries begin in `entries` while its children are not
  // written (it may take a stored digest), else -1.
  const held: number[] = [];
  const trees: [string, { digest: Uint8Array; others: string }][] = [];

  const begin = (depth: number, path: string, first: number) => {
    lastNames[depth] = "";
    others[depth] = reuse ? TREE_FORMAT : "";
    held[depth] = reuse?.stored(path) ? first : -1;
    (writers[depth] ??= new RecordWriter()).bytes(TREE_HEADER);
  };
  /** Writes a directory's or symlink's record, or any child's while its directory is not held. */
  const write = (name: string, entry: DigestEntry, dirDigest?: Buffer): boolean => {
    const depth = open.length;
    if (held[depth] < 0 && lastNames[depth] !== "" && name <= lastNames[depth]) return false;
    lastNames[depth] = name;
    if (reuse && entry.type !== "file") others[depth] += describeOther(name, entry, dirDigest);
    if (held[depth] < 0) writeChild(writers[depth], name, entry, owner, dirDigest);
    return true;
  };
  /**
   * The digest of the directory at `depth` (`path`, its entries in `entries` up to `end`), its
   * children all written or held; undefined when held files turn out to be out of order.
   */
  const finish = (depth: number, path: string, end: number): Buffer | undefined => {
    const writer = writers[depth];
    const stored = held[depth] >= 0 ? reuse!.stored(path) : undefined;
    let digest: Buffer;
    if (stored && stored.others === others[depth]) {
      writer.length = 0;
      digest = Buffer.from(stored.digest);
    } else {
      // Held children are written now, found again in the directory's range of `entries`
      // (its files were not checked for order yet); descendants below them are skipped.
      let last = "";
      for (let i = Math.max(held[depth], 0); held[depth] >= 0 && i < end; i++) {
        const child = entries[i];
        if ((child.parent ?? parentOf(child.path)) !== path) continue;
        const name = child.base ?? child.path.slice(path === "" ? 0 : path.length + 1);
        if (last !== "" && name <= last) return undefined;
        last = name;
        writeChild(writer, name, child, owner, child.type === "dir" ? digests.get(child.path) : undefined);
      }
      digest = writer.digest();
    }
    if (reuse) trees.push([path, { digest, others: others[depth] }]);
    return digest;
  };
  const close = (end: number): boolean => {
    const dir = open[open.length - 1];
    const digest = finish(open.length, dir.path, end);
    if (!digest) return false;
    open.pop();
    openPaths.pop();
    digests.set(dir.path, digest);
    return write(dir.base ?? dir.path.slice(dir.path.lastIndexOf("/") + 1), dir, digest);
  };

  begin(0, "", 0);
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i];
    const parent = entry.parent ?? parentOf(entry.path);
    while (openPaths[openPaths.length - 1] !== parent) if (open.length === 0 || !close(i)) return undefined;
    // A file of a held directory is covered by the stat cache's verdict, or written at its close.
    if (entry.type === "file" && held[open.length] >= 0) continue;
    if (entry.type !== "dir") {
      if (!write(entry.base ?? entry.path.slice(parent === "" ? 0 : parent.length + 1), entry)) return undefined;
      continue;
    }
    open.push(entry);
    openPaths.push(entry.path);
    begin(open.length, entry.path, i + 1);
  }
  while (open.length > 0) if (!close(entries.length)) return undefined;
  const rootDigest = finish(0, "", entries.length);
  if (!rootDigest) return undefined;
  digests.set("", rootDigest);
  // Only a complete pass is recorded: entries out of order leave the stored digests as they were.
  for (const [path, tree] of trees) reuse!.record(path, tree);
  return digests;
}

// Called once per entry of a context (see util/jit.ts).
keepOutOfFTL(writeChild, parentOf, walkOrderDigests, describeOther);
