/**
 * The local store in the cache directory:
 *   blobs/sha256/<hex>     content-addressed blobs: gzip layers, configs, manifests
 *   snapshots/<hex>/       each layer unpacked in overlayfs format (named by its diff ID)
 *   mounts/<hex>/          RUN --mount=type=cache directories
 *   tmp/<pid>-<random>/    staging; what a dead process left behind is removed on open
 *   memobuild.db           SQLite (WAL): layers, step results, image references
 *
 * Every write is atomic: a blob or snapshot is complete in tmp/ and then renamed into place,
 * and the database row that points to it is written after the rename. Deletion is the same in
 * reverse: a snapshot is renamed out of snapshots/ into tmp/ first and only then emptied, so a
 * directory under snapshots/ is always complete (a crash mid-delete leaves a tmp/ directory of
 * a dead process, removed on the next open). Blobs are verified against their digest when read.
 */
import { randomHex } from "../util/random.ts";
import { UserError } from "../errors.ts";
import type { Database } from "bun:sqlite";
import { closeSync, constants, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { extractLayer } from "../snapshot/extract.ts";
import { limit, limitHint } from "../util/limits.ts";
import { removeTree } from "../rootfs/root.ts";
import { processAlive } from "../util/process.ts";
import { tryLockExclusive, tryLockShared, umount } from "../sys/libc.ts";
import { writeAll } from "../util/write-all.ts";
import { addMissingColumns, openDatabase } from "../util/sqlite.ts";
import { sha256File } from "../hash/sha256.ts";

export interface LayerRecord {
  diffId: string;
  digest: string;
  size: number;
  uncompressedSize: number;
  mediaType: string;
}

export interface StepRecord {
  key: string;
  /** The layer the step produced, or null for a step that changes only the config. */
  diffId: string | null;
  /** When the step first ran (milliseconds): history and image dates come from it. */
  created: number;
  /** How long the step took when it ran: what a cache hit saves. */
  durationMs?: number;
}

export interface ImageRecord {
  ref: string;
  manifestDigest: string;
  created: string;
  /** The project directory whose memobuild.json named it (a project file may only retag its own images). */
  project?: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS layers (
  diff_id TEXT PRIMARY KEY, digest TEXT NOT NULL, size INTEGER NOT NULL,
  uncompressed_size INTEGER NOT NULL, media_type TEXT NOT NULL, last_used INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS steps (
  key TEXT PRIMARY KEY, diff_id TEXT, created INTEGER NOT NULL, last_used INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
  ref TEXT PRIMARY KEY, manifest_digest TEXT NOT NULL, created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS image_ids (
  id TEXT PRIMARY KEY, manifest_digest TEXT NOT NULL, created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS compressed_layers (
  diff_id TEXT NOT NULL, algorithm TEXT NOT NULL, digest TEXT NOT NULL, size INTEGER NOT NULL,
  PRIMARY KEY (diff_id, algorithm)
);
CREATE TABLE IF NOT EXISTS layer_sources (
  digest TEXT NOT NULL, registry TEXT NOT NULL, repository TEXT NOT NULL,
  PRIMARY KEY (digest, registry, repository)
);
CREATE TABLE IF NOT EXISTS verified_blobs (
  digest TEXT PRIMARY KEY, file TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS builds (
  dockerfile TEXT NOT NULL, target TEXT NOT NULL, step_id TEXT NOT NULL, key TEXT NOT NULL,
  inputs TEXT NOT NULL, PRIMARY KEY (dockerfile, target, step_id)
);
`;

export class BlobVerificationError extends UserError {}

/**
 * What identifies a blob file's current bytes without reading them: size, mtime and ctime to
 * the nanosecond, inode and device. Rewriting it moves ctime, which nobody can set back.
 * `racy` when the file changed within a timestamp tick of now (see context/stat-cache.ts).
 */
function blobFileKey(path: string): { key: string; racy: boolean } | undefined {
  const stat = statSync(path, { bigint: true, throwIfNoEntry: false });
  if (!stat) return undefined;
  const racy = changedTooRecently(stat, BigInt(Date.now()) * 1_000_000n);
  return { key: `${stat.size}:${stat.mtimeNs}:${stat.ctimeNs}:${stat.ino}:${stat.dev}`, racy };
}

/**
 * Whether a file's mtime or ctime is within one timestamp tick of `nowNs`, so it could change
 * again without its stat changing: 100 ms on file systems with fine timestamps (the kernel
 * stamps from a clock of at most 10 ms ticks), 2 s when both are whole seconds.
 */
export function changedTooRecently(stat: { mtimeNs: bigint; ctimeNs: bigint }, nowNs: bigint): boolean {
  const window = stat.mtimeNs % 1_000_000_000n === 0n && stat.ctimeNs % 1_000_000_000n === 0n ? 2_000_000_000n : 100_000_000n;
  return nowNs - stat.mtimeNs < window || nowNs - stat.ctimeNs < window;
}

const hexOf = (digest: string) => {
  const match = /^sha256:([0-9a-f]{64})$/.exec(digest);
  if (!match) throw new Error(`not a sha256 digest: ${digest}`);
  return match[1];
};


/** The field of a recorded step's inputs that names its worker (no step input has this name). */
const WORKER_FIELD = "@worker";

/** How stale a step's last use may get before a build that uses it writes it again. */
const LAST_USE_GRANULARITY_MS = 60 * 60 * 1000;

export class LocalStore {
  /** Private: callers ask the store, never its tables (tests read it as store["db"]). */
  private readonly db: Database;
  readonly tmpRoot: string;

  private constructor(
    readonly dir: string,
    /** gc.lock, held shared by builds and exclusively by gc; closing it releases the lock. */
    private readonly lockFd: number,
  ) {
    for (const sub of ["blobs/sha256", "snapshots", "mounts", "tmp"]) mkdirSync(join(dir, sub), { recursive: true });
    this.tmpRoot = join(dir, "tmp");
    this.db = openDatabase(join(dir, "memobuild.db"), SCHEMA, 30_000);
    addMissingColumns(this.db, "steps", ["duration_ms INTEGER", "instruction TEXT"]);
    addMissingColumns(this.db, "images", ["project TEXT"]);
  }

  /** Steps used in this run; their last_used is written in one transaction on close. */
  private readonly usedSteps = new Set<string>();

  /** Blobs checked against their digest by this process (each is read once). */
  private readonly checkedBlobs = new Set<string>();

  /**
   * Opens the store for building: holds a shared lock that garbage collection must wait for,
   * so it never deletes a layer a running build has mounted.
   */
  static open(dir: string): LocalStore {
    const fd = openLock(dir);
    // Stryker disable next-line CallExpression: without the pause the wait only spins
    while (!tryLockShared(fd)) Bun.sleepSync(50);
    const store = new LocalStore(dir, fd);
    store.removeAbandonedStaging();
    return store;
  }

  /**
   * Opens the store for garbage collection: exclusive, so no build is running. Waits for the
   * builds that hold it (calling `onWait` once, so the user knows why nothing happens).
   */
  static openExclusive(dir: string, onWait: () => void): LocalStore {
    const fd = openLock(dir);
    for (let waited = false; !tryLockExclusive(fd); waited = true) {
      if (!waited) onWait();
      // Stryker disable next-line CallExpression: without the pause the wait only spins
      Bun.sleepSync(100);
    }
    const store = new LocalStore(dir, fd);
    store.removeAbandonedStaging();
    return store;
  }

  close() {
    const now = Date.now();
    // Only uses older than LAST_USE_GRANULARITY_MS move last_used: LRU eviction does not need
    // it finer, and a rebuild right after a build then writes nothing to the database (each
    // write meant WAL frames, a checkpoint and three fsyncs on close, on every no-op build).
    const touch = this.db.query("UPDATE steps SET last_used = ? WHERE key = ? AND last_used < ?");
    this.db.transaction(() => {
      for (const key of this.usedSteps) touch.run(now, key, now - LAST_USE_GRANULARITY_MS);
    })();
    this.db.close();
    closeSync(this.lockFd);
  }

  /** Staging directories of processes that died (kill -9, power loss): unmount and delete. */
  private removeAbandonedStaging() {
    for (const name of readdirSync(this.tmpRoot)) {
      const pid = Number(name.split("-")[0]);
      if (processAlive(pid)) continue; // this process's own, or another build's
      const path = join(this.tmpRoot, name);
      unmountBelow(path);
      removeTree(path);
    }
  }

  /** A fresh staging directory owned by this process. */
  tempDir(label: string): string {
    // Stryker disable next-line StringLiteral: the label is for people reading tmp/
    const path = join(this.tmpRoot, `${process.pid}-${randomHex(6)}-${label}`);
    mkdirSync(path);
    return path;
  }

  // ---- blobs

  blobPath(digest: string): string {
    return join(this.dir, "blobs/sha256", hexOf(digest));
  }

  hasBlob(digest: string): boolean {
    return existsSync(this.blobPath(digest));
  }

  /** Moves a complete file whose digest the caller computed into the store. */
  adoptBlob(file: string, digest: string) {
    // Stryker disable next-line CallExpression: only a power cut shows a missing fsync
    syncFile(file);
    // Over a blob already there: the same bytes, by its name.
    renameSync(file, this.blobPath(digest));
  }

  /**
   * adoptBlob with the fsync on another thread, so the build's next step runs meanwhile (a
   * 100 MB layer's fsync took ~65 ms on this VM); the same order: durable, then renamed. Resolves
   * once the blob is in place.
   */
  async adoptBlobInBackground(file: string, digest: string): Promise<void> {
    const handle = await open(file, "r");
    try {
      // Stryker disable next-line CallExpression: only a power cut shows a missing fsync
      await handle.sync();
    } finally {
      await handle.close();
    }
    renameSync(file, this.blobPath(digest));
  }

  putBlob(data: Uint8Array | string): { digest: string; size: number } {
    // Stryker disable next-line ConditionalExpression: Buffer.from copies bytes as they are
    const bytes = typeof data === "string" ? Buffer.from(data) : data;
    const digest = `sha256:${new Bun.CryptoHasher("sha256").update(bytes).digest("hex")}`;
    // Stryker disable next-line ConditionalExpression: writing a blob that is there already writes the same bytes
    if (!this.hasBlob(digest)) {
      const file = join(this.tmpRoot, `${process.pid}-${randomHex(6)}.blob`);
      const fd = openSync(file, "w", 0o644);
      try {
        writeAll(fd, bytes);
      } finally {
        closeSync(fd);
      }
      // Stryker disable next-line CallExpression: only a power cut shows a missing fsync
      syncFile(file);
      renameSync(file, this.blobPath(digest));
    }
    return { digest, size: bytes.length };
  }

  /** A blob's bytes, checked against its digest. */
  readBlob(digest: string): Buffer {
    let bytes: Buffer;
    try {
      bytes = readFileSync(this.blobPath(digest));
    } catch {
      throw new BlobVerificationError(`blob ${digest} is missing from the cache`);
    }
    const actual = `sha256:${new Bun.CryptoHasher("sha256").update(bytes).digest("hex")}`;
    if (actual !== digest) throw new BlobVerificationError(`blob ${digest} is corrupt in the cache (its content hashes to ${actual})`);
    return bytes;
  }

  /**
   * Checks a (large) blob against its digest, streaming. A corrupt one (a bad disk, a hand
   * edit) is removed with the layers that name it, so the steps that made it run again on the
   * next build instead of failing forever; the error says so.
   */
  async checkBlob(digest: string): Promise<void> {
    // Stryker disable next-line ConditionalExpression: only saves hashing a blob twice in one build
    if (this.checkedBlobs.has(digest)) return;
    const file = blobFileKey(this.blobPath(digest));
    if (!file) throw new BlobVerificationError(`blob ${digest} is missing from the cache`);
    // Hashed by an earlier process and not changed since: every export re-hashed every layer
    // (uncompressed and compressed) of the image, a no-op build with -o included.
    const verified = this.db.query("SELECT file FROM verified_blobs WHERE digest = ?").get(digest) as { file: string } | null;
    if (verified?.file === file.key) {
      // Stryker disable next-line CallExpression: only saves a database read the next time in this process
      this.checkedBlobs.add(digest);
      this.verification.trusted++;
      return;
    }
    let actual: string;
    try {
      actual = await sha256File(this.blobPath(digest));
      // Stryker disable next-line BlockStatement: reached only when the blob is removed between its stat above and this read
    } catch {
      // Stryker disable next-line StringLiteral: as above
      throw new BlobVerificationError(`blob ${digest} is missing from the cache`);
    }
    this.verification.hashed++;
    if (actual !== digest) {
      this.forgetBlob(digest);
      throw new BlobVerificationError(`blob ${digest} is corrupt in the cache (its content hashes to ${actual}); it was removed, and the steps that made it run again on the next build`);
    }
    // Stryker disable next-line CallExpression: only saves hashing a blob twice in one build
    this.checkedBlobs.add(digest);
    // A file changed within a timestamp tick of the hash could change again unseen: not recorded.
    if (!file.racy) this.db.query("INSERT OR REPLACE INTO verified_blobs VALUES (?, ?)").run(digest, file.key);
  }

  /** How many blobs checkBlob hashed, and how many it trusted from an earlier check (unchanged file). */
  readonly verification = { hashed: 0, trusted: 0 };

  /** A corrupt blob: the file and every layer row (plain or compressed) that names it. */
  private forgetBlob(digest: string) {
    // Stryker disable next-line ObjectLiteral,BooleanLiteral: only a blob removed since it was hashed is missing here
    rmSync(this.blobPath(digest), { force: true });
    this.db.transaction(() => {
      this.db.query("DELETE FROM verified_blobs WHERE digest = ?").run(digest);
      this.db.query("DELETE FROM compressed_layers WHERE digest = ? OR diff_id IN (SELECT diff_id FROM layers WHERE digest = ?)").run(digest, digest);
      this.db.query("DELETE FROM layers WHERE digest = ?").run(digest);
    })();
  }

  readJson<T>(digest: string): T {
    return JSON.parse(this.readBlob(digest).toString("utf8")) as T;
  }

  // ---- layers and snapshots

  /**
   * Records a layer this process made (its blob is the tar it just hashed). Write-once: a diff
   * ID that already names a blob in the cache keeps that blob; only a row whose blob is gone is
   * replaced.
   */
  recordLayer(layer: LayerRecord) {
    if (this.usableLayer(layer.diffId)) return;
    this.db
      .query("INSERT OR REPLACE INTO layers VALUES (?, ?, ?, ?, ?, ?)")
      .run(layer.diffId, layer.digest, layer.size, layer.uncompressedSize, layer.mediaType, Date.now());
  }

  /**
   * Records a layer that came from outside (an import, a registry, the remote cache) and
   * unpacks it. Nothing from outside is believed: a new layer is unpacked and checked against
   * its diff ID before its row is written, and a diff ID the cache already has keeps its blob
   * (another blob claiming it must still prove it, or the import fails). So an image can never
   * change what an existing diff ID exports as.
   */
  async adoptLayer(layer: LayerRecord): Promise<void> {
    const existing = this.usableLayer(layer.diffId);
    // Stryker disable next-line ConditionalExpression,BlockStatement: this very blob was checked when its row was written; this skips a second check
    if (existing?.digest === layer.digest) {
      await this.ensureSnapshot(layer.diffId);
      return;
    }
    // Both branches check the blob against the diff ID; unpacking when a snapshot exists is only slower.
    // Stryker disable next-line ConditionalExpression,LogicalOperator
    if (existing || existsSync(this.snapshotPath(layer.diffId))) await this.verifyLayerBlob(layer);
    else await this.unpackLayer(layer);
    this.recordLayer(layer); // write-once: an existing row keeps its blob
    await this.ensureSnapshot(layer.diffId);
  }

  /** The layer row for a diff ID when its blob is still in the cache. */
  private usableLayer(diffId: string): LayerRecord | undefined {
    const existing = this.layer(diffId);
    return existing && this.hasBlob(existing.digest) ? existing : undefined;
  }

  layer(diffId: string): LayerRecord | undefined {
    const row = this.db.query("SELECT * FROM layers WHERE diff_id = ?").get(diffId) as
      | { diff_id: string; digest: string; size: number; uncompressed_size: number; media_type: string }
      | null;
    if (!row) return undefined;
    return { diffId: row.diff_id, digest: row.digest, size: row.size, uncompressedSize: row.uncompressed_size, mediaType: row.media_type };
  }

  /** A layer's compressed blob made by an earlier export, if any. */
  compressedLayer(diffId: string, algorithm: string): { digest: string; size: number } | undefined {
    const row = this.db.query("SELECT digest, size FROM compressed_layers WHERE diff_id = ? AND algorithm = ?").get(diffId, algorithm) as
      | { digest: string; size: number }
      | null;
    return row ?? undefined;
  }

  recordCompressedLayer(diffId: string, algorithm: string, digest: string, size: number) {
    this.db.query("INSERT OR REPLACE INTO compressed_layers VALUES (?, ?, ?, ?)").run(diffId, algorithm, digest, size);
  }

  /** Registries and repositories known to hold a blob (for cross-repository mounts). */
  recordLayerSource(digest: string, registry: string, repository: string) {
    this.db.query("INSERT OR IGNORE INTO layer_sources VALUES (?, ?, ?)").run(digest, registry, repository);
  }

  layerSources(digest: string): { registry: string; repository: string }[] {
    return this.db.query("SELECT registry, repository FROM layer_sources WHERE digest = ?").all(digest) as { registry: string; repository: string }[];
  }

  snapshotPath(diffId: string): string {
    return join(this.dir, "snapshots", hexOf(diffId));
  }

  /**
   * Deletes a layer's snapshot: renamed out of snapshots/ first (atomic), then emptied, so no
   * half-deleted snapshot can ever be found and used.
   */
  removeSnapshot(diffId: string) {
    const doomed = join(this.tmpRoot, `${process.pid}-${randomHex(6)}-deleted`);
    try {
      renameSync(this.snapshotPath(diffId), doomed);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return; // already gone
      throw error;
    }
    removeTree(doomed);
  }

  removeBlob(digest: string) {
    this.db.query("DELETE FROM verified_blobs WHERE digest = ?").run(digest);
    rmSync(this.blobPath(digest), { force: true });
  }

  /** Every blob's digest in blobs/. */
  blobDigests(): string[] {
    return readdirSync(join(this.dir, "blobs/sha256")).filter((n) => /^[0-9a-f]{64}$/.test(n)).map((n) => `sha256:${n}`);
  }

  /** Moves a complete snapshot directory into place (another build may have won the race). */
  adoptSnapshot(diffId: string, directory: string) {
    const target = this.snapshotPath(diffId);
    try {
      renameSync(directory, target);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // Linux answers ENOTEMPTY; POSIX also allows EEXIST, which no file system here returns.
      // Stryker disable next-line ConditionalExpression,EqualityOperator,StringLiteral
      if (code !== "ENOTEMPTY" && code !== "EEXIST") throw error;
      removeTree(directory);
    }
  }

  /** The layer's unpacked directory, unpacking (and verifying) its blob the first time. */
  async ensureSnapshot(diffId: string): Promise<string> {
    const target = this.snapshotPath(diffId);
    if (existsSync(target)) return target;
    const layer = this.usableLayer(diffId);
    if (!layer) throw new BlobVerificationError(`layer ${diffId} is not in the cache`);
    await this.unpackLayer(layer);
    return target;
  }

  /** Unpacks a layer's blob into its snapshot, checking the blob digest and the diff ID. */
  private async unpackLayer(layer: LayerRecord) {
    // Stryker disable next-line StringLiteral: the label is for people reading tmp/
    const staging = this.tempDir("unpack");
    try {
      const tar = join(staging, "layer.tar");
      await decompressVerified(this.blobPath(layer.digest), layer.digest, tar, layer.diffId, layer.mediaType);
      const root = join(staging, "root");
      mkdirSync(root);
      try {
        extractLayer(tar, root);
      } catch (error) {
        // Stryker disable next-line ConditionalExpression: only a system error (EIO, ENOSPC) takes the other way
        if (error instanceof UserError) throw new BlobVerificationError(`layer ${layer.digest}: ${error.message}`);
        throw error;
      }
      this.adoptSnapshot(layer.diffId, root);
    } finally {
      removeTree(staging);
    }
  }

  /** Hands `use` the layer as a plain tar (its blob digest and diff ID checked), removed after. */
  async withLayerTar<T>(diffId: string, use: (tar: string) => T): Promise<T> {
    const layer = this.usableLayer(diffId);
    if (!layer) throw new BlobVerificationError(`layer ${diffId} is not in the cache`);
    // Stryker disable next-line StringLiteral: the label is for people reading tmp/
    const staging = this.tempDir("layer-tar");
    try {
      const tar = join(staging, "layer.tar");
      await decompressVerified(this.blobPath(layer.digest), layer.digest, tar, layer.diffId, layer.mediaType);
      return use(tar);
    } finally {
      removeTree(staging);
    }
  }

  /** Checks that a layer's blob holds the tar its diff ID names, keeping nothing. */
  private async verifyLayerBlob(layer: LayerRecord) {
    await decompressVerified(this.blobPath(layer.digest), layer.digest, "/dev/null", layer.diffId, layer.mediaType);
  }

  // ---- steps

  lookupStep(key: string): StepRecord | undefined {
    const row = this.db.query("SELECT key, diff_id, created, duration_ms FROM steps WHERE key = ?").get(key) as {
      key: string;
      diff_id: string | null;
      created: number;
      duration_ms: number | null;
    } | null;
    if (!row) return undefined;
    // A result is only usable when its layer is still there.
    // Exports need the layer's blob, not only its snapshot.
    if (row.diff_id !== null && !this.usableLayer(row.diff_id)) return undefined;
    this.usedSteps.add(key); // last_used, for LRU eviction, is written on close
    return { key: row.key, diffId: row.diff_id, created: row.created, durationMs: row.duration_ms ?? undefined };
  }

  /**
   * Records a step's result. Write-once: a key whose result is still usable keeps it (a step
   * run again with --no-cache does not change what the key means for other builds); only a
   * result whose layer is gone is replaced. Returns the record the store holds.
   */
  /** Records a step's result (write-once: an existing one is kept). `instruction` is for `cache ls` (its first line, 200 characters at most). */
  recordStep(key: string, diffId: string | null, durationMs?: number, instruction?: string, created?: number): StepRecord {
    const existing = this.lookupStep(key);
    if (existing) return existing;
    const now = Date.now();
    const shown = instruction?.split("\n")[0]!.slice(0, 200) ?? null;
    this.db.query("INSERT OR REPLACE INTO steps (key, diff_id, created, last_used, duration_ms, instruction) VALUES (?, ?, ?, ?, ?, ?)").run(key, diffId, created ?? now, now, durationMs ?? null, shown);
    return { key, diffId, created: created ?? now, durationMs };
  }

  /** Every step result, most recently used first (what `memobuild cache ls` shows). */
  stepResults(): { key: string; diffId: string | null; lastUsed: number; instruction: string | null; size: number | null }[] {
    return this.db
      .query("SELECT s.key, s.diff_id AS diffId, s.last_used AS lastUsed, s.instruction, l.size FROM steps s LEFT JOIN layers l ON l.diff_id = s.diff_id ORDER BY s.last_used DESC")
      .all() as { key: string; diffId: string | null; lastUsed: number; instruction: string | null; size: number | null }[];
  }

  /** Diff IDs that some step result produced. */
  stepLayerIds(): Set<string> {
    const rows = this.db.query("SELECT DISTINCT diff_id FROM steps WHERE diff_id IS NOT NULL").all() as { diff_id: string }[];
    return new Set(rows.map((r) => r.diff_id));
  }

  /** Step results, least recently used first. */
  stepsByLastUse(): { key: string; diffId: string | null }[] {
    const rows = this.db.query("SELECT key, diff_id FROM steps ORDER BY last_used ASC").all() as { key: string; diff_id: string | null }[];
    return rows.map((r) => ({ key: r.key, diffId: r.diff_id }));
  }

  deleteStep(key: string) {
    this.db.query("DELETE FROM steps WHERE key = ?").run(key);
  }

  /** Removes every step result; returns how many there were. */
  deleteAllSteps(): number {
    return this.db.query("DELETE FROM steps").run().changes;
  }

  /** Every layer record. */
  layers(): LayerRecord[] {
    const rows = this.db.query("SELECT diff_id FROM layers").all() as { diff_id: string }[];
    return rows.map((r) => this.layer(r.diff_id)!);
  }

  /** Forgets a layer (and its compressed forms) in one transaction; files are removed by the caller first. */
  deleteLayer(diffId: string) {
    this.db.transaction(() => {
      this.db.query("DELETE FROM layers WHERE diff_id = ?").run(diffId);
      this.db.query("DELETE FROM compressed_layers WHERE diff_id = ?").run(diffId);
    })();
  }

  /** True when some layer's blob is `digest` (layer blobs are kept with their layer). */
  isLayerBlob(digest: string): boolean {
    return this.db.query("SELECT 1 FROM layers WHERE digest = ? UNION SELECT 1 FROM compressed_layers WHERE digest = ?").get(digest, digest) !== null;
  }

  counts(): { steps: number; layers: number; images: number } {
    const count = (table: string) => (this.db.query(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n;
    return { steps: count("steps"), layers: count("layers"), images: count("images") };
  }

  // ---- what each step of the last build read (for `explain`)

  /** `worker`: the worker that ran or reused the step, for a build run with --builder (kept beside its inputs). */
  recordBuildInputs(dockerfile: string, target: string, steps: { id: string; key: string; inputs: unknown; worker?: string }[]) {
    const stored = (step: (typeof steps)[number]) => JSON.stringify(step.worker ? { ...(step.inputs as object), [WORKER_FIELD]: step.worker } : step.inputs);
    // The same as last time (a rebuild that changed nothing): nothing to write.
    const rows = this.db.query("SELECT step_id, key, inputs FROM builds WHERE dockerfile = ? AND target = ?").all(dockerfile, target) as { step_id: string; key: string; inputs: string }[];
    const last = new Map(rows.map((r) => [r.step_id, r]));
    const same = (step: (typeof steps)[number]) => last.get(step.id)?.key === step.key && last.get(step.id)!.inputs === stored(step);
    if (rows.length === steps.length && steps.every(same)) return;
    const insert = this.db.query("INSERT OR REPLACE INTO builds VALUES (?, ?, ?, ?, ?)");
    this.db.transaction(() => {
      this.db.query("DELETE FROM builds WHERE dockerfile = ? AND target = ?").run(dockerfile, target);
      for (const step of steps) insert.run(dockerfile, target, step.id, step.key, stored(step));
    })();
  }

  lastBuildInputs(dockerfile: string, target: string): Map<string, { key: string; inputs: unknown; worker?: string }> {
    const rows = this.db.query("SELECT step_id, key, inputs FROM builds WHERE dockerfile = ? AND target = ?").all(dockerfile, target) as {
      step_id: string;
      key: string;
      inputs: string;
    }[];
    return new Map(
      rows.map((r) => {
        const { [WORKER_FIELD]: worker, ...inputs } = JSON.parse(r.inputs) as Record<string, unknown>;
        return [r.step_id, { key: r.key, inputs, ...(typeof worker === "string" ? { worker } : {}) }];
      }),
    );
  }

  // ---- image references

  /** Names an image; `project` when the name came from that project's memobuild.json (else the user's, or a pull's). */
  setImage(ref: string, manifestDigest: string, project?: string) {
    // A name already on this manifest for the same project keeps its row (and its date): no write.
    this.db
      .query(
        "INSERT INTO images (ref, manifest_digest, created, project) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (ref) DO UPDATE SET " +
          "manifest_digest = ?2, created = ?3, project = ?4 WHERE manifest_digest != ?2 OR project IS NOT ?4",
      )
      .run(ref, manifestDigest, new Date().toISOString(), project ?? null);
    // Found by its ID too; a name given to a manifest not stored (yet) has no ID to find it by.
    // A multi-platform image (an index) has no one config: its ID is its own digest, as with buildx.
    if (this.hasBlob(manifestDigest)) this.recordImageId(this.readJson<{ config?: { digest: string } }>(manifestDigest).config?.digest ?? manifestDigest, manifestDigest);
  }

  /**
   * An image by its ID (the config digest, as `build -q` prints it), named or not, so that an
   * untagged build can be run, exported or built on. The newest manifest for an ID wins.
   */
  recordImageId(id: string, manifestDigest: string) {
    // Already recorded for this manifest (every rebuild of the same image): no write.
    this.db
      .query("INSERT INTO image_ids VALUES (?1, ?2, ?3) ON CONFLICT (id) DO UPDATE SET manifest_digest = ?2, created = ?3 WHERE manifest_digest != ?2")
      .run(id, manifestDigest, new Date().toISOString());
  }

  /** Images whose ID starts with `prefix` (lower-case hex, after "sha256:") and whose manifest is still stored. */
  imagesById(prefix: string): { id: string; manifestDigest: string; created: string }[] {
    if (!/^[0-9a-f]{0,64}$/.test(prefix)) return [];
    const rows = this.db.query("SELECT id, manifest_digest, created FROM image_ids WHERE substr(id, 8, ?) = ? ORDER BY id").all(prefix.length, prefix) as { id: string; manifest_digest: string; created: string }[];
    return rows.filter((r) => this.hasBlob(r.manifest_digest)).map((r) => ({ id: r.id, manifestDigest: r.manifest_digest, created: r.created }));
  }

  /** Forgets an image ID (its names are removed with removeImage). */
  removeImageId(id: string): boolean {
    return this.db.query("DELETE FROM image_ids WHERE id = ?").run(id).changes > 0;
  }

  image(ref: string): ImageRecord | undefined {
    const row = this.db.query("SELECT ref, manifest_digest, created, project FROM images WHERE ref = ?").get(ref) as ImageRow | null;
    return row ? imageRecord(row) : undefined;
  }

  images(): ImageRecord[] {
    return (this.db.query("SELECT ref, manifest_digest, created, project FROM images ORDER BY ref").all() as ImageRow[]).map(imageRecord);
  }

  removeImage(ref: string): boolean {
    return this.db.query("DELETE FROM images WHERE ref = ?").run(ref).changes > 0;
  }

  mountDir(id: string): string {
    return join(this.dir, "mounts", new Bun.CryptoHasher("sha256").update(id).digest("hex").slice(0, 32));
  }

  blobSize(digest: string): number {
    return statSync(this.blobPath(digest)).size;
  }
}

interface ImageRow {
  ref: string;
  manifest_digest: string;
  created: string;
  project: string | null;
}

function imageRecord(row: ImageRow): ImageRecord {
  return { ref: row.ref, manifestDigest: row.manifest_digest, created: row.created, ...(row.project ? { project: row.project } : {}) };
}

/** Decompresses a layer blob to `tarPath`, checking both the blob digest and the diff ID. */
async function decompressVerified(blob: string, digest: string, tarPath: string, diffId: string, mediaType: string) {
  // Loaded here, not at start-up: only unpacking a layer needs streams.
  const { createReadStream, createWriteStream } = await import("node:fs");
  const { pipeline } = await import("node:stream/promises");
  const { Transform } = await import("node:stream");
  const { createGunzip, createZstdDecompress } = await import("node:zlib");
  const compressed = new Bun.CryptoHasher("sha256");
  const uncompressed = new Bun.CryptoHasher("sha256");
  const maxBytes = limit("unpackedBytes");
  let bytes = 0;
  const tap = (hasher: Bun.CryptoHasher, counted = false) =>
    new Transform({
      transform(chunk: Buffer, _e, done) {
        hasher.update(chunk);
        if (counted && (bytes += chunk.length) > maxBytes) {
          return done(new BlobVerificationError(`layer ${digest} unpacks to more than ${maxBytes} bytes ${limitHint("unpackedBytes")}`));
        }
        done(null, chunk);
      },
    });
  // gzip and zstd layers (pulled or imported) are unpacked as they stream; a plain tar is one.
  const decompressor = mediaType.endsWith("gzip") ? createGunzip() : mediaType.endsWith("zstd") ? createZstdDecompress() : undefined;
  if (decompressor) await pipeline(createReadStream(blob), tap(compressed), decompressor, tap(uncompressed, true), createWriteStream(tarPath));
  else await pipeline(createReadStream(blob), tap(compressed), tap(uncompressed, true), createWriteStream(tarPath));
  const actualDigest = `sha256:${compressed.digest("hex")}`;
  if (actualDigest !== digest) throw new BlobVerificationError(`layer blob ${digest} is corrupt (hashes to ${actualDigest})`);
  const actualDiffId = `sha256:${uncompressed.digest("hex")}`;
  if (actualDiffId !== diffId) throw new BlobVerificationError(`layer ${digest} does not match its diff ID ${diffId}`);
}

/** Lazily unmounts every mount at or below `path` (left by a killed build). */
export function unmountBelow(path: string) {
  const mounts = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((point) => point !== undefined && (point === path || point.startsWith(path + "/")));
  // Lazily: a process the killed build left may still hold a file open there. Deepest first,
  // though detaching a parent detaches what is below it too.
  // Stryker disable next-line MethodExpression: detaching a parent first takes its children with it
  for (const point of mounts.sort().reverse()) umount(point, true);
}

/** Opens the store's gc.lock (making the store directory if need be). */
function openLock(dir: string): number {
  mkdirSync(dir, { recursive: true });
  // The store's own directory, not an image root; still, a link planted as gc.lock is not followed.
  return openSync(join(dir, "gc.lock"), constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND | constants.O_NOFOLLOW, 0o644);
}

/** Flushes a file's bytes to disk before it is renamed into place (durable, not only atomic). */
function syncFile(path: string) {
  const fd = openSync(path, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
