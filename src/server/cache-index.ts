/**
 * The remote cache's metadata: which blobs are stored (and their sizes), the actions (a step's
 * result) with the blobs each needs, conflicts, per-token use, access times for eviction.
 * `CacheIndex` is what Storage needs; `SqliteCacheIndex` keeps it in DATA/cache.db (the
 * default, one process), `PgCacheIndex` (cache-index-pg.ts) in PostgreSQL for replicas.
 *
 * Write-once is one conditional insert in both: the first result for a key is inserted, and a
 * second one only learns what is there; nothing reads first and writes after.
 */
import type { Database } from "bun:sqlite";
import { join } from "node:path";
import { addMissingColumns, openDatabase } from "../util/sqlite.ts";

import type { LayerDiff } from "./layer-diff.ts";

/** Who wrote one of two results for a key: token, signer, and the build it came from (when it said). */
export interface ResultSide {
  author: string | null;
  /** The author token's name (`TOKEN rw name=ci`), added where the result is shown. */
  authorName?: string;
  signer: string | null;
  result: string;
  build?: string | null;
}

export interface Conflict {
  key: string;
  time: number;
  first: ResultSide;
  second: ResultSide;
  /** The step as the second writer's build named it (`[build 5/6] RUN make`). */
  step?: string | null;
}

/**
 * A result that changed when the writer of the one kept made it again: the step is not
 * reproducible. Not a conflict (nobody else tried to replace it), and kept apart from them.
 */
export interface Unreproducible {
  key: string;
  time: number;
  author: string | null;
  signer: string | null;
  step: string | null;
  first: { result: string; build: string | null };
  second: { result: string; build: string | null };
  differences: LayerDiff;
}

/** A step that was not reproducible, and how often (the dashboard's non-deterministic steps). */
export interface Nondeterministic {
  step: string;
  count: number;
  last: number;
  lastBuild: string | null;
}

/** An action checked and ready to keep: its normalized body and what identifies its result. */
export interface ActionEntry {
  key: string;
  body: string;
  author: string;
  signer: string | null;
  result: string;
  blobs: string[];
  now: number;
  /** The result digest of a body stored before results were recorded with it. */
  resultOf?: (body: string) => string;
  /** The build and step that made it (as the uploader said; shown, never trusted for access). */
  build?: string | null;
  step?: string | null;
}

/**
 * `differs`: another result from the writer of the one kept (token and signer), not recorded as
 * a conflict; the caller compares the two and records what it finds (addUnreproducible).
 */
export type PutActionOutcome = "stored" | "same" | "signed" | { conflict: Conflict } | { differs: Conflict } | { missing: string[] };

export interface TokenUse {
  requests: number;
  bytesIn: number;
  bytesOut: number;
}

export interface TokenStat extends TokenUse {
  token: string;
}

/** What one eviction pass removed: blob rows gone (their bytes go next), and how many entries in all. */
export interface Evicted {
  blobs: string[];
  count: number;
}

export interface CacheIndex {
  /** Whether the store answers (readiness). */
  ping(): Promise<void>;
  blobSize(hash: string): Promise<number | undefined>;
  /**
   * Makes a verified upload the blob: `commit` puts its bytes in place, then the blob is
   * recorded (a second record of the same blob changes nothing). Shared indexes run the two
   * under the blob's lock, so an eviction of the same blob never falls between them.
   */
  addBlob(hash: string, size: number, now: number, commit: () => Promise<void>): Promise<void>;
  getAction(key: string): Promise<string | undefined>;
  hasAction(key: string): Promise<boolean>;
  /**
   * Keeps an action once. Every blob it names must be recorded (and is marked used now, so an
   * eviction running meanwhile leaves it); the same result again is "same"; the same result
   * signed replaces an unsigned copy ("signed"); another result is a conflict, recorded.
   */
  putAction(entry: ActionEntry): Promise<PutActionOutcome>;
  signerOf(key: string): Promise<string | null>;
  conflicts(options: { key?: string; limit: number }): Promise<Conflict[]>;
  conflictCount(): Promise<number>;
  addUnreproducible(record: Unreproducible): Promise<void>;
  /** Newest first. */
  unreproducible(options: { key?: string; limit: number }): Promise<Unreproducible[]>;
  /** The steps not reproducible most often since `since`, most first. */
  nondeterministic(since: number, limit: number): Promise<Nondeterministic[]>;
  tokenStats(): Promise<TokenStat[]>;
  counts(): Promise<{ blobs: number; actions: number; bytes: number }>;
  /** Writes access times and token use gathered since the last flush. */
  flush(blobs: Map<string, number>, actions: Map<string, number>, tokens: Map<string, TokenUse>): Promise<void>;
  /**
   * Forgets entries until the blobs recorded take at most `max` bytes: blobs no action needs
   * and not used since `graceEnds` first (least recently used), then the least recently used
   * actions and the blobs only they needed. A blob a kept action needs is never forgotten.
   * `remove` deletes a forgotten blob's bytes, after its entry is gone for good (killed in
   * between, bytes nobody names are left, never an entry naming no bytes). Returns undefined
   * when another replica is evicting now (it does the work).
   */
  evict(max: number, graceEnds: number, remove: (hash: string) => Promise<void>): Promise<Evicted | undefined>;
  close(): Promise<void>;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS blobs (hash TEXT PRIMARY KEY, size INTEGER NOT NULL, last_access INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS actions (key TEXT PRIMARY KEY, body TEXT NOT NULL, size INTEGER NOT NULL, last_access INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS action_blobs (key TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY (key, hash));
CREATE INDEX IF NOT EXISTS action_blobs_hash ON action_blobs (hash);
CREATE TABLE IF NOT EXISTS conflicts (
  id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, time INTEGER NOT NULL,
  first_author TEXT, first_signer TEXT, first_result TEXT NOT NULL,
  second_author TEXT, second_signer TEXT, second_result TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS conflicts_key ON conflicts (key);
CREATE TABLE IF NOT EXISTS unreproducible (
  id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, time INTEGER NOT NULL, author TEXT, signer TEXT, step TEXT,
  first_result TEXT NOT NULL, first_build TEXT, second_result TEXT NOT NULL, second_build TEXT, differences TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS unreproducible_time ON unreproducible (time);
CREATE TABLE IF NOT EXISTS token_stats (token TEXT PRIMARY KEY, requests INTEGER NOT NULL, bytes_in INTEGER NOT NULL, bytes_out INTEGER NOT NULL);
`;

type ConflictRow = Record<string, string | number | null>;

export function conflictFromRow(r: ConflictRow): Conflict {
  return {
    key: r.key as string,
    time: Number(r.time),
    first: { author: r.first_author as string | null, signer: r.first_signer as string | null, result: r.first_result as string, build: (r.first_build ?? null) as string | null },
    second: { author: r.second_author as string | null, signer: r.second_signer as string | null, result: r.second_result as string, build: (r.second_build ?? null) as string | null },
    step: (r.step ?? null) as string | null,
  };
}

export function unreproducibleFromRow(r: ConflictRow): Unreproducible {
  return {
    key: r.key as string,
    time: Number(r.time),
    author: r.author as string | null,
    signer: r.signer as string | null,
    step: r.step as string | null,
    first: { result: r.first_result as string, build: r.first_build as string | null },
    second: { result: r.second_result as string, build: r.second_build as string | null },
    differences: JSON.parse(r.differences as string) as LayerDiff,
  };
}

/** Two results for one key from the same writer: the same token, and the same signer (or none). */
export const sameWriter = (conflict: Conflict) => conflict.first.author === conflict.second.author && conflict.first.signer === conflict.second.signer;

/**
 * The default index, in one SQLite file. Blob sizes are also kept in memory (loaded at start):
 * a hit needs no query. Its promises are already settled when returned.
 */
export class SqliteCacheIndex implements CacheIndex {
  readonly db: Database;
  private readonly sizes = new Map<string, number>();

  constructor(dataDir: string) {
    this.db = openDatabase(join(dataDir, "cache.db"), SCHEMA);
    addMissingColumns(this.db, "actions", ["author TEXT", "signer TEXT", "result TEXT", "build TEXT", "step TEXT"]);
    addMissingColumns(this.db, "conflicts", ["first_build TEXT", "second_build TEXT", "step TEXT"]);
    for (const row of this.db.query("SELECT hash, size FROM blobs").all() as { hash: string; size: number }[]) this.sizes.set(row.hash, row.size);
  }

  async ping() {
    this.db.query("SELECT 1").get();
  }

  async blobSize(hash: string) {
    return this.sizes.get(hash);
  }

  async addBlob(hash: string, size: number, now: number, commit: () => Promise<void>) {
    await commit();
    this.db.query("INSERT OR IGNORE INTO blobs VALUES (?, ?, ?)").run(hash, size, now);
    this.sizes.set(hash, size);
  }

  async getAction(key: string) {
    return (this.db.query("SELECT body FROM actions WHERE key = ?").get(key) as { body: string } | null)?.body;
  }

  async hasAction(key: string) {
    return this.db.query("SELECT 1 FROM actions WHERE key = ?").get(key) !== null;
  }

  async putAction(entry: ActionEntry): Promise<PutActionOutcome> {
    const { key, body, author, signer, result, blobs, now } = entry;
    const build = entry.build ?? null;
    const step = entry.step ?? null;
    const missing = blobs.filter((b) => !this.sizes.has(b));
    if (missing.length) return { missing };
    return this.db.transaction((): PutActionOutcome => {
      const inserted = this.db
        .query("INSERT INTO actions (key, body, size, last_access, author, signer, result, build, step) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING")
        .run(key, body, body.length, now, author, signer, result, build, step).changes;
      if (inserted) {
        for (const blob of blobs) {
          this.db.query("INSERT OR IGNORE INTO action_blobs VALUES (?, ?)").run(key, blob);
          this.db.query("UPDATE blobs SET last_access = ? WHERE hash = ?").run(now, blob);
        }
        return "stored";
      }
      const existing = this.db.query("SELECT author, signer, result, body, build FROM actions WHERE key = ?").get(key) as { author: string | null; signer: string | null; result: string | null; body: string; build: string | null };
      // Rows from before results were recorded carry none: the caller's digest of the same body decides.
      const first = existing.result ?? entry.resultOf?.(existing.body) ?? "";
      if (first === result) {
        if (existing.signer !== null || signer === null) return "same";
        // Conditional on what was read: only an unsigned copy of this very result is replaced.
        const changed = this.db
          .query("UPDATE actions SET body = ?, size = ?, author = ?, signer = ?, result = ? WHERE key = ? AND signer IS NULL")
          .run(body, body.length, author, signer, result, key).changes;
        return changed ? "signed" : "same";
      }
      const conflict: Conflict = { key, time: now, first: { author: existing.author, signer: existing.signer, result: first, build: existing.build }, second: { author, signer, result, build }, step };
      if (sameWriter(conflict)) return { differs: conflict };
      this.db
        .query("INSERT INTO conflicts (key, time, first_author, first_signer, first_result, second_author, second_signer, second_result, first_build, second_build, step) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        .run(key, now, existing.author, existing.signer, first, author, signer, result, existing.build, build, step);
      return { conflict };
    })();
  }

  async signerOf(key: string) {
    return (this.db.query("SELECT signer FROM actions WHERE key = ?").get(key) as { signer: string | null } | null)?.signer ?? null;
  }

  async conflicts(options: { key?: string; limit: number }) {
    const rows = this.db
      .query(`SELECT * FROM conflicts ${options.key ? "WHERE key = $key" : ""} ORDER BY id DESC LIMIT $limit`)
      .all({ ...(options.key ? { key: options.key } : {}), limit: options.limit }) as ConflictRow[];
    return rows.map(conflictFromRow);
  }

  async conflictCount() {
    return (this.db.query("SELECT COUNT(*) AS n FROM conflicts").get() as { n: number }).n;
  }

  async addUnreproducible(u: Unreproducible) {
    this.db
      .query("INSERT INTO unreproducible (key, time, author, signer, step, first_result, first_build, second_result, second_build, differences) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
      .run(u.key, u.time, u.author, u.signer, u.step, u.first.result, u.first.build, u.second.result, u.second.build, JSON.stringify(u.differences));
  }

  async unreproducible(options: { key?: string; limit: number }) {
    const rows = this.db
      .query(`SELECT * FROM unreproducible ${options.key ? "WHERE key = $key" : ""} ORDER BY id DESC LIMIT $limit`)
      .all({ ...(options.key ? { key: options.key } : {}), limit: options.limit }) as ConflictRow[];
    return rows.map(unreproducibleFromRow);
  }

  async nondeterministic(since: number, limit: number) {
    return this.db
      .query(
        `SELECT g.step, g.count, g.last,
           (SELECT second_build FROM unreproducible u WHERE coalesce(u.step, u.key) = g.step ORDER BY id DESC LIMIT 1) AS lastBuild
         FROM (SELECT coalesce(step, key) AS step, count(*) AS count, max(time) AS last FROM unreproducible WHERE time >= ? GROUP BY coalesce(step, key)) g
         ORDER BY g.count DESC, g.last DESC LIMIT ?`,
      )
      .all(since, limit) as Nondeterministic[];
  }

  async tokenStats() {
    return this.db.query("SELECT token, requests, bytes_in AS bytesIn, bytes_out AS bytesOut FROM token_stats ORDER BY requests DESC LIMIT 100").all() as TokenStat[];
  }

  async counts() {
    const blobs = (this.db.query("SELECT COUNT(*) AS n FROM blobs").get() as { n: number }).n;
    const actions = (this.db.query("SELECT COUNT(*) AS n FROM actions").get() as { n: number }).n;
    let bytes = 0;
    for (const size of this.sizes.values()) bytes += size;
    return { blobs, actions, bytes };
  }

  async flush(blobs: Map<string, number>, actions: Map<string, number>, tokens: Map<string, TokenUse>) {
    this.db.transaction(() => {
      const blob = this.db.query("UPDATE blobs SET last_access = ? WHERE hash = ?");
      for (const [hash, time] of blobs) blob.run(time, hash);
      const action = this.db.query("UPDATE actions SET last_access = ? WHERE key = ?");
      for (const [key, time] of actions) action.run(time, key);
      const stats = this.db.query(
        "INSERT INTO token_stats VALUES (?, ?, ?, ?) ON CONFLICT(token) DO UPDATE SET requests = requests + excluded.requests, bytes_in = bytes_in + excluded.bytes_in, bytes_out = bytes_out + excluded.bytes_out",
      );
      for (const [token, use] of tokens) stats.run(token, use.requests, use.bytesIn, use.bytesOut);
    })();
  }

  async evict(max: number, graceEnds: number, remove: (hash: string) => Promise<void>): Promise<Evicted> {
    let used = 0;
    for (const size of this.sizes.values()) used += size;
    const gone: string[] = [];
    let count = 0;
    const forget = (hash: string) => {
      this.db.query("DELETE FROM blobs WHERE hash = ?").run(hash);
      used -= this.sizes.get(hash)!;
      this.sizes.delete(hash);
      gone.push(hash);
      count++;
    };
    const unreferenced = this.db
      .query("SELECT hash FROM blobs WHERE hash NOT IN (SELECT hash FROM action_blobs) AND last_access < ? ORDER BY last_access ASC")
      .all(graceEnds) as { hash: string }[];
    for (const blob of unreferenced) {
      if (used <= max) break;
      forget(blob.hash);
    }
    while (used > max) {
      const oldest = this.db.query("SELECT key FROM actions ORDER BY last_access ASC LIMIT 1").get() as { key: string } | null;
      if (!oldest) break;
      const needed = (this.db.query("SELECT hash FROM action_blobs WHERE key = ?").all(oldest.key) as { hash: string }[]).map((r) => r.hash);
      this.db.query("DELETE FROM actions WHERE key = ?").run(oldest.key);
      this.db.query("DELETE FROM action_blobs WHERE key = ?").run(oldest.key);
      count++;
      for (const hash of needed) {
        // Stryker disable next-line ConditionalExpression: an action's blobs are stored (putAction checks), so their size is known
        if (!this.db.query("SELECT 1 FROM action_blobs WHERE hash = ?").get(hash) && this.sizes.has(hash)) forget(hash);
      }
    }
    // One process: nothing can store these again between the entries going and the bytes going.
    for (const hash of gone) await remove(hash);
    return { blobs: gone, count };
  }

  /** Whether a blob is stored, and its size, without waiting (for the cache mounts kept beside). */
  known(hash: string): boolean {
    return this.sizes.has(hash);
  }

  sizeOf(hash: string): number | undefined {
    return this.sizes.get(hash);
  }

  async close() {
    this.db.close();
  }
}
