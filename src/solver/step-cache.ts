/**
 * The one place that decides how a step is satisfied: the local store, then the remote cache
 * (its result checked: BLAKE3 while downloading, sha256, diff ID while unpacking), then
 * executing it. Layer steps and config-only steps go the same way; `--no-cache` skips both
 * lookups. Results the remote lacks are uploaded alongside the build.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import type { LayerRecord, LocalStore } from "../cache/store.ts";
import { RemoteCacheError, type RemoteAction, type RemoteCache } from "../remote/client.ts";
import type { ResultSource } from "../remote/result-source.ts";
import { checkSignature } from "../remote/action.ts";
import { DiskFullError, UserError } from "../errors.ts";
import { sha256File } from "../hash/sha256.ts";
import type { StepStatus } from "./progress.ts";

/** A duration the remote sent, when it is one (it only feeds "time saved"). */
const measured = (ms: unknown): number | undefined => (Number.isSafeInteger(ms) && (ms as number) >= 0 ? (ms as number) : undefined);

export interface StepCacheOptions {
  /** Decide what would happen, but run, store and upload nothing. */
  dryRun: boolean;
  upload: "wait" | "background" | "off";
}

/** How a step was satisfied. `diffId` is its layer (null for a config-only step, or a dry run). */
export interface Satisfied {
  status: StepStatus;
  diffId: string | null;
  /** When the result was first made (history and config dates use it). */
  created: number;
  /** For a hit: how long the step took when it ran. */
  savedMs?: number;
  /** For a remote hit: the key whose signature on the result verifies here (provenance says who made it). */
  signer?: string;
  /** The layer, for one just made whose row the store may not hold yet (see Executed.stored). */
  layer?: LayerRecord;
}

/** What a layer step that ran made: its layer's snapshot is in the store. */
export interface Executed {
  diffId: string;
  durationMs: number;
  layer?: LayerRecord;
  /**
   * Settles once the layer's blob and row are in the store, when that is still under way (its
   * fsync runs while the next step does): the step's own row is written after it.
   */
  stored?: Promise<void>;
}

/** Runs a layer step that missed; the layer's snapshot is in the local store when it resolves. */
export type Execute = () => Promise<Executed>;

export class StepCache {
  /** Where results may come from besides the local store: the remote cache first, then each --cache-from. */
  private readonly sources: ResultSource[];

  constructor(
    private readonly store: LocalStore,
    private readonly remote: RemoteCache | undefined,
    private readonly options: StepCacheOptions,
    cacheFrom: ResultSource[] = [],
  ) {
    this.sources = [...(remote ? [remote] : []), ...cacheFrom];
  }

  /**
   * Local hit → remote hit → execute (`execute` is absent for config-only steps). `label` names
   * the step to the remote (`[build 5/6] RUN make`) for what it says about the result.
   */
  async satisfy(key: string, text: string, noCache: boolean, execute?: Execute, label?: string): Promise<Satisfied> {
    if (!noCache) {
      const makesLayer = execute !== undefined;
      const hit = this.localHit(key, makesLayer, label) ?? (await this.remoteHit(key, text, makesLayer));
      if (hit) return hit;
    }
    if (this.options.dryRun) return { status: "executed", diffId: null, created: Date.now() };
    if (!execute) {
      // Config-only steps take no measurable time; 0 says so (unlike "unknown"). A --no-cache
      // rebuild keeps the first date, so the image stays the same.
      const isNew = !this.store.lookupStep(key);
      const record = this.store.recordStep(key, null, 0, text);
      this.share(key, null, record.created, 0, isNew, label);
      return { status: "executed", diffId: null, created: record.created };
    }
    const { diffId, durationMs, layer, stored } = await execute();
    // The date the result the store keeps will have (an existing one's under --no-cache, or the
    // one this build made first, its row still being written), known now: the row may come later.
    const created = this.pending.get(key)?.created ?? this.store.lookupStep(key)?.created ?? Date.now();
    const record = () => {
      this.store.recordStep(key, diffId, durationMs, text, created);
      this.share(key, diffId, created, durationMs, true, label);
    };
    if (stored) this.recordAfter(stored, key, { status: "cached-local", diffId, created, savedMs: durationMs, ...(layer ? { layer } : {}) }, record);
    else record();
    return { status: "executed", diffId, created, ...(layer ? { layer } : {}) };
  }

  /**
   * `record` once `stored` settles; meanwhile the result is this build's for its key: the same
   * step in another stage is a hit with the same date, as it was when the row came at once.
   */
  private recordAfter(stored: Promise<void>, key: string, result: Satisfied, record: () => void) {
    if (!this.pending.has(key)) this.pending.set(key, result);
    const writing = stored.then(record);
    // Not unhandled meanwhile: written() reports a failure.
    void writing.catch(() => {}).finally(() => {
      if (this.pending.get(key) === result) this.pending.delete(key);
    });
    this.writing.push(writing);
  }

  /** Rows still being written after their blobs (see Executed.stored). */
  private readonly writing: Promise<void>[] = [];

  /** Layer results of this build whose rows are still being written, by key (see recordAfter). */
  private readonly pending = new Map<string, Satisfied>();

  /** Waits for every row still being written; throws the first failure (a blob's fsync, say). */
  async written(): Promise<void> {
    const results = await Promise.allSettled(this.writing.splice(0));
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
  }

  /** What to tell the user about a result for a key it did not use (the first source's reason). */
  note(key: string): { remote_refused?: string } {
    const refused = this.sources.map((source) => source.refused.get(key)).find(Boolean);
    return refused ? { remote_refused: refused } : {};
  }

  private localHit(key: string, makesLayer: boolean, label?: string): Satisfied | undefined {
    const pending = this.pending.get(key);
    if (pending && makesLayer) return pending;
    const local = this.store.lookupStep(key);
    if (!local || (local.diffId === null) === makesLayer) return undefined;
    this.share(key, local.diffId, local.created, local.durationMs, false, label);
    return { status: "cached-local", diffId: local.diffId, created: local.created, savedMs: local.durationMs };
  }

  /** The first source, in order, that has a result this build accepts and whose layer checks out. */
  private async remoteHit(key: string, text: string, makesLayer: boolean): Promise<Satisfied | undefined> {
    for (const source of this.sources) {
      const action = await source.getAction(key);
      if (!action || (action.diffId === null) === makesLayer) continue;
      // A dry run says where the result would come from, and fetches nothing.
      if (this.options.dryRun) return { status: "cached-remote", diffId: null, created: action.created };
      const diffId = makesLayer ? await this.importLayer(key, action, source) : null;
      if (diffId === undefined) continue;
      const savedMs = measured(action.duration_ms);
      this.store.recordStep(key, diffId, savedMs, text);
      const signed = action.signature ? checkSignature(key, action) : undefined;
      return { status: "cached-remote", diffId, created: action.created, savedMs, ...(signed && "signer" in signed ? { signer: signed.signer } : {}) };
    }
    return undefined;
  }

  /** Uploads a result the remote may not have (new ones always; cached ones if it lacks them). */
  private share(key: string, diffId: string | null, created: number, durationMs: number | undefined, isNew = false, label?: string) {
    const { remote, store } = this;
    if (!remote || this.options.upload === "off" || this.options.dryRun) return;
    remote.enqueue(async () => {
      if (!isNew && (await remote.hasAction(key))) return;
      const layer = diffId ? store.layer(diffId) : undefined;
      const action = { diffId, created, ...(durationMs !== undefined ? { duration_ms: durationMs } : {}) };
      await remote.upload(key, action, layer && { file: store.blobPath(layer.digest), digest: layer.digest, size: layer.size, mediaType: layer.mediaType }, label);
    });
  }

  /** A layer from the remote, checked then stored; undefined when it cannot be had or is wrong. */
  private async importLayer(key: string, action: RemoteAction, source: ResultSource): Promise<string | undefined> {
    const { store } = this;
    const { diffId, layer } = action;
    if (!diffId || !layer) return undefined;
    try {
      if (!store.layer(diffId) || !store.hasBlob(layer.digest)) {
        const staging = store.tempDir("remote");
        try {
          const file = join(staging, "blob");
          if (!(await source.fetchLayer(layer, file))) return undefined;
          const digest = await sha256File(file);
          if (digest !== layer.digest) throw new RemoteCacheError(`layer ${layer.digest} from the remote cache hashes to ${digest}`);
          store.adoptBlob(file, layer.digest);
        } finally {
          rmSync(staging, { recursive: true, force: true });
        }
      }
      // Verifies the diff ID while unpacking; never changes a layer the store already has.
      await store.adoptLayer({ diffId, digest: layer.digest, size: layer.size, uncompressedSize: layer.size, mediaType: layer.mediaType });
      return diffId;
    } catch (error) {
      // A lying remote costs a rebuild of the step, never a wrong layer or a failed build.
      if (!(error instanceof UserError) || error instanceof DiskFullError) throw error;
      source.distrust(key, `remote result is corrupt: ${error.message}`);
      return undefined;
    }
  }
}
