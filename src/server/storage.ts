/**
 * The remote cache's storage: blobs named by their BLAKE3 hash, and actions (a step's result:
 * JSON naming the blobs it needs), with metadata in SQLite (WAL).
 *
 *   DATA/blobs/ab/abcdef…   complete, verified blobs only
 *   DATA/tmp/               uploads in progress (emptied at start: a crash leaves nothing visible)
 *   DATA/cache.db           blobs, actions, which blobs each action needs, per-token stats
 *
 * An upload streams to tmp/ while being hashed; a body whose hash is not its name is refused
 * and deleted, and a complete one appears by rename. Eviction keeps storage under a budget:
 * blobs no action needs go first (once past a grace period for the action that should follow),
 * then the least recently used actions, and a blob goes only when no kept action needs it.
 */
import { Database } from "bun:sqlite";
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { Blake3Hasher } from "../hash/blake3.ts";

export const HASH = /^[0-9a-f]{64}$/;

export class UploadRejected extends Error {
  constructor(
    readonly status: 400 | 413,
    readonly reason: "mismatch" | "too-large" | "aborted" | "missing-blobs" | "invalid",
    message: string,
  ) {
    super(message);
  }
}

export interface StorageOptions {
  dataDir: string;
  /** Total bytes of blobs to keep (least recently used go first); undefined: no limit. */
  maxSize?: number;
  /** Largest single blob accepted. */
  maxBlob?: number;
  /**
   * A blob no action names yet is kept this long: a client uploads blobs first and the action
   * that names them right after, and eviction must not fall between the two.
   */
  pendingGraceMs?: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS blobs (hash TEXT PRIMARY KEY, size INTEGER NOT NULL, last_access INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS actions (key TEXT PRIMARY KEY, body TEXT NOT NULL, size INTEGER NOT NULL, last_access INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS action_blobs (key TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY (key, hash));
CREATE INDEX IF NOT EXISTS action_blobs_hash ON action_blobs (hash);
CREATE TABLE IF NOT EXISTS token_stats (token TEXT PRIMARY KEY, requests INTEGER NOT NULL, bytes_in INTEGER NOT NULL, bytes_out INTEGER NOT NULL);
`;

export class Storage {
  readonly db: Database;
  private readonly blobDir: string;
  private readonly tmpDir: string;
  evictions = 0;

  constructor(readonly options: StorageOptions) {
    this.blobDir = join(options.dataDir, "blobs");
    this.tmpDir = join(options.dataDir, "tmp");
    mkdirSync(this.blobDir, { recursive: true });
    // Uploads cut off by a crash or a kill are discarded whole.
    rmSync(this.tmpDir, { recursive: true, force: true });
    mkdirSync(this.tmpDir, { recursive: true });
    this.db = new Database(join(options.dataDir, "cache.db"), { create: true, strict: true });
    this.db.exec("PRAGMA busy_timeout = 10000");
    this.db.exec("PRAGMA journal_mode = WAL");
    this.db.exec("PRAGMA synchronous = NORMAL");
    this.db.exec(SCHEMA);
  }

  close() {
    this.db.close();
  }

  blobPath(hash: string): string {
    return join(this.blobDir, hash.slice(0, 2), hash);
  }

  hasBlob(hash: string): boolean {
    return this.db.query("SELECT 1 FROM blobs WHERE hash = ?").get(hash) !== null && existsSync(this.blobPath(hash));
  }

  blobSize(hash: string): number | undefined {
    const row = this.db.query("SELECT size FROM blobs WHERE hash = ?").get(hash) as { size: number } | null;
    return row?.size;
  }

  touchBlob(hash: string) {
    this.db.query("UPDATE blobs SET last_access = ? WHERE hash = ?").run(Date.now(), hash);
  }

  /** Stores a blob from a stream, verifying its BLAKE3 hash as it arrives. */
  async putBlob(hash: string, body: ReadableStream<Uint8Array>, declaredLength?: number): Promise<{ size: number; existed: boolean }> {
    const max = this.options.maxBlob;
    if (max !== undefined && declaredLength !== undefined && declaredLength > max) {
      throw new UploadRejected(413, "too-large", `blob of ${declaredLength} bytes is over the limit of ${max}`);
    }
    const temp = join(this.tmpDir, `${hash}-${process.hrtime.bigint()}`);
    const fd = openSync(temp, "w", 0o600);
    const hasher = new Blake3Hasher();
    let size = 0;
    let complete = false;
    try {
      try {
        for await (const chunk of body) {
          size += chunk.length;
          if (max !== undefined && size > max) throw new UploadRejected(413, "too-large", `blob is over the limit of ${max} bytes`);
          hasher.update(chunk);
          writeSync(fd, chunk);
        }
      } catch (error) {
        if (error instanceof UploadRejected) throw error;
        throw new UploadRejected(400, "aborted", `upload did not complete: ${(error as Error).message}`);
      }
      const actual = hasher.digest("hex");
      if (actual !== hash) throw new UploadRejected(400, "mismatch", `body hashes to ${actual}, not ${hash}: nothing stored`);
      fsyncSync(fd);
      complete = true;
    } finally {
      closeSync(fd);
      if (!complete) rmSync(temp, { force: true });
    }
    const existed = this.hasBlob(hash);
    if (existed) rmSync(temp, { force: true });
    else {
      mkdirSync(join(this.blobDir, hash.slice(0, 2)), { recursive: true });
      renameSync(temp, this.blobPath(hash));
      this.db.query("INSERT OR REPLACE INTO blobs VALUES (?, ?, ?)").run(hash, size, Date.now());
    }
    return { size, existed };
  }

  getAction(key: string): string | undefined {
    const row = this.db.query("SELECT body FROM actions WHERE key = ?").get(key) as { body: string } | null;
    if (!row) return undefined;
    this.db.query("UPDATE actions SET last_access = ? WHERE key = ?").run(Date.now(), key);
    return row.body;
  }

  hasAction(key: string): boolean {
    return this.db.query("SELECT 1 FROM actions WHERE key = ?").get(key) !== null;
  }

  /** Stores an action; every blob it names (`blobs: [hash…]`) must already be here. */
  putAction(key: string, body: string) {
    let parsed: { blobs?: unknown };
    try {
      parsed = JSON.parse(body);
    } catch {
      throw new UploadRejected(400, "invalid", "the action is not JSON");
    }
    const blobs = parsed.blobs ?? [];
    if (!Array.isArray(blobs) || !blobs.every((b) => typeof b === "string" && HASH.test(b))) {
      throw new UploadRejected(400, "invalid", 'the action\'s "blobs" must be a list of BLAKE3 hashes');
    }
    const missing = (blobs as string[]).filter((b) => !this.hasBlob(b));
    if (missing.length) throw new UploadRejected(400, "missing-blobs", `the action names blobs that are not stored: ${missing.join(", ")}`);
    const now = Date.now();
    this.db.transaction(() => {
      this.db.query("INSERT OR REPLACE INTO actions VALUES (?, ?, ?, ?)").run(key, body, body.length, now);
      this.db.query("DELETE FROM action_blobs WHERE key = ?").run(key);
      for (const blob of blobs as string[]) {
        this.db.query("INSERT OR IGNORE INTO action_blobs VALUES (?, ?)").run(key, blob);
        this.db.query("UPDATE blobs SET last_access = ? WHERE hash = ?").run(now, blob);
      }
    })();
  }

  storageBytes(): number {
    return (this.db.query("SELECT COALESCE(SUM(size), 0) AS n FROM blobs").get() as { n: number }).n;
  }

  counts(): { blobs: number; actions: number } {
    const blobs = (this.db.query("SELECT COUNT(*) AS n FROM blobs").get() as { n: number }).n;
    const actions = (this.db.query("SELECT COUNT(*) AS n FROM actions").get() as { n: number }).n;
    return { blobs, actions };
  }

  /**
   * Brings storage under the budget: unreferenced blobs first (least recently used), then the
   * least recently used actions and the blobs only they needed. Returns how many went.
   */
  evict(): number {
    const max = this.options.maxSize;
    if (max === undefined) return 0;
    let used = this.storageBytes();
    let evicted = 0;
    const removeBlob = (hash: string, size: number) => {
      rmSync(this.blobPath(hash), { force: true });
      this.db.query("DELETE FROM blobs WHERE hash = ?").run(hash);
      used -= size;
      evicted++;
    };
    const graceEnds = Date.now() - (this.options.pendingGraceMs ?? 10 * 60_000);
    const unreferenced = this.db
      .query("SELECT hash, size FROM blobs WHERE hash NOT IN (SELECT hash FROM action_blobs) AND last_access < ? ORDER BY last_access ASC")
      .all(graceEnds) as { hash: string; size: number }[];
    for (const blob of unreferenced) {
      if (used <= max) break;
      removeBlob(blob.hash, blob.size);
    }
    while (used > max) {
      const oldest = this.db.query("SELECT key FROM actions ORDER BY last_access ASC LIMIT 1").get() as { key: string } | null;
      if (!oldest) break;
      const needed = (this.db.query("SELECT hash FROM action_blobs WHERE key = ?").all(oldest.key) as { hash: string }[]).map((r) => r.hash);
      this.db.query("DELETE FROM actions WHERE key = ?").run(oldest.key);
      this.db.query("DELETE FROM action_blobs WHERE key = ?").run(oldest.key);
      evicted++;
      for (const hash of needed) {
        const stillNeeded = this.db.query("SELECT 1 FROM action_blobs WHERE hash = ?").get(hash);
        const size = this.blobSize(hash);
        if (!stillNeeded && size !== undefined) removeBlob(hash, size);
      }
    }
    this.evictions += evicted;
    return evicted;
  }

  recordTokenUse(token: string, bytesIn: number, bytesOut: number) {
    this.db
      .query(
        "INSERT INTO token_stats VALUES (?, 1, ?, ?) ON CONFLICT(token) DO UPDATE SET requests = requests + 1, bytes_in = bytes_in + excluded.bytes_in, bytes_out = bytes_out + excluded.bytes_out",
      )
      .run(token, bytesIn, bytesOut);
  }

  /** Blob files on disk that the database does not know (for tests and checks). */
  strayFiles(): string[] {
    const stray: string[] = [];
    for (const prefix of readdirSync(this.blobDir)) {
      for (const name of readdirSync(join(this.blobDir, prefix))) if (!this.hasBlob(name)) stray.push(name);
    }
    return stray.concat(readdirSync(this.tmpDir));
  }

  fileSize(hash: string): number {
    return statSync(this.blobPath(hash)).size;
  }
}
