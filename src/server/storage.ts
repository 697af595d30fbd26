/**
 * The remote cache's storage: blobs named by their BLAKE3 hash, and actions (a step's result:
 * JSON naming the blobs it needs). The metadata is a CacheIndex (cache-index.ts: SQLite in
 * DATA/cache.db by default, or PostgreSQL), the bytes a BlobStore (blobs.ts: DATA/blobs/ by
 * default, or S3).
 *
 * An upload is hashed while it streams into the blob store; a body whose hash is not its name
 * is refused and never becomes visible, and a complete one is committed, then recorded.
 * Eviction keeps storage under a budget:
 * blobs no action needs go first (once past a grace period for the action that should follow),
 * then the least recently used actions, and a blob goes only when no kept action needs it.
 */
import { DirectoryBlobs, type BlobStore, type BlobUpload } from "./blobs.ts";
import { Blake3Hasher } from "../hash/blake3.ts";
import { SqliteCacheIndex, type CacheIndex, type Conflict, type Nondeterministic, type TokenStat, type TokenUse, type Unreproducible } from "./cache-index.ts";
import { diffLayers, layerTar, MAX_COMPARED_BYTES, type LayerDiff } from "./layer-diff.ts";
import { checkSignature, resultDigest, validateAction, type RemoteAction } from "../remote/action.ts";

export type { Conflict, Nondeterministic, Unreproducible } from "./cache-index.ts";

/** Where an uploaded result comes from, as its uploader says: shown to people, never trusted for access. */
export interface ResultOrigin {
  build?: string;
  step?: string;
}

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

export class Storage {
  readonly blobs: BlobStore;
  evictions = 0;
  /**
   * Last-access times and token stats are written in batches (flush()), not per request:
   * a write transaction per cache hit would cap hits at a few thousand a second.
   */
  private readonly touchedBlobs = new Map<string, number>();
  private readonly touchedActions = new Map<string, number>();
  private readonly tokenUse = new Map<string, TokenUse>();
  /**
   * Small blobs (≤ 64 KiB) served from memory, least recently used out past 64 MiB: opening
   * and sending a file per request costs more than the request itself for these. Blobs are
   * named by their content, so a copy in memory is never stale, whoever stored it. Each is a
   * Blob typed application/octet-stream: a Response made of one gets its content type and
   * length with no headers object, a quarter of the cost of one with headers (about 0.25 µs
   * against 1 µs a response, measured), which counts at tens of thousands of hits a second.
   */
  private readonly smallBlobs = new Map<string, Blob>();
  private smallBlobBytes = 0;
  static readonly SMALL_BLOB = 64 * 1024;
  private readonly smallBlobCacheLimit: number;
  readonly index: CacheIndex;

  constructor(
    readonly options: StorageOptions,
    index?: CacheIndex,
    blobs?: BlobStore,
  ) {
    // Stryker disable next-line ArithmeticOperator: how much memory the cache may use changes no answer
    this.smallBlobCacheLimit = options.smallBlobCacheBytes ?? 64 * 1024 * 1024;
    this.blobs = blobs ?? new DirectoryBlobs(options.dataDir);
    this.index = index ?? new SqliteCacheIndex(options.dataDir);
  }

  /** Writes batched access times and token stats. */
  async flush() {
    // Stryker disable next-line ConditionalExpression,ArithmeticOperator: an empty transaction writes nothing
    if (this.touchedBlobs.size + this.touchedActions.size + this.tokenUse.size === 0) return;
    // Taken out before the write: what arrives meanwhile goes in the next batch, and token use
    // is never counted twice.
    const blobs = new Map(this.touchedBlobs);
    const actions = new Map(this.touchedActions);
    const tokens = new Map(this.tokenUse);
    this.touchedBlobs.clear();
    this.touchedActions.clear();
    this.tokenUse.clear();
    await this.index.flush(blobs, actions, tokens);
  }

  async close() {
    await this.flush();
    await this.index.close();
  }

  /** Where the default store keeps a blob's file (tests and checks of the directory store). */
  blobPath(hash: string): string {
    return (this.blobs as DirectoryBlobs).blobPath(hash);
  }

  async hasBlob(hash: string): Promise<boolean> {
    return (await this.index.blobSize(hash)) !== undefined;
  }

  blobSize(hash: string): Promise<number | undefined> {
    return this.index.blobSize(hash);
  }

  touchBlob(hash: string) {
    this.touchedBlobs.set(hash, Date.now());
  }

  /** A small blob's bytes if they are in memory now (nothing is read or asked). */
  memoryCopy(hash: string): Blob | undefined {
    const bytes = this.smallBlobs.get(hash);
    if (bytes) {
      this.smallBlobs.delete(hash); // most recently used goes last
      this.smallBlobs.set(hash, bytes);
    }
    return bytes;
  }

  /** A small blob's bytes from memory (read from disk the first time); undefined if large. */
  async smallBlob(hash: string, knownSize?: number): Promise<Blob | undefined> {
    const size = knownSize ?? (await this.index.blobSize(hash));
    // Stryker disable next-line EqualityOperator: whether a blob of exactly 64 KiB is kept in memory changes no answer
    if (size === undefined || size > Storage.SMALL_BLOB) return undefined;
    let bytes = this.smallBlobs.get(hash);
    if (bytes) {
      this.smallBlobs.delete(hash); // most recently used goes last
    } else {
      bytes = new Blob([await this.blobs.read(hash)], { type: "application/octet-stream" });
      this.smallBlobBytes += bytes.size;
      for (const [old, data] of this.smallBlobs) {
        if (this.smallBlobBytes <= this.smallBlobCacheLimit) break;
        this.smallBlobs.delete(old);
        this.smallBlobBytes -= data.size;
      }
    }
    this.smallBlobs.set(hash, bytes);
    return bytes;
  }

  /**
   * Stores a blob from a stream, verifying its BLAKE3 hash as it arrives; the bytes become the
   * blob (committed, then recorded) only once the hash matched. A blob that is already stored
   * is only drained and checked, never written again.
   */
  async putBlob(hash: string, body: ReadableStream<Uint8Array>, declaredLength?: number): Promise<{ size: number; existed: boolean }> {
    const max = this.options.maxBlob;
    // Stryker disable next-line ConditionalExpression,LogicalOperator: a comparison with undefined is false anyway
    if (max !== undefined && declaredLength !== undefined && declaredLength > max) {
      throw new UploadRejected(413, "too-large", `blob of ${declaredLength} bytes is over the limit of ${max}`);
    }
    if (await this.hasBlob(hash)) {
      const size = await this.receive(hash, body, undefined);
      return { size, existed: true };
    }
    const upload = await this.blobs.begin(hash);
    let size: number;
    try {
      size = await this.receive(hash, body, upload);
    } catch (error) {
      await upload.abandon();
      throw error;
    }
    if (await this.hasBlob(hash)) {
      await upload.abandon(); // the same blob arrived meanwhile
      return { size, existed: true };
    }
    await this.index.addBlob(hash, size, Date.now(), () => upload.commit());
    return { size, existed: false };
  }

  /** Reads an upload to its end (into `file` when given), hashing it; throws unless it is `hash`. */
  private async receive(hash: string, body: ReadableStream<Uint8Array>, upload: BlobUpload | undefined): Promise<number> {
    const max = this.options.maxBlob;
    const hasher = new Blake3Hasher();
    let size = 0;
    try {
      for await (const chunk of body) {
        size += chunk.length;
        // Stryker disable next-line ConditionalExpression: a comparison with undefined is false anyway
        if (max !== undefined && size > max) throw new UploadRejected(413, "too-large", `blob is over the limit of ${max} bytes`);
        hasher.update(chunk);
        if (upload) await upload.write(chunk);
      }
    } catch (error) {
      if (error instanceof UploadRejected) throw error;
      throw new UploadRejected(400, "aborted", `upload did not complete: ${(error as Error).message}`);
    }
    const actual = hasher.digest("hex");
    if (actual !== hash) throw new UploadRejected(400, "mismatch", `body hashes to ${actual}, not ${hash}: nothing stored`);
    return size;
  }

  async getAction(key: string): Promise<string | undefined> {
    const body = await this.index.getAction(key);
    if (body !== undefined) this.touchedActions.set(key, Date.now());
    return body;
  }

  hasAction(key: string): Promise<boolean> {
    return this.index.hasAction(key);
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
  async putAction(key: string, body: string, author: string, origin: ResultOrigin = {}): Promise<"stored" | "same" | "signed" | Unreproducible> {
    const action = parseAction(body);
    const signature = checkSignature(key, action);
    if (signature && "error" in signature) throw new UploadRejected(400, "bad-signature", signature.error);
    const signer = signature?.signer ?? null;
    // What was checked is what is kept: the normalized copy, never the body as sent (a field
    // the check defaulted, such as a missing "blobs", would reach readers as it was sent).
    const outcome = await this.index.putAction({
      key,
      body: JSON.stringify(action),
      author,
      signer,
      result: resultDigest(key, action),
      blobs: action.blobs,
      now: Date.now(),
      resultOf: (stored) => resultDigest(key, parseAction(stored)),
      build: origin.build ?? null,
      step: origin.step ?? null,
    });
    if (typeof outcome === "string") return outcome;
    if ("missing" in outcome) throw new UploadRejected(400, "missing-blobs", `the action names blobs that are not stored: ${outcome.missing.join(", ")}`);
    if ("conflict" in outcome) throw new ActionConflict(outcome.conflict);
    // Its own writer made it again and got another result: the step is not reproducible. The
    // result kept stays (write-once); what differs is found and recorded.
    const { differs } = outcome;
    const record: Unreproducible = {
      key,
      time: differs.time,
      author: differs.second.author,
      signer: differs.second.signer,
      step: differs.step ?? null,
      first: { result: differs.first.result, build: differs.first.build ?? null },
      second: { result: differs.second.result, build: differs.second.build ?? null },
      differences: await this.compareLayers(key, action),
    };
    await this.index.addUnreproducible(record);
    return record;
  }

  /** Which files differ between the layer kept for a key and another one for it (both stored here). */
  private async compareLayers(key: string, second: RemoteAction): Promise<LayerDiff> {
    const keptBody = await this.index.getAction(key);
    const first = keptBody === undefined ? undefined : parseAction(keptBody);
    if (!first) return { files: [], more: 0, note: "the result kept was evicted meanwhile" };
    if (!first.layer || !second.layer) return { files: [], more: 0, note: first.layer || second.layer ? "one result has a layer, the other none" : "neither result has a layer (the image config differs)" };
    // The sizes stored, not the ones the actions declare: only what is really read is bounded.
    const sizes = await Promise.all([first.layer.blake3, second.layer.blake3].map((hash) => this.index.blobSize(hash)));
    if (sizes.some((size) => size === undefined || size > MAX_COMPARED_BYTES)) return { files: [], more: 0, note: `layers over ${MAX_COMPARED_BYTES} bytes (or evicted) are not compared` };
    try {
      const a = layerTar(await this.blobs.read(first.layer.blake3), first.layer.mediaType);
      const b = layerTar(await this.blobs.read(second.layer.blake3), second.layer.mediaType);
      if (typeof a === "string" || typeof b === "string") return { files: [], more: 0, note: typeof a === "string" ? a : (b as string) };
      return diffLayers(a, b);
    } catch (cause) {
      return { files: [], more: 0, note: `the layers could not be compared: ${(cause as Error).message}` };
    }
  }

  /** Results not reproducible, newest first; the steps that were so most often. */
  unreproducible(options: { key?: string; limit?: number } = {}): Promise<Unreproducible[]> {
    return this.index.unreproducible({ key: options.key, limit: options.limit ?? 100 });
  }

  nondeterministic(since: number, limit = 10): Promise<Nondeterministic[]> {
    return this.index.nondeterministic(since, limit);
  }

  /** Who signed the result kept for a key (null: unsigned or no result). */
  signerOf(key: string): Promise<string | null> {
    return this.index.signerOf(key);
  }

  /** Conflicts recorded, newest first (optionally for one key). */
  conflicts(options: { key?: string; limit?: number } = {}): Promise<Conflict[]> {
    return this.index.conflicts({ key: options.key, limit: options.limit ?? 100 });
  }

  /** Requests and bytes by token (a short hash prefix names each), busiest first. */
  async tokenStats(): Promise<TokenStat[]> {
    await this.flush();
    return await this.index.tokenStats();
  }

  conflictCount(): Promise<number> {
    return this.index.conflictCount();
  }

  async storageBytes(): Promise<number> {
    return (await this.index.counts()).bytes;
  }

  counts(): Promise<{ blobs: number; actions: number; bytes: number }> {
    return this.index.counts();
  }

  /**
   * Brings storage under the budget: unreferenced blobs first (least recently used), then the
   * least recently used actions and the blobs only they needed. Returns how many went. A blob's
   * bytes go after its entry: killed in between, bytes no entry names are left, never an entry
   * naming no bytes.
   */
  async evict(): Promise<number> {
    const max = this.options.maxSize;
    if (max === undefined) return 0;
    await this.flush(); // eviction orders by access time
    const evicted = await this.index.evict(max, Date.now() - (this.options.pendingGraceMs ?? 10 * 60_000), (hash) => this.blobs.delete(hash));
    if (!evicted) return 0;
    for (const hash of evicted.blobs) {
      const cached = this.smallBlobs.get(hash);
      if (cached) {
        this.smallBlobs.delete(hash);
        this.smallBlobBytes -= cached.size;
      }
    }
    this.evictions += evicted.count;
    return evicted.count;
  }

  recordTokenUse(token: string, bytesIn: number, bytesOut: number) {
    const use = this.tokenUse.get(token) ?? { requests: 0, bytesIn: 0, bytesOut: 0 };
    use.requests++;
    use.bytesIn += bytesIn;
    use.bytesOut += bytesOut;
    this.tokenUse.set(token, use);
  }

  /** Blobs stored that the index does not know, and leftover uploads (for checks). */
  async strayFiles(): Promise<string[]> {
    const stray: string[] = [];
    for (const name of await this.blobs.names()) if (!(await this.hasBlob(name))) stray.push(name);
    return stray.concat(await this.blobs.leftovers());
  }

  /** Bytes the small-blob memory cache really holds (counted, not the running total it keeps). */
  get smallBlobCacheUsed(): number {
    let bytes = 0;
    for (const data of this.smallBlobs.values()) bytes += data.size;
    return bytes;
  }

  fileSize(hash: string): number {
    return (this.blobs as DirectoryBlobs).fileSize(hash);
  }
}

export class ActionConflict extends UploadRejected {
  constructor(readonly conflict: Conflict) {
    super(409, "conflict", `${conflict.step ? `${conflict.step}: ` : ""}step ${conflict.key} already has a different result (${conflict.first.result.slice(0, 12)}) from another writer${conflict.first.build ? ` (build ${conflict.first.build})` : ""}; results are write-once, so this one (${conflict.second.result.slice(0, 12)}) was refused and recorded as a conflict`);
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
