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
import type { Database } from "bun:sqlite";
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { mkdir, open, rename, rm, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { Blake3Hasher } from "../hash/blake3.ts";
import { addMissingColumns, openDatabase } from "../util/sqlite.ts";
import { checkSignature, resultDigest, validateAction, type RemoteAction } from "../remote/action.ts";

export const HASH = /^[0-9a-f]{64}$/;

export class UploadRejected extends Error {
  constructor(
    readonly status: 400 | 409 | 413,
    readonly reason: "mismatch" | "too-large" | "aborted" | "missing-blobs" | "invalid" | "bad-signature" | "conflict",
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
  /** Memory for small blobs served from memory (default 64 MiB). */
  smallBlobCacheBytes?: number;
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
CREATE TABLE IF NOT EXISTS token_stats (token TEXT PRIMARY KEY, requests INTEGER NOT NULL, bytes_in INTEGER NOT NULL, bytes_out INTEGER NOT NULL);
`;

export class Storage {
  readonly db: Database;
  private readonly blobDir: string;
  private readonly tmpDir: string;
  evictions = 0;
  /** hash → size of every stored blob: a hit needs no query and no stat. */
  private readonly sizes = new Map<string, number>();
  /**
   * Last-access times and token stats are written in batches (flush()), not per request:
   * a write transaction per cache hit would cap hits at a few thousand a second.
   */
  private readonly touchedBlobs = new Map<string, number>();
  private readonly touchedActions = new Map<string, number>();
  private readonly tokenUse = new Map<string, { requests: number; bytesIn: number; bytesOut: number }>();
  /**
   * Small blobs (≤ 64 KiB) served from memory, least recently used out past 64 MiB: opening
   * and sending a file per request costs more than the request itself for these.
   */
  private readonly smallBlobs = new Map<string, Uint8Array>();
  private smallBlobBytes = 0;
  static readonly SMALL_BLOB = 64 * 1024;
  private readonly smallBlobCacheLimit: number;

  constructor(readonly options: StorageOptions) {
    this.blobDir = join(options.dataDir, "blobs");
    this.tmpDir = join(options.dataDir, "tmp");
    // Stryker disable next-line ArithmeticOperator: how much memory the cache may use changes no answer
    this.smallBlobCacheLimit = options.smallBlobCacheBytes ?? 64 * 1024 * 1024;
    mkdirSync(this.blobDir, { recursive: true });
    // Uploads cut off by a crash or a kill are discarded whole.
    rmSync(this.tmpDir, { recursive: true, force: true });
    // Stryker disable next-line ObjectLiteral,BooleanLiteral: its parent was made just above
    mkdirSync(this.tmpDir, { recursive: true });
    this.db = openDatabase(join(options.dataDir, "cache.db"), SCHEMA);
    addMissingColumns(this.db, "actions", ["author TEXT", "signer TEXT", "result TEXT"]);
    for (const row of this.db.query("SELECT hash, size FROM blobs").all() as { hash: string; size: number }[]) this.sizes.set(row.hash, row.size);
  }

  /** Writes batched access times and token stats. */
  flush() {
    // Stryker disable next-line ConditionalExpression,ArithmeticOperator: an empty transaction writes nothing
    if (this.touchedBlobs.size + this.touchedActions.size + this.tokenUse.size === 0) return;
    this.db.transaction(() => {
      const blob = this.db.query("UPDATE blobs SET last_access = ? WHERE hash = ?");
      for (const [hash, time] of this.touchedBlobs) blob.run(time, hash);
      const action = this.db.query("UPDATE actions SET last_access = ? WHERE key = ?");
      for (const [key, time] of this.touchedActions) action.run(time, key);
      const stats = this.db.query(
        "INSERT INTO token_stats VALUES (?, ?, ?, ?) ON CONFLICT(token) DO UPDATE SET requests = requests + excluded.requests, bytes_in = bytes_in + excluded.bytes_in, bytes_out = bytes_out + excluded.bytes_out",
      );
      for (const [token, use] of this.tokenUse) stats.run(token, use.requests, use.bytesIn, use.bytesOut);
    })();
    // Writing the same access times again changes nothing; token use must not be counted twice.
    // Stryker disable next-line CallExpression
    this.touchedBlobs.clear();
    // Stryker disable next-line CallExpression
    this.touchedActions.clear();
    this.tokenUse.clear();
  }

  close() {
    this.flush();
    this.db.close();
  }

  blobPath(hash: string): string {
    return join(this.blobDir, hash.slice(0, 2), hash);
  }

  hasBlob(hash: string): boolean {
    return this.sizes.has(hash);
  }

  blobSize(hash: string): number | undefined {
    return this.sizes.get(hash);
  }

  touchBlob(hash: string) {
    this.touchedBlobs.set(hash, Date.now());
  }

  /** A small blob's bytes from memory (read from disk the first time); undefined if large. */
  smallBlob(hash: string): Uint8Array | undefined {
    const size = this.sizes.get(hash);
    // Stryker disable next-line EqualityOperator: whether a blob of exactly 64 KiB is kept in memory changes no answer
    if (size === undefined || size > Storage.SMALL_BLOB) return undefined;
    let bytes = this.smallBlobs.get(hash);
    if (bytes) {
      this.smallBlobs.delete(hash); // most recently used goes last
    } else {
      bytes = readFileSync(this.blobPath(hash));
      this.smallBlobBytes += bytes.length;
      for (const [old, data] of this.smallBlobs) {
        if (this.smallBlobBytes <= this.smallBlobCacheLimit) break;
        this.smallBlobs.delete(old);
        this.smallBlobBytes -= data.length;
      }
    }
    this.smallBlobs.set(hash, bytes);
    return bytes;
  }

  /**
   * Stores a blob from a stream, verifying its BLAKE3 hash as it arrives. The disk work is
   * asynchronous (writes, fsync and rename run off the event loop, so downloads keep flowing
   * while uploads land), and a blob that is already stored is only drained and checked, never
   * written again.
   */
  async putBlob(hash: string, body: ReadableStream<Uint8Array>, declaredLength?: number): Promise<{ size: number; existed: boolean }> {
    const max = this.options.maxBlob;
    // Stryker disable next-line ConditionalExpression,LogicalOperator: a comparison with undefined is false anyway
    if (max !== undefined && declaredLength !== undefined && declaredLength > max) {
      throw new UploadRejected(413, "too-large", `blob of ${declaredLength} bytes is over the limit of ${max}`);
    }
    if (this.hasBlob(hash)) {
      const size = await this.receive(hash, body, undefined);
      return { size, existed: true };
    }
    const temp = join(this.tmpDir, `${hash}-${process.hrtime.bigint()}`);
    const file = await open(temp, "w", 0o600);
    let size: number;
    try {
      size = await this.receive(hash, body, file);
      await file.sync(); // durable before it is visible
    } catch (error) {
      await file.close();
      // Stryker disable next-line ObjectLiteral,BooleanLiteral: the file is there: this call made it
      await rm(temp, { force: true });
      throw error;
    }
    await file.close();
    if (this.hasBlob(hash)) {
      // Stryker disable next-line ObjectLiteral,BooleanLiteral: the file is there: this call made it
      await rm(temp, { force: true }); // the same blob arrived meanwhile
      return { size, existed: true };
    }
    await mkdir(join(this.blobDir, hash.slice(0, 2)), { recursive: true });
    await rename(temp, this.blobPath(hash));
    this.db.query("INSERT OR REPLACE INTO blobs VALUES (?, ?, ?)").run(hash, size, Date.now());
    this.sizes.set(hash, size);
    return { size, existed: false };
  }

  /** Reads an upload to its end (into `file` when given), hashing it; throws unless it is `hash`. */
  private async receive(hash: string, body: ReadableStream<Uint8Array>, file: FileHandle | undefined): Promise<number> {
    const max = this.options.maxBlob;
    const hasher = new Blake3Hasher();
    let size = 0;
    try {
      for await (const chunk of body) {
        size += chunk.length;
        // Stryker disable next-line ConditionalExpression: a comparison with undefined is false anyway
        if (max !== undefined && size > max) throw new UploadRejected(413, "too-large", `blob is over the limit of ${max} bytes`);
        hasher.update(chunk);
        if (file) await file.write(chunk);
      }
    } catch (error) {
      if (error instanceof UploadRejected) throw error;
      throw new UploadRejected(400, "aborted", `upload did not complete: ${(error as Error).message}`);
    }
    const actual = hasher.digest("hex");
    if (actual !== hash) throw new UploadRejected(400, "mismatch", `body hashes to ${actual}, not ${hash}: nothing stored`);
    return size;
  }

  getAction(key: string): string | undefined {
    const row = this.db.query("SELECT body FROM actions WHERE key = ?").get(key) as { body: string } | null;
    if (!row) return undefined;
    this.touchedActions.set(key, Date.now());
    return row.body;
  }

  hasAction(key: string): boolean {
    return this.db.query("SELECT 1 FROM actions WHERE key = ?").get(key) !== null;
  }

  /**
   * Stores an action, once: every blob it names (`blobs: [hash…]`) must already be here, and a
   * signature, when there is one, must verify. A key that already has a result keeps it: the
   * same result again is "same"; a different one is refused (409) and recorded as a conflict,
   * since a step whose result changes is non-deterministic or someone is trying to replace it.
   *
   * One exception keeps write-once honest rather than blind: the same result, signed, replaces
   * an UNSIGNED copy of it ("signed"). The result (every digest) does not change, so no reader
   * gets other bytes; without it, an unsigned copy stored first (by a developer's read-write
   * token, or planted) would make CI's signed upload a silent "same" and readers who trust CI
   * would never hit that key. A copy signed by another key is kept (first signer wins); the
   * answer names the signer kept (`signerOf`), so the uploader can see and say it.
   */
  putAction(key: string, body: string, author: string): "stored" | "same" | "signed" {
    const action = parseAction(body);
    const signature = checkSignature(key, action);
    if (signature && "error" in signature) throw new UploadRejected(400, "bad-signature", signature.error);
    const signer = signature?.signer ?? null;
    const missing = action.blobs.filter((b) => !this.hasBlob(b));
    if (missing.length) throw new UploadRejected(400, "missing-blobs", `the action names blobs that are not stored: ${missing.join(", ")}`);
    const result = resultDigest(key, action);
    const now = Date.now();
    // What was checked is what is kept: the normalized copy, never the body as sent (a field
    // the check defaulted, such as a missing "blobs", would reach readers as it was sent).
    const stored = JSON.stringify(action);
    const outcome = this.db.transaction((): "stored" | "same" | "signed" | Conflict => {
      const existing = this.db.query("SELECT author, signer, result FROM actions WHERE key = ?").get(key) as { author: string | null; signer: string | null; result: string | null } | null;
      if (existing) {
        const first = existing.result ?? resultDigest(key, parseAction(this.getAction(key)!));
        if (first === result) {
          if (existing.signer !== null || signer === null) return "same";
          // Conditional on what was read: only an unsigned copy of this very result is replaced.
          const changed = this.db
            .query("UPDATE actions SET body = ?, size = ?, author = ?, signer = ?, result = ? WHERE key = ? AND signer IS NULL")
            .run(stored, stored.length, author, signer, result, key).changes;
          return changed ? "signed" : "same";
        }
        const conflict: Conflict = { key, time: now, first: { author: existing.author, signer: existing.signer, result: first }, second: { author, signer, result } };
        this.db
          .query("INSERT INTO conflicts (key, time, first_author, first_signer, first_result, second_author, second_signer, second_result) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
          .run(key, now, existing.author, existing.signer, first, author, signer, result);
        return conflict;
      }
      this.db.query("INSERT INTO actions (key, body, size, last_access, author, signer, result) VALUES (?, ?, ?, ?, ?, ?, ?)").run(key, stored, stored.length, now, author, signer, result);
      for (const blob of action.blobs) {
        this.db.query("INSERT OR IGNORE INTO action_blobs VALUES (?, ?)").run(key, blob);
        this.db.query("UPDATE blobs SET last_access = ? WHERE hash = ?").run(now, blob);
      }
      return "stored";
    })();
    if (typeof outcome !== "string") throw new ActionConflict(outcome);
    return outcome;
  }

  /** Who signed the result kept for a key (null: unsigned or no result). */
  signerOf(key: string): string | null {
    return (this.db.query("SELECT signer FROM actions WHERE key = ?").get(key) as { signer: string | null } | null)?.signer ?? null;
  }

  /** Conflicts recorded, newest first (optionally for one key). */
  conflicts(options: { key?: string; limit?: number } = {}): Conflict[] {
    const rows = this.db
      .query(`SELECT * FROM conflicts ${options.key ? "WHERE key = $key" : ""} ORDER BY id DESC LIMIT $limit`)
      .all({ ...(options.key ? { key: options.key } : {}), limit: options.limit ?? 100 }) as Record<string, string | number | null>[];
    return rows.map((r) => ({
      key: r.key as string,
      time: r.time as number,
      first: { author: r.first_author as string | null, signer: r.first_signer as string | null, result: r.first_result as string },
      second: { author: r.second_author as string | null, signer: r.second_signer as string | null, result: r.second_result as string },
    }));
  }

  /** Requests and bytes by token (a short hash prefix names each), busiest first. */
  tokenStats(): { token: string; requests: number; bytesIn: number; bytesOut: number }[] {
    this.flush();
    return this.db.query("SELECT token, requests, bytes_in AS bytesIn, bytes_out AS bytesOut FROM token_stats ORDER BY requests DESC LIMIT 100").all() as {
      token: string;
      requests: number;
      bytesIn: number;
      bytesOut: number;
    }[];
  }

  conflictCount(): number {
    return (this.db.query("SELECT COUNT(*) AS n FROM conflicts").get() as { n: number }).n;
  }

  storageBytes(): number {
    let total = 0;
    for (const size of this.sizes.values()) total += size;
    return total;
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
    // Stryker disable next-line ConditionalExpression,EqualityOperator: with nothing to free, the loops below stop at once
    if (used <= max) return 0;
    this.flush(); // eviction orders by access time
    let evicted = 0;
    const removeBlob = (hash: string, size: number) => {
      // Stryker disable next-line ObjectLiteral,BooleanLiteral: a stored blob's file is there
      rmSync(this.blobPath(hash), { force: true });
      this.db.query("DELETE FROM blobs WHERE hash = ?").run(hash);
      this.sizes.delete(hash);
      const cached = this.smallBlobs.get(hash);
      if (cached) {
        this.smallBlobs.delete(hash);
        this.smallBlobBytes -= cached.length;
      }
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
        // Stryker disable next-line ConditionalExpression: an action's blobs are stored (putAction checks), so their size is known
        if (!stillNeeded && size !== undefined) removeBlob(hash, size);
      }
    }
    this.evictions += evicted;
    return evicted;
  }

  recordTokenUse(token: string, bytesIn: number, bytesOut: number) {
    const use = this.tokenUse.get(token) ?? { requests: 0, bytesIn: 0, bytesOut: 0 };
    use.requests++;
    use.bytesIn += bytesIn;
    use.bytesOut += bytesOut;
    this.tokenUse.set(token, use);
  }

  /** Blob files on disk that the index does not know, and leftover uploads (for checks). */
  strayFiles(): string[] {
    const stray: string[] = [];
    for (const prefix of readdirSync(this.blobDir)) {
      for (const name of readdirSync(join(this.blobDir, prefix))) if (!this.hasBlob(name)) stray.push(name);
    }
    return stray.concat(readdirSync(this.tmpDir));
  }

  /** Bytes the small-blob memory cache really holds (counted, not the running total it keeps). */
  get smallBlobCacheUsed(): number {
    let bytes = 0;
    for (const data of this.smallBlobs.values()) bytes += data.length;
    return bytes;
  }

  fileSize(hash: string): number {
    return statSync(this.blobPath(hash)).size;
  }
}

export interface Conflict {
  key: string;
  time: number;
  first: { author: string | null; signer: string | null; result: string };
  second: { author: string | null; signer: string | null; result: string };
}

export class ActionConflict extends UploadRejected {
  constructor(readonly conflict: Conflict) {
    super(409, "conflict", `step ${conflict.key} already has a different result (${conflict.first.result.slice(0, 12)}); results are write-once, so this one (${conflict.second.result.slice(0, 12)}) was refused and recorded as a conflict`);
  }
}

/** An action body, checked field by field: only well-formed results are stored or compared. */
function parseAction(body: string): RemoteAction {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw new UploadRejected(400, "invalid", "the action is not JSON");
  }
  const action = validateAction(parsed);
  if (typeof action === "string") throw new UploadRejected(400, "invalid", action);
  return action;
}
