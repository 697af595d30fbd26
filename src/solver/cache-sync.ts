/**
 * How a step is satisfied from the caches: the local store first, then the remote one. A remote
 * result is checked (BLAKE3 while downloading, sha256, diff ID while unpacking) before the local
 * store takes it; results the remote lacks are uploaded alongside the build.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import type { LocalStore } from "../cache/store.ts";
import { RemoteCacheError, type RemoteCache } from "../remote/client.ts";
import { DiskFullError, UserError } from "../errors.ts";
import { sha256File } from "../hash/sha256.ts";
import type { StepStatus } from "./progress.ts";

/** A duration the remote sent, when it is one (it only feeds "time saved"). */
const measured = (ms: unknown): number | undefined => (Number.isSafeInteger(ms) && (ms as number) >= 0 ? (ms as number) : undefined);

export interface CacheSyncOptions {
  noCache: boolean;
  dryRun: boolean;
  upload: "wait" | "background" | "off";
}

export class CacheSync {
  constructor(
    private readonly store: LocalStore,
    private readonly remote: RemoteCache | undefined,
    private readonly options: CacheSyncOptions,
  ) {}

  /** Uploads a result the remote may not have (new ones always; cached ones if it lacks them). */
  share(key: string, diffId: string | null, created: number, durationMs: number | undefined, isNew = false) {
    const { remote, store } = this;
    if (!remote || this.options.upload === "off" || this.options.dryRun) return;
    remote.enqueue(async () => {
      if (!isNew && (await remote.hasAction(key))) return;
      const layer = diffId ? store.layer(diffId) : undefined;
      const action = { diffId, created, ...(durationMs !== undefined ? { duration_ms: durationMs } : {}) };
      await remote.upload(key, action, layer && { file: store.blobPath(layer.digest), digest: layer.digest, size: layer.size, mediaType: layer.mediaType });
    });
  }

  /** A step that only changes the config (or a FROM): local record, then the remote. */
  async configOnly(key: string, instruction: string): Promise<{ status: StepStatus; created: number; savedMs?: number }> {
    const { store, remote } = this;
    const local = store.lookupStep(key);
    if (local) {
      this.share(key, null, local.created, local.durationMs);
      // --no-cache runs every step: a config-only step "runs" (it is recomputed), keeping its first date.
      if (this.options.noCache) return { status: "executed", created: local.created };
      return { status: "cached-local", created: local.created, savedMs: local.durationMs };
    }
    if (this.options.dryRun) return { status: (await this.remoteHas(key)) ? "cached-remote" : "executed", created: Date.now() };
    const action = remote && !this.options.noCache ? await remote.getAction(key) : undefined;
    if (action && action.diffId === null) {
      store.recordStep(key, null, measured(action.duration_ms), instruction);
      return { status: "cached-remote", created: action.created, savedMs: measured(action.duration_ms) };
    }
    // Config-only steps take no measurable time; 0 says so (unlike "unknown").
    const record = store.recordStep(key, null, 0, instruction);
    this.share(key, null, record.created, 0, true);
    return { status: "executed", created: record.created };
  }

  /** For a dry run: whether the remote holds a result for the key that this client accepts. */
  async remoteHas(key: string): Promise<boolean> {
    return !!this.remote && !this.options.noCache && (await this.remote.getAction(key)) !== undefined;
  }

  /** What to tell the user about the remote's result for a key it did not use. */
  note(key: string): { remote_refused?: string } {
    const refused = this.remote?.refused.get(key);
    return refused ? { remote_refused: refused } : {};
  }

  /** A layer from the remote, checked then stored; undefined when the remote lacks it. */
  async importLayer(key: string, instruction: string): Promise<{ diffId: string; created: number; durationMs?: number } | undefined> {
    const { store, remote } = this;
    if (!remote || this.options.noCache || this.options.dryRun) return undefined;
    const action = await remote.getAction(key);
    if (!action?.diffId || !action.layer) return undefined;
    const { diffId, layer } = action;
    try {
      if (!store.layer(diffId) || !store.hasBlob(layer.digest)) {
        const staging = store.tempDir("remote");
        try {
          const file = join(staging, "blob");
          if (!(await remote.fetchBlob(layer.blake3, file, layer.size))) return undefined;
          const digest = await sha256File(file);
          if (digest !== layer.digest) throw new RemoteCacheError(`layer ${layer.digest} from the remote cache hashes to ${digest}`);
          store.adoptBlob(file, layer.digest);
        } finally {
          rmSync(staging, { recursive: true, force: true });
        }
      }
      // Verifies the diff ID while unpacking; never changes a layer the store already has.
      await store.adoptLayer({ diffId, digest: layer.digest, size: layer.size, uncompressedSize: layer.size, mediaType: layer.mediaType });
    } catch (error) {
      // A lying remote costs a rebuild of the step, never a wrong layer or a failed build.
      if (!(error instanceof UserError) || error instanceof DiskFullError) throw error;
      remote.distrust(key, `remote result is corrupt: ${error.message}`);
      return undefined;
    }
    const durationMs = measured(action.duration_ms);
    store.recordStep(key, diffId, durationMs, instruction);
    return { diffId, created: action.created, durationMs };
  }
}
