/**
 * A persistent stat cache per build context (bun:sqlite): for each file, its stat key (see
 * KEY_WORDS in scan.ts: size, mtime and ctime to the nanosecond, inode, device, mode, owner,
 * links) → its content digest. A file whose key is unchanged is not read again.
 *
 * One row per directory, not per file: a warm load of 20,000 files read 20,000 rows (~45 ms)
 * and compared BigInts; now it reads ~1,000 rows of packed keys and digests and compares
 * numbers, and writes back only the directories where something changed.
 *
 * The racy case: a file written in the same timestamp tick as the moment we hashed it can
 * change again without its stat changing (same size, same mtime, same ctime). Like git's
 * "racily clean" entries, an entry whose mtime or ctime is within the racy window of the time
 * it was hashed is kept but not trusted: the next lookup re-hashes it, and only then (once the
 * tick has passed) stores it as trusted.
 *
 * A row also keeps its directory's tree digest (see digest.ts; files owned by root, as a whole
 * context's digest lands them) with what it was made of besides the files: the directories' and
 * symlinks' names, modes, digests and targets. It is reused only when every file of the row was
 * found unchanged and trusted by this load, no other file was looked up there, and the rest is
 * the same (see storedTree); a row written without one drops the one before.
 */
import { Database } from "bun:sqlite";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { KEY_WORDS, type StatTable } from "./scan.ts";
import { keepOutOfFTL } from "../util/jit.ts";

const DIGEST_BYTES = 32;

/**
 * How close to the hash time (ns) a change must be to make an entry racy. File systems with
 * nanosecond timestamps still stamp from the kernel's coarse clock (one tick: at most 10 ms),
 * so 100 ms is a wide margin; timestamps that are whole seconds mean a 1 s- (or 2 s-) granular
 * file system, which gets two seconds.
 */
export function racyWindowNs(mtimeNsec: number, ctimeNsec: number): number {
  return mtimeNsec === 0 && ctimeNsec === 0 ? 2e9 : 1e8;
}

/** Nanoseconds from a stat time to a wall-clock time in ms: exact when they are close, which is what matters. */
function nsBetween([seconds, nanoseconds]: [number, number], laterMs: number): number {
  return (laterMs - seconds * 1000) * 1e6 - nanoseconds;
}

/** Whether a file hashed at `hashedAtMs` (taken before reading it) could have changed since, unseen by its stat. */
export function isRacy(stats: StatTable, at: number, hashedAtMs: number): boolean {
  const mtime = stats.mtime(at);
  const ctime = stats.ctime(at);
  const window = racyWindowNs(mtime[1], ctime[1]);
  return nsBetween(mtime, hashedAtMs) < window || nsBetween(ctime, hashedAtMs) < window;
}

/**
 * A directory's digest as digest.ts made it from the files of its row and `others`: its other
 * children (directories, symlinks) as walkOrderDigests describes them.
 */
export interface StoredTree {
  digest: Uint8Array;
  others: string;
}

/** The files of one directory as stored: names sorted by bytes, and per name its key, digest and racy flag. */
interface DirectoryRow {
  names: string[];
  keys: Uint32Array;
  digests: Uint8Array;
  racy: Uint8Array;
  tree?: StoredTree;
}

/**
 * A directory's files as this load found them, in the order they were looked up (sorted: the
 * walk's order). Keys stay in the walk's stat tables until a row is written: a warm load
 * copies nothing per file.
 */
class DirectoryState {
  readonly names: string[] = [];
  readonly tables: StatTable[] = [];
  readonly ats: number[] = [];
  readonly digests: (Uint8Array | undefined)[] = [];
  readonly racy: number[] = [];
  changed = false;
  /** The directory's tree digest as this load made it (from these files). */
  tree?: StoredTree;

  add(name: string, stats: StatTable, at: number, digest: Uint8Array | undefined, racy: number) {
    this.names.push(name);
    this.tables.push(stats);
    this.ats.push(at);
    this.digests.push(digest);
    // Stryker disable next-line CallExpression: a miss's flag is set by index when recorded, and a hit's missing one reads as 0 in toRow
    this.racy.push(racy);
  }

  /** The row to store: the files that have a digest (a file looked up but never recorded has none). */
  toRow(): DirectoryRow {
    // Plain loops: with a closure per file (map, filter, forEach) this was most of a cold
    // digest's flush (~20-30 ms of 20,000 files), run once per process, never optimized.
    const kept: number[] = [];
    // Stryker disable next-line EqualityOperator: one step past the end finds no digest and is skipped
    for (let i = 0; i < this.digests.length; i++) if (this.digests[i] !== undefined) kept.push(i);
    const names: string[] = [];
    const keys = new Uint32Array(kept.length * KEY_WORDS);
    const digests = new Uint8Array(kept.length * DIGEST_BYTES);
    const racy = new Uint8Array(kept.length);
    for (let to = 0; to < kept.length; to++) {
      const i = kept[to];
      names.push(this.names[i]);
      this.tables[i].copyKey(this.ats[i], keys, to * KEY_WORDS);
      digests.set(this.digests[i]!, to * DIGEST_BYTES);
      racy[to] = this.racy[i];
    }
    return { names, keys, digests, racy, tree: this.tree };
  }
}

/**
 * A table of its own for rows with a tree digest: a binary from before writes its rows (in
 * directory_rows) without one, and a tree digest beside a row written by it could be stale.
 */
const SCHEMA = `
DROP TABLE IF EXISTS files;
DROP TABLE IF EXISTS directory_rows;
CREATE TABLE IF NOT EXISTS directory_trees (
  path BLOB PRIMARY KEY,
  names BLOB NOT NULL,
  keys BLOB NOT NULL,
  digests BLOB NOT NULL,
  racy BLOB NOT NULL,
  tree BLOB,
  others BLOB
);
`;

/**
 * A row (a directory of 20 files: ~2.4 KB) takes a 16 KiB page with others. In the layout
 * before (4 KiB pages, a WITHOUT ROWID table, where a row's local part is at most ~1 KB) most
 * rows spilled onto overflow pages: a cold flush of 1,000 rows wrote a 4.6 MB file in ~45 ms
 * (insert, commit, checkpoint on close); now 2.8 MB in ~17 ms, and a warm read ~6 -> ~3 ms.
 */
const PAGE_SIZE = 16384;

/**
 * Sets the page size of a file that has no page yet. A file of the layout before (its rows in
 * `directories`) is emptied, as a cache may be, and given the page size when no other process
 * has it open (the page size cannot change in WAL mode); otherwise it keeps 4 KiB pages, and
 * only its speed differs.
 */
function preparePages(db: Database) {
  if ((db.query("PRAGMA page_count").get() as { page_count: number }).page_count === 0) {
    db.exec(`PRAGMA page_size = ${PAGE_SIZE}`);
    return;
  }
  if (!db.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'directories'").get()) return;
  db.exec("DROP TABLE directories");
  // Stryker disable BlockStatement: emptying the catch only goes on to set a page size that cannot change then: speed, never what is stored or trusted
  try {
    db.exec("PRAGMA journal_mode = DELETE");
  } catch {
    // SQLITE_BUSY: another connection has the file open, and it keeps its pages. (A failure of
    // another kind fails the journal_mode = WAL that follows, which throws.)
    return;
  }
  // Stryker restore BlockStatement
  db.exec(`PRAGMA page_size = ${PAGE_SIZE}`);
  db.exec("VACUUM");
}

interface StoredRow {
  path: Uint8Array;
  names: Uint8Array;
  keys: Uint8Array;
  digests: Uint8Array;
  racy: Uint8Array;
  tree: Uint8Array | null;
  others: Uint8Array | null;
}

const latin1 = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");

/** Names can hold neither "/" nor NUL, so "/" joins them into one column. */
function decodeRow(row: StoredRow): DirectoryRow {
  const names = row.names.byteLength === 0 ? [] : latin1(row.names).split("/");
  // Copied: a BLOB's bytes need not be 4-byte aligned for a Uint32Array view.
  // Stryker disable next-line MethodExpression: bun:sqlite gives each BLOB a buffer of its own today; the copy keeps that from mattering
  const keys = new Uint32Array(row.keys.slice().buffer);
  const tree = row.tree?.byteLength === DIGEST_BYTES && row.others ? { digest: row.tree, others: latin1(row.others) } : undefined;
  return { names, keys, digests: row.digests, racy: row.racy, tree };
}

/**
 * Index of `name` in sorted `names`, or -1; `hint` is where it would be if nothing was added or
 * removed before it (the usual case: one comparison).
 */
function indexIn(names: string[], name: string, hint: number): number {
  // Stryker disable next-line ConditionalExpression: the search finds the same index, later
  return names[hint] === name ? hint : find(names, name);
}

/** Index of `name` in sorted `names`, or -1. */
function find(names: string[], name: string): number {
  let low = 0;
  // Stryker disable next-line ArithmeticOperator: probing past the end compares with undefined, which steers left: the same answer
  let high = names.length - 1;
  while (low <= high) {
    const middle = (low + high) >>> 1;
    const probe = names[middle];
    if (probe === name) return middle;
    // Stryker disable next-line EqualityOperator: equal names returned on the line above
    if (probe < name) low = middle + 1;
    else high = middle - 1;
  }
  return -1;
}

function sameTree(a: StoredTree | undefined, b: StoredTree | undefined): boolean {
  if (!a || !b) return a === b;
  return a.others === b.others && Buffer.from(a.digest).equals(b.digest);
}

export class StatCache {
  // Called once per file of a context (see util/jit.ts).
  static {
    // Stryker disable next-line CallExpression: JIT tiers only change speed
    keepOutOfFTL(this.prototype.lookup, this.prototype.stateOf, indexIn, DirectoryState.prototype.add);
  }

  private readonly rows = new Map<string, DirectoryRow>();
  private readonly current = new Map<string, DirectoryState>();
  private lastDir?: string;
  private lastState?: DirectoryState;
  /** The stored row of lastDir. */
  private lastRow?: DirectoryRow;

  private constructor(private readonly db: Database | undefined) {
    if (!db) return;
    for (const row of db.query("SELECT path, names, keys, digests, racy, tree, others FROM directory_trees").all() as StoredRow[]) {
      this.rows.set(latin1(row.path), decodeRow(row));
    }
  }

  /** Opens (creating) the cache file; concurrent builds share it safely through WAL. */
  static open(file: string): StatCache {
    mkdirSync(dirname(file), { recursive: true });
    // Stryker disable next-line ObjectLiteral,BooleanLiteral: create is bun:sqlite's default, and strict only changes named parameters (these are positional)
    const db = new Database(file, { create: true, strict: true });
    db.exec("PRAGMA busy_timeout = 10000");
    preparePages(db);
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = NORMAL");
    db.exec(SCHEMA);
    return new StatCache(db);
  }

  /** A cache that lives only as long as this process: nothing is written (one-off runs, tests). */
  static inMemory(): StatCache {
    return new StatCache(undefined);
  }

  /** How many files have a stored digest. */
  get size(): number {
    let files = 0;
    for (const row of this.rows.values()) files += row.names.length;
    return files;
  }

  /**
   * The digest recorded for file `name` of directory `dir` (entry `at` of `stats`) when its
   * stat key is unchanged and the entry is not racy. Files must be looked up in the walk's
   * order (by name within a directory); each lookup also notes the file as present.
   */
  lookup(dir: string, name: string, stats: StatTable, at: number): Uint8Array | undefined {
    const state = this.stateOf(dir);
    const row = this.lastRow;
    const i = row ? indexIn(row.names, name, state.names.length) : -1;
    if (i < 0 || row!.racy[i] !== 0 || !stats.keyEquals(at, row!.keys, i * KEY_WORDS)) {
      state.add(name, stats, at, undefined, 1);
      state.changed = true;
      return undefined;
    }
    const digest = row!.digests.subarray(i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES);
    state.add(name, stats, at, digest, 0);
    return digest;
  }

  /**
   * Records the digest of a file looked up and missed, computed from content read at
   * `hashedAtMs` (wall clock, taken before the read). The entry is racy when the file changed
   * too close to that moment to be trusted.
   */
  record(dir: string, name: string, stats: StatTable, at: number, digest: Uint8Array, hashedAtMs: number) {
    const state = this.stateOf(dir);
    const i = find(state.names, name);
    if (i < 0) throw new Error(`stat cache: ${JSON.stringify(name)} in ${JSON.stringify(dir)} was recorded without a lookup`);
    state.digests[i] = digest;
    state.racy[i] = isRacy(stats, at, hashedAtMs) ? 1 : 0;
  }

  /**
   * The stored tree digest of `dir`, when this load looked up every file the row has, found each
   * unchanged and trusted, and looked up no other: then the row's files are the directory's
   * files now, with the digests the tree was made from. Ask after the directory's lookups; the
   * caller still compares `others` with what it found.
   */
  storedTree(dir: string): StoredTree | undefined {
    const state = this.current.get(dir);
    const row = this.rows.get(dir);
    if (!state || !row?.tree || state.changed || state.names.length !== row.names.length) return undefined;
    return row.tree;
  }

  /** Notes the tree digest this load made for `dir` from its files (a directory without files has no row, and none is kept). */
  recordTree(dir: string, tree: StoredTree) {
    const state = this.current.get(dir);
    if (state) state.tree = tree;
  }

  private stateOf(dir: string): DirectoryState {
    // Files of one directory mostly come one after another: skip the map for them.
    // Stryker disable next-line ConditionalExpression: the map holds the same state
    if (dir === this.lastDir && this.lastState) return this.lastState;
    let state = this.current.get(dir);
    if (!state) this.current.set(dir, (state = new DirectoryState()));
    this.lastDir = dir;
    this.lastState = state;
    this.lastRow = this.rows.get(dir);
    return state;
  }

  /**
   * Writes, in one transaction, each directory where a file was hashed or is gone, as this load
   * found it. Rows of directories this load did not look into are dropped once they outnumber
   * the live ones (directories deleted or now excluded), so the cache cannot grow forever.
   * Returns how many directories were written.
   */
  flush(): number {
    const written: [string, DirectoryRow][] = [];
    for (const [dir, state] of this.current) {
      const stored = this.rows.get(dir);
      // Stryker disable next-line OptionalChaining: a directory with no row has only misses, so it is changed
      if (!state.changed && stored?.names.length === state.names.length && sameTree(stored.tree, state.tree)) continue;
      const row = state.toRow();
      this.rows.set(dir, row);
      written.push([dir, row]);
    }
    // Stryker disable next-line ArrayDeclaration: removing a path that has no row removes nothing
    const stale = this.rows.size > 2 * this.current.size + 100 ? [...this.rows.keys()].filter((dir) => !this.current.has(dir)) : [];
    this.discard();
    for (const dir of stale) this.rows.delete(dir);
    // Stryker disable next-line ConditionalExpression,EqualityOperator: an empty transaction writes nothing
    if (!this.db || (written.length === 0 && stale.length === 0)) return written.length;
    const upsert = this.db.query("INSERT OR REPLACE INTO directory_trees VALUES (?, ?, ?, ?, ?, ?, ?)");
    const remove = this.db.query("DELETE FROM directory_trees WHERE path = ?");
    this.db.transaction(() => {
      for (const [dir, row] of written) {
        const keys = new Uint8Array(row.keys.buffer, row.keys.byteOffset, row.keys.byteLength);
        const others = row.tree ? Buffer.from(row.tree.others, "latin1") : null;
        upsert.run(Buffer.from(dir, "latin1"), Buffer.from(row.names.join("/"), "latin1"), keys, row.digests, row.racy, row.tree?.digest ?? null, others);
      }
      for (const dir of stale) remove.run(Buffer.from(dir, "latin1"));
    })();
    return written.length;
  }

  /** Forgets what a load that failed half-way looked up, so the next load starts clean. */
  discard() {
    this.current.clear();
    this.lastDir = this.lastState = this.lastRow = undefined;
  }

  close() {
    this.db?.close();
  }
}

