/**
 * A persistent stat cache per build context (bun:sqlite): path → (size, mtime_ns, ctime_ns,
 * inode, mode, uid, gid, content digest). A file whose stat is unchanged is not read again.
 *
 * The racy case: a file written in the same timestamp tick as the moment we hashed it can
 * change again without its stat changing (same size, same mtime, same ctime). Like git's
 * "racily clean" entries, a row whose mtime or ctime is within the racy window of the time it
 * was hashed is kept but not trusted: the next lookup re-hashes it, and only then (once the
 * tick has passed) stores it as trusted.
 */
import { Database } from "bun:sqlite";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import type { BigIntStats } from "node:fs";

const SECOND_NS = 1_000_000_000n;

/**
 * How close to the hash time a change must be to make a row racy. File systems with
 * nanosecond timestamps still stamp from the kernel's coarse clock (one tick: at most 10 ms),
 * so 100 ms is a wide margin; timestamps that are whole seconds mean a 1 s- (or 2 s-) granular
 * file system, which gets two seconds.
 */
export function racyWindowNs(mtimeNs: bigint, ctimeNs: bigint): bigint {
  return mtimeNs % SECOND_NS === 0n && ctimeNs % SECOND_NS === 0n ? 2n * SECOND_NS : 100_000_000n;
}

export interface CachedDigest {
  digest: Uint8Array;
}

interface Row {
  path: Uint8Array;
  size: bigint;
  mtime_ns: bigint;
  ctime_ns: bigint;
  ino: bigint;
  mode: bigint;
  uid: bigint;
  gid: bigint;
  digest: Uint8Array;
  racy: bigint;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS files (
  path BLOB PRIMARY KEY,
  size INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  ctime_ns INTEGER NOT NULL,
  ino INTEGER NOT NULL,
  mode INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  gid INTEGER NOT NULL,
  digest BLOB NOT NULL,
  racy INTEGER NOT NULL
) WITHOUT ROWID;
`;

export class StatCache {
  private readonly rows = new Map<string, Row>();
  private readonly pending: Row[] = [];

  private constructor(private readonly db: Database | undefined) {
    if (!db) return;
    for (const row of db.query("SELECT * FROM files").all() as Row[]) {
      this.rows.set(Buffer.from(row.path.buffer, row.path.byteOffset, row.path.byteLength).toString("latin1"), row);
    }
  }

  /** Opens (creating) the cache file; concurrent builds share it safely through WAL. */
  static open(file: string): StatCache {
    mkdirSync(dirname(file), { recursive: true });
    const db = new Database(file, { create: true, safeIntegers: true, strict: true });
    db.exec("PRAGMA busy_timeout = 10000");
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = NORMAL");
    db.exec(SCHEMA);
    return new StatCache(db);
  }

  /** A cache that lives only as long as this process: nothing is written (one-off runs, tests). */
  static inMemory(): StatCache {
    return new StatCache(undefined);
  }

  get size(): number {
    return this.rows.size;
  }

  /** The digest recorded for `path`, when its stat is unchanged and the row is not racy. */
  lookup(path: string, stat: BigIntStats): Uint8Array | undefined {
    const row = this.rows.get(path);
    if (!row || row.racy !== 0n) return undefined;
    if (
      row.size !== stat.size ||
      row.mtime_ns !== stat.mtimeNs ||
      row.ctime_ns !== stat.ctimeNs ||
      row.ino !== stat.ino ||
      row.mode !== stat.mode ||
      row.uid !== stat.uid ||
      row.gid !== stat.gid
    ) {
      return undefined;
    }
    return row.digest;
  }

  /**
   * Records a digest computed from content read at `hashedAtNs` (wall clock, taken before the
   * read). The row is racy when the file changed too close to that moment to be trusted.
   */
  record(path: string, stat: BigIntStats, digest: Uint8Array, hashedAtNs: bigint) {
    const window = racyWindowNs(stat.mtimeNs, stat.ctimeNs);
    const racy = hashedAtNs - stat.mtimeNs < window || hashedAtNs - stat.ctimeNs < window;
    const row: Row = {
      path: Buffer.from(path, "latin1"),
      size: stat.size,
      mtime_ns: stat.mtimeNs,
      ctime_ns: stat.ctimeNs,
      ino: stat.ino,
      mode: stat.mode,
      uid: stat.uid,
      gid: stat.gid,
      digest,
      racy: racy ? 1n : 0n,
    };
    this.rows.set(path, row);
    this.pending.push(row);
  }

  /**
   * Writes recorded rows in one transaction. Rows of paths not in `seen` are dropped once they
   * outnumber the live ones (files deleted or now excluded), so the cache cannot grow forever.
   */
  flush(seen?: Set<string>) {
    if (!this.db) return;
    // Stryker disable next-line ArrayDeclaration: removing a path that has no row removes nothing
    const stale = seen && this.rows.size > 2 * seen.size + 1000 ? [...this.rows.keys()].filter((p) => !seen.has(p)) : [];
    // Stryker disable next-line ConditionalExpression,EqualityOperator: an empty transaction writes nothing
    if (this.pending.length === 0 && stale.length === 0) return;
    const upsert = this.db.query(
      "INSERT OR REPLACE INTO files VALUES ($path, $size, $mtime_ns, $ctime_ns, $ino, $mode, $uid, $gid, $digest, $racy)",
    );
    const remove = this.db.query("DELETE FROM files WHERE path = ?");
    this.db.transaction(() => {
      for (const row of this.pending) upsert.run(row as unknown as Record<string, never>);
      for (const path of stale) {
        remove.run(Buffer.from(path, "latin1"));
        this.rows.delete(path);
      }
    })();
    this.pending.length = 0;
  }

  close() {
    this.db?.close();
  }
}
