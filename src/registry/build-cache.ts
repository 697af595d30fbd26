/**
 * A build cache without any server, as BuildKit's `--cache-to`/`--cache-from`: step results kept
 * as an OCI artifact in a registry repository (`type=registry,ref=R`) or an OCI layout directory
 * (`type=local,dest=DIR` / `src=DIR`). The artifact's config lists each step's result exactly as
 * the remote cache stores it (key → layer, signer), its layers are the step layers themselves
 * (in a registry, the same blobs as the image's, stored once). Signed results honour
 * `--remote-trust`; everything read is checked (sizes, digests, diff IDs) before it is used.
 */
import { closeSync, existsSync, mkdirSync, openSync, readSync, rmSync, writeFileSync } from "node:fs";
import { writeAll } from "../util/write-all.ts";
import { join } from "node:path";
import type { LocalStore } from "../cache/store.ts";
import { UserError } from "../errors.ts";
import { hashFile } from "../hash/blake3.ts";
import { sha256File } from "../hash/sha256.ts";
import { parseReference } from "../image/reference.ts";
import { checkSignature, validateAction, type RemoteAction, type SigningKey } from "../remote/action.ts";
import type { ResultSource } from "../remote/result-source.ts";
import { readRegularFile, writeFileAtomic } from "../util/host-file.ts";
import { terminalText } from "../util/terminal-text.ts";
import { clientFor, type RegistryOptions } from "./client.ts";

export const CACHE_ARTIFACT_TYPE = "application/vnd.memobuild.build-cache.v1";
export const CACHE_CONFIG_TYPE = "application/vnd.memobuild.build-cache.config.v1+json";
const MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json";
/** The list of results: a few hundred bytes a step. */
const MAX_RECORDS_BYTES = 64 * 1024 * 1024;
const MAX_MANIFEST_BYTES = 16 * 1024 * 1024;

export type CacheSpec = { type: "registry"; ref: string; mode: "min" | "max"; ignoreError: boolean } | { type: "local"; dir: string; mode: "min" | "max"; ignoreError: boolean };

export class BuildCacheError extends UserError {}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}

/** Where the artifact lives: a registry repository, or an OCI layout directory. */
interface Place {
  name: string;
  /** The artifact's manifest; undefined when there is none yet. */
  manifest(): Promise<Buffer | undefined>;
  /** A blob into `file`, checked against its digest and size. */
  fetch(blob: Descriptor, file: string): Promise<boolean>;
  put(blob: Descriptor, file: string): Promise<void>;
  putManifest(bytes: Buffer): Promise<void>;
}

function registryPlace(refText: string, options: RegistryOptions): Place {
  const ref = parseReference(refText);
  const client = clientFor(ref, options);
  const tag = ref.tag ?? "latest";
  return {
    name: refText,
    async manifest() {
      try {
        const { bytes } = await client.getManifest(ref.repository, tag);
        return bytes;
      } catch (error) {
        if (/not found in the registry/.test((error as Error).message)) return undefined;
        throw error;
      }
    },
    async fetch(blob, file) {
      await client.getBlob(ref.repository, blob.digest, file, blob.size);
      return true;
    },
    async put(blob, file) {
      await client.putBlob(ref.repository, blob.digest, file);
    },
    async putManifest(bytes) {
      await client.putManifest(ref.repository, tag, bytes, MANIFEST_TYPE);
    },
  };
}

/** An OCI layout directory (its files read as regular files only, never through a link). */
function layoutPlace(dir: string): Place {
  const blobPath = (digest: string) => join(dir, "blobs", "sha256", digest.slice("sha256:".length));
  return {
    name: dir,
    async manifest() {
      if (!existsSync(join(dir, "index.json"))) return undefined;
      const index = JSON.parse(readRegularFile(join(dir, "index.json"), { limit: MAX_MANIFEST_BYTES, what: `${dir}/index.json` }).toString("utf8")) as { manifests?: Descriptor[] };
      const descriptor = index.manifests?.find((m) => m.mediaType === MANIFEST_TYPE);
      if (!descriptor || !/^sha256:[0-9a-f]{64}$/.test(descriptor.digest)) return undefined;
      const bytes = readRegularFile(blobPath(descriptor.digest), { limit: MAX_MANIFEST_BYTES, what: `${dir}: the cache manifest` });
      if (`sha256:${new Bun.CryptoHasher("sha256").update(bytes).digest("hex")}` !== descriptor.digest) throw new BuildCacheError(`${dir}: the cache manifest does not match its digest`);
      return bytes;
    },
    async fetch(blob, file) {
      if (!/^sha256:[0-9a-f]{64}$/.test(blob.digest) || !existsSync(blobPath(blob.digest))) return false;
      // Into this build's own staging file (the caller's), from a regular file of at most the size listed.
      writeFileSync(file, readRegularFile(blobPath(blob.digest), { limit: blob.size, what: `${dir}: blob ${blob.digest}` }), { mode: 0o600 });
      return (await sha256File(file)) === blob.digest;
    },
    async put(blob, file) {
      mkdirSync(join(dir, "blobs", "sha256"), { recursive: true });
      if (!existsSync(blobPath(blob.digest))) writeFileAtomic(blobPath(blob.digest), (fd) => copyInto(file, fd));
    },
    async putManifest(bytes) {
      const digest = `sha256:${new Bun.CryptoHasher("sha256").update(bytes).digest("hex")}`;
      mkdirSync(join(dir, "blobs", "sha256"), { recursive: true });
      writeFileAtomic(blobPath(digest), bytes);
      writeFileAtomic(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
      // The index last: a reader sees the old cache or the new one, never half of one.
      writeFileAtomic(join(dir, "index.json"), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: MANIFEST_TYPE, artifactType: CACHE_ARTIFACT_TYPE, digest, size: bytes.length }] }));
    },
  };
}

/** A (layer) file's bytes onto an open descriptor, a chunk at a time. */
function copyInto(file: string, fd: number) {
  const from = openSync(file, "r");
  try {
    const chunk = Buffer.allocUnsafe(1 << 20);
    for (let n = readSync(from, chunk); n > 0; n = readSync(from, chunk)) writeAll(fd, chunk.subarray(0, n));
  } finally {
    closeSync(from);
  }
}

const placeOf = (spec: CacheSpec, registry: RegistryOptions) => (spec.type === "registry" ? registryPlace(spec.ref, registry) : layoutPlace(spec.dir));

/** A build cache to read results from (`--cache-from`); a cache that cannot be read costs a warning. */
export class BuildCacheSource implements ResultSource {
  readonly refused = new Map<string, string>();

  private constructor(
    private readonly place: Place,
    private readonly results: Map<string, RemoteAction>,
    private readonly layers: Map<string, Descriptor>,
    private readonly trusted: Set<string> | undefined,
    private readonly warn: (message: string) => void,
  ) {}

  static async open(spec: CacheSpec, options: { registry: RegistryOptions; trust?: string[]; warn: (message: string) => void; scratch: string }): Promise<BuildCacheSource | undefined> {
    const place = placeOf(spec, options.registry);
    try {
      const bytes = await place.manifest();
      if (!bytes) {
        options.warn(`--cache-from ${place.name}: no build cache there yet`);
        return undefined;
      }
      const manifest = JSON.parse(bytes.toString("utf8")) as { artifactType?: string; config?: Descriptor; layers?: Descriptor[] };
      if (manifest.config?.mediaType !== CACHE_CONFIG_TYPE || !Array.isArray(manifest.layers)) throw new BuildCacheError("it is not a MemoBuild build cache");
      if (!(manifest.config.size <= MAX_RECORDS_BYTES)) throw new BuildCacheError(`its list of results is larger than ${MAX_RECORDS_BYTES} bytes`);
      const file = join(options.scratch, "records.json");
      if (!(await place.fetch(manifest.config, file))) throw new BuildCacheError("its list of results is missing");
      const records = JSON.parse(readRegularFile(file, { limit: MAX_RECORDS_BYTES }).toString("utf8")) as { results?: Record<string, unknown> };
      rmSync(file, { force: true });
      const results = new Map<string, RemoteAction>();
      for (const [key, value] of Object.entries(records.results ?? {})) {
        const action = validateAction(value);
        if (/^[0-9a-f]{64}$/.test(key) && typeof action !== "string") results.set(key, action);
      }
      const layers = new Map(manifest.layers.filter((l) => /^sha256:[0-9a-f]{64}$/.test(l?.digest) && Number.isSafeInteger(l.size)).map((l) => [l.digest, l]));
      const trusted = options.trust?.length ? new Set(options.trust.map((t) => t.trim())) : undefined;
      return new BuildCacheSource(place, results, layers, trusted, options.warn);
    } catch (error) {
      // A cache is an optimization: an unreachable or broken one costs a warning, never the build.
      options.warn(`--cache-from ${place.name}: not used (${terminalText((error as Error).message, { max: 300 })})`);
      return undefined;
    }
  }

  async getAction(key: string): Promise<RemoteAction | undefined> {
    const action = this.results.get(key);
    if (!action || !this.trusted) return action;
    const signature = checkSignature(key, action);
    if (!signature) this.refused.set(key, `result in ${this.place.name} is not signed, and --remote-trust asks for a trusted signer`);
    else if ("error" in signature) this.refused.set(key, `result in ${this.place.name} has a bad signature: ${terminalText(signature.error)}`);
    else if (!this.trusted.has(signature.signer)) this.refused.set(key, `result in ${this.place.name} from an untrusted signer (${terminalText(signature.signer)})`);
    else return action;
    return undefined;
  }

  async fetchLayer(layer: NonNullable<RemoteAction["layer"]>, file: string): Promise<boolean> {
    const listed = this.layers.get(layer.digest);
    if (!listed || listed.size !== layer.size) return false;
    try {
      return await this.place.fetch({ mediaType: layer.mediaType, digest: layer.digest, size: layer.size }, file);
    } catch (error) {
      this.warn(`--cache-from ${this.place.name}: layer ${layer.digest.slice(0, 19)} not fetched (${terminalText((error as Error).message, { max: 300 })})`);
      return false;
    }
  }

  distrust(key: string, reason: string) {
    this.refused.set(key, terminalText(reason));
    this.warn(`step ${key.slice(0, 12)}: ${terminalText(reason)}; running it here instead`);
  }
}

/** The results of these steps (by key) as a build cache at `spec`: layers first, then the list, then the manifest. */
export async function exportBuildCache(spec: CacheSpec, store: LocalStore, keys: string[], options: { registry: RegistryOptions; signer?: SigningKey }): Promise<number> {
  const place = placeOf(spec, options.registry);
  const results: Record<string, RemoteAction> = {};
  const layers = new Map<string, Descriptor & { file: string }>();
  for (const key of new Set(keys)) {
    const step = store.lookupStep(key);
    if (!step) continue;
    const layer = step.diffId ? store.layer(step.diffId) : undefined;
    if (step.diffId && !layer) continue;
    let action: RemoteAction = { blobs: [], diffId: step.diffId, created: step.created, ...(step.durationMs !== undefined ? { duration_ms: step.durationMs } : {}) };
    if (layer) {
      const file = store.blobPath(layer.digest);
      const blake3 = hashFile(file).digest.toString("hex");
      action = { ...action, blobs: [blake3], layer: { blake3, digest: layer.digest, size: layer.size, mediaType: layer.mediaType } };
      layers.set(layer.digest, { mediaType: layer.mediaType, digest: layer.digest, size: layer.size, file });
    }
    results[key] = options.signer ? options.signer.sign(key, action) : action;
  }
  for (const layer of layers.values()) await place.put(layer, layer.file);
  const staging = store.tempDir("cache-export");
  try {
    const recordsFile = join(staging, "records.json");
    writeFileSync(recordsFile, JSON.stringify({ version: 1, results }));
    const config: Descriptor = { mediaType: CACHE_CONFIG_TYPE, digest: await sha256File(recordsFile), size: Bun.file(recordsFile).size };
    await place.put(config, recordsFile);
    const manifest = { schemaVersion: 2, mediaType: MANIFEST_TYPE, artifactType: CACHE_ARTIFACT_TYPE, config, layers: [...layers.values()].map(({ file: _, ...d }) => d) };
    await place.putManifest(Buffer.from(JSON.stringify(manifest)));
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  return Object.keys(results).length;
}
