/**
 * One directory of a build context, read in one pass: getdents64(2) for the names, then
 * statx(2) of each entry, named by its address inside the same record buffer. No path string,
 * no Buffer and no Stats object per file: with node's lstatSync (bigint) a warm digest of
 * 20,000 files spent ~145 ms of its ~250 ms in stat calls, against ~40 ms of kernel time.
 *
 * The stats land in one Uint32Array per directory (a StatTable), STRIDE words per entry, so
 * the stat cache can compare an entry's key with a loop over numbers.
 */
import { constants as osConstants } from "node:os";
import { AT_SYMLINK_NOFOLLOW, closeFd, openDirectoryAt, readDirectoryRecords, readlinkat, statxAtAddress } from "../sys/libc.ts";
import { ptr } from "bun:ffi";
import { keepOutOfFTL } from "../util/jit.ts";

/**
 * Words of an entry's stat, in this order (statx's fields, little-endian halves for 64 bits):
 * nlink, uid, gid, mode, ino (2), size (2), ctime s (2), ctime ns, 0, mtime s (2), mtime ns, 0,
 * dev major, dev minor. The first KEY_WORDS are what a cached digest is keyed by: a content
 * change that keeps size and mtime (set back by a checkout or `touch -d`) still moves ctime,
 * which no user can set; a file replaced by another moves ino or dev.
 */
export const KEY_WORDS = 18;
const ERRNO = 18;
const STRIDE = 20;

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

/** The stats of one directory's entries, by index (the order of `ScannedDirectory.names`). */
export class StatTable {
  constructor(readonly words: Uint32Array) {}

  /** 0, or the errno of an entry whose stat failed (removed between the listing and the stat). */
  error(i: number): number {
    return this.words[i * STRIDE + ERRNO];
  }
  mode(i: number): number {
    return this.words[i * STRIDE + 3] & 0xffff;
  }
  kind(i: number): "file" | "dir" | "symlink" | "special" {
    const format = this.mode(i) & S_IFMT;
    return format === S_IFREG ? "file" : format === S_IFDIR ? "dir" : format === S_IFLNK ? "symlink" : "special";
  }
  specialKind(i: number): string {
    const format = this.mode(i) & S_IFMT;
    const kinds: Record<number, string> = { 0o140000: "socket", 0o010000: "named pipe", 0o060000: "block device", 0o020000: "character device" };
    return kinds[format] ?? "special file";
  }
  uid(i: number): number {
    return this.words[i * STRIDE + 1];
  }
  gid(i: number): number {
    return this.words[i * STRIDE + 2];
  }
  nlink(i: number): number {
    return this.words[i * STRIDE];
  }
  size(i: number): number {
    return this.words[i * STRIDE + 6] + this.words[i * STRIDE + 7] * 2 ** 32;
  }
  /** `dev:ino` as text, exact for 64-bit inode numbers. */
  inode(i: number): string {
    const w = this.words;
    const o = i * STRIDE;
    const ino = w[o + 5] === 0 ? String(w[o + 4]) : String((BigInt(w[o + 5]) << 32n) | BigInt(w[o + 4]));
    return `${w[o + 16]}:${w[o + 17]}:${ino}`;
  }
  /** Seconds (a JS number: exact for any date) and nanoseconds of the change or modification time. */
  ctime(i: number): [number, number] {
    const o = i * STRIDE;
    return [this.words[o + 8] + (this.words[o + 9] | 0) * 2 ** 32, this.words[o + 10]];
  }
  mtime(i: number): [number, number] {
    const o = i * STRIDE;
    return [this.words[o + 12] + (this.words[o + 13] | 0) * 2 ** 32, this.words[o + 14]];
  }
  /** Whether entry `i`'s key equals KEY_WORDS words of `key` from `offset`. */
  keyEquals(i: number, key: Uint32Array, offset: number): boolean {
    const w = this.words;
    const o = i * STRIDE;
    for (let k = 0; k < KEY_WORDS; k++) if (w[o + k] !== key[offset + k]) return false;
    return true;
  }
  /** Copies entry `i`'s key into `out` at `offset`. */
  copyKey(i: number, out: Uint32Array, offset: number) {
    // A plain loop: a subarray per entry cost more than the copy itself.
    const w = this.words;
    const o = i * STRIDE;
    for (let k = 0; k < KEY_WORDS; k++) out[offset + k] = w[o + k];
  }
}

/** One entry's stat, field by field: what statTableOf packs (for callers that make stats up, e.g. tests of the cache's rules). */
export interface StatFields {
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  size: number;
  ino: number;
  dev: [number, number];
  mtime: [number, number];
  ctime: [number, number];
}

/** A StatTable of the given stats, in the layout scanDirectory writes. */
export function statTableOf(list: StatFields[]): StatTable {
  const words = new Uint32Array(list.length * STRIDE);
  const pair = (o: number, value: number) => ((words[o] = value % 2 ** 32), (words[o + 1] = Math.floor(value / 2 ** 32)));
  list.forEach((s, i) => {
    const o = i * STRIDE;
    [words[o], words[o + 1], words[o + 2], words[o + 3]] = [s.nlink, s.uid, s.gid, s.mode];
    pair(o + 4, s.ino);
    pair(o + 6, s.size);
    pair(o + 8, s.ctime[0]);
    words[o + 10] = s.ctime[1];
    pair(o + 12, s.mtime[0]);
    words[o + 14] = s.mtime[1];
    [words[o + 16], words[o + 17]] = s.dev;
  });
  return new StatTable(words);
}

export interface ScannedDirectory {
  /** Entry names as byte strings (latin1), sorted by bytes. */
  names: string[];
  stats: StatTable;
}

// Reused by every scan (a walk scans one directory at a time). Module-level, so the memory a
// raw address points into stays alive during each call.
const records = Buffer.allocUnsafe(64 * 1024);
const recordsAddress = ptr(records);
const statx = Buffer.alloc(256);
const statxWords = new Uint32Array(statx.buffer, statx.byteOffset, 64);
let scratch: Uint32Array = new Uint32Array(STRIDE * 256);

/** statx's 32-bit words copied into an entry's slots: [from, to) of statx → STRIDE layout. */
function copyStat(into: Uint32Array, o: number) {
  // nlink, uid, gid, mode, ino, size: statx bytes 16..48
  for (let k = 0; k < 8; k++) into[o + k] = statxWords[4 + k];
  // ctime (96..112), mtime (112..128): seconds, nanoseconds, padding
  for (let k = 0; k < 8; k++) into[o + 8 + k] = statxWords[24 + k];
  // device major, minor (136..144)
  into[o + 16] = statxWords[34];
  into[o + 17] = statxWords[35];
  into[o + ERRNO] = 0;
}

/**
 * Lists and stats every entry of the open directory `fd` (not following links); `shown` names
 * it in errors. Entries that vanish between the listing and their stat keep their errno.
 */
export function scanDirectory(fd: number, shown: string): ScannedDirectory {
  const names: string[] = [];
  for (;;) {
    const length = readDirectoryRecords(fd, records, shown);
    if (length === 0) break;
    for (let offset = 0; offset < length; offset += records.readUInt16LE(offset + 16)) {
      const nameStart = offset + 19;
      const nameEnd = records.indexOf(0, nameStart);
      const name = records.toString("latin1", nameStart, nameEnd);
      if (name === "." || name === "..") continue;
      const o = names.length * STRIDE;
      if (o + STRIDE > scratch.length) scratch = grow(scratch);
      const rc = statxAtAddress(fd, recordsAddress + nameStart, AT_SYMLINK_NOFOLLOW, statx);
      if (rc === 0) copyStat(scratch, o);
      else scratch.fill(0, o, o + STRIDE), (scratch[o + ERRNO] = rc);
      names.push(name);
    }
  }
  return sortByName(names, scratch);
}

function grow(words: Uint32Array): Uint32Array {
  const bigger = new Uint32Array(words.length * 2);
  bigger.set(words);
  return bigger;
}

/**
 * The entries in byte order of their names (what digests and the walk order rely on), in a
 * table of their own. sort() without a comparator compares UTF-16 code units, which for byte
 * strings is byte order, and runs natively: a JS comparator here was the function the JIT
 * spent most on (~20 ms of FTL compilation in a 20,000-file walk).
 */
function sortByName(names: string[], words: Uint32Array): ScannedDirectory {
  const positions = new Map<string, number>();
  for (let i = 0; i < names.length; i++) positions.set(names[i], i);
  const sortedNames = names.slice().sort();
  const sorted = new Uint32Array(names.length * STRIDE);
  for (let to = 0; to < sortedNames.length; to++) {
    const from = positions.get(sortedNames[to])!;
    // A plain loop: a subarray per entry cost more than the copy itself.
    for (let k = 0; k < STRIDE; k++) sorted[to * STRIDE + k] = words[from * STRIDE + k];
  }
  return { names: sortedNames, stats: new StatTable(sorted) };
}

/** Opens the subdirectory `name` of `fd`, never through a link unless `follow` (the context's own directory). */
export function openSubdirectory(fd: number, name: string, follow = false): number {
  return openDirectoryAt(fd, Buffer.from(name, "latin1"), follow);
}

/** The target of the symlink `name` in `fd`, as a byte string. */
export function linkTargetAt(fd: number, name: string): string {
  return readlinkat(fd, Buffer.from(name, "latin1")).toString("latin1");
}

export { closeFd };
export const ENOENT = osConstants.errno.ENOENT;

// Called once per entry of a context (see util/jit.ts).
keepOutOfFTL(copyStat, sortByName, scanDirectory);
const table = StatTable.prototype;
keepOutOfFTL(table.error, table.kind, table.mode, table.keyEquals, table.size, table.uid, table.gid, table.nlink);
