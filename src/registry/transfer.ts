/**
 * `image pull` and `image push`: images between a registry and the local store.
 * A pull picks this machine's platform from an index, checks every manifest and blob against
 * its digest (and each layer against its diff ID while unpacking), and keeps the registry's
 * manifest byte for byte, so the stored image has the registry's digest. A push sends gzip
 * layers, skipping blobs the registry has and mounting ones it has in another repository.
 */
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { LocalStore } from "../cache/store.ts";
import { hostPlatform, type Platform } from "../frontend/platform.ts";
import { prepareExport } from "../image/export.ts";
import { loadImage, MEDIA, type Index, type Manifest, type StoredImage } from "../image/layout.ts";
import type { ImageConfig } from "../image/config.ts";
import { formatReference, parseReference } from "../image/reference.ts";
import { RegistryClient, RegistryError, type RegistryOptions } from "./client.ts";
import { limit, limitHint } from "../config/limits.ts";

const INDEX_TYPES = new Set(["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"]);

function matches(platform: Platform, candidate?: { os?: string; architecture?: string; variant?: string }): boolean {
  if (!candidate) return false;
  return candidate.os === platform.os && candidate.architecture === platform.architecture && (!platform.variant || !candidate.variant || candidate.variant === platform.variant);
}

/** Pulls `refText` into the store and names it there; returns the stored image. */
export async function pullImage(store: LocalStore, refText: string, options: RegistryOptions, onProgress: (line: string) => void = () => {}): Promise<StoredImage> {
  const ref = parseReference(refText);
  const client = new RegistryClient(ref.registry, options);
  const platform = hostPlatform();
  let manifest = await client.getManifest(ref.repository, ref.digest ?? ref.tag!);
  if (INDEX_TYPES.has(manifest.mediaType)) {
    let index: Index;
    try {
      index = JSON.parse(manifest.bytes.toString()) as Index;
    } catch {
      throw new RegistryError(`${refText}: the image index is not JSON`);
    }
    if (!Array.isArray(index?.manifests)) throw new RegistryError(`${refText}: the image index has no manifests list`);
    const chosen = index.manifests.find((m) => matches(platform, m.platform));
    if (!chosen) {
      const offered = index.manifests.map((m) => [m.platform?.os, m.platform?.architecture, m.platform?.variant].filter(Boolean).join("/")).join(", ");
      throw new RegistryError(`${refText} has no image for ${platform.os}/${platform.architecture} (it has: ${offered})`);
    }
    if (typeof chosen.digest !== "string" || !DIGEST.test(chosen.digest)) throw new RegistryError(`${refText}: the index names ${JSON.stringify(chosen.digest)}, not a sha256 digest`);
    manifest = await client.getManifest(ref.repository, chosen.digest);
  }
  const parsed = parseImageManifest(manifest.bytes, refText);

  const staging = store.tempDir("pull");
  try {
    const configFile = join(staging, "config");
    if (parsed.config.size > limit("configBytes")) throw new RegistryError(`${refText}: its config is ${parsed.config.size} bytes, over the limit ${limitHint("configBytes")}`);
    await client.getBlob(ref.repository, parsed.config.digest, configFile, parsed.config.size);
    const config = parseImageConfig(readFileSync(configFile), `${refText}: config ${parsed.config.digest}`);
    if (config.rootfs.diff_ids.length !== parsed.layers.length) {
      throw new RegistryError(`${refText}: the config lists ${config.rootfs.diff_ids.length} layers, the manifest ${parsed.layers.length}`);
    }
    store.adoptBlob(configFile, parsed.config.digest);
    // Layers download and unpack concurrently (a few at a time); unpacking checks each layer
    // against its diff ID, so a lying registry fails here, before the image is named.
    const pullLayer = async (i: number) => {
      const layer = parsed.layers[i];
      if (!store.hasBlob(layer.digest)) {
        onProgress(`pulling layer ${i + 1}/${parsed.layers.length} ${layer.digest.slice(0, 19)} (${layer.size} bytes)`);
        const file = join(staging, `layer-${i}`);
        await client.getBlob(ref.repository, layer.digest, file, layer.size);
        store.adoptBlob(file, layer.digest);
      }
      await store.adoptLayer({ diffId: config.rootfs.diff_ids[i], digest: layer.digest, size: layer.size, uncompressedSize: -1, mediaType: layer.mediaType });
      store.recordLayerSource(layer.digest, ref.registry, ref.repository);
    };
    let next = 0;
    const worker = async () => {
      while (next < parsed.layers.length) await pullLayer(next++);
    };
    await Promise.all(Array.from({ length: Math.min(3, parsed.layers.length) }, worker));
    const stored = store.putBlob(manifest.bytes);
    if (stored.digest !== manifest.digest) throw new RegistryError("internal error: the stored manifest changed");
    const name = formatReference(ref);
    store.setImage(name, manifest.digest);
    return loadImage(store, manifest.digest);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

/** Pushes a stored image to `refText` (its tag, or its digest); returns the manifest digest. */
export async function pushImage(store: LocalStore, image: StoredImage, refText: string, options: RegistryOptions, onProgress: (line: string) => void = () => {}): Promise<string> {
  const ref = parseReference(refText);
  const client = new RegistryClient(ref.registry, options);
  const exported = await prepareExport(store, image, "gzip");
  const blobs = [...exported.manifest.layers.map((l) => l.digest), exported.manifest.config.digest];
  for (const digest of blobs) {
    const from = store.layerSources(digest).find((s) => s.registry === ref.registry && s.repository !== ref.repository);
    const result = await client.putBlob(ref.repository, digest, store.blobPath(digest), from?.repository);
    onProgress(`${digest.slice(0, 19)}: ${result}`);
    store.recordLayerSource(digest, ref.registry, ref.repository);
  }
  const manifestBytes = store.readBlob(exported.manifestDigest);
  return client.putManifest(ref.repository, ref.digest ?? ref.tag!, manifestBytes, MEDIA.manifest);
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** A manifest from a registry, checked field by field before anything is fetched for it. */
export function parseImageManifest(bytes: Buffer, what: string): Manifest {
  let parsed: Manifest;
  try {
    parsed = JSON.parse(bytes.toString("utf8")) as Manifest;
  } catch {
    throw new RegistryError(`${what}: the manifest is not JSON`);
  }
  if (typeof parsed !== "object" || parsed === null || !parsed.config || !Array.isArray(parsed.layers)) throw new RegistryError(`${what}: the registry sent something that is not an image manifest`);
  for (const [i, descriptor] of [parsed.config, ...parsed.layers].entries()) {
    const name = i === 0 ? "config" : `layer ${i}`;
    if (typeof descriptor?.digest !== "string" || !DIGEST.test(descriptor.digest)) throw new RegistryError(`${what}: ${name} has digest ${JSON.stringify(descriptor?.digest)}, not a sha256 digest`);
    if (!Number.isSafeInteger(descriptor.size) || descriptor.size < 0) throw new RegistryError(`${what}: ${name} (${descriptor.digest}) has an invalid size ${JSON.stringify(descriptor.size)}`);
  }
  if (parsed.layers.length > limit("layers")) throw new RegistryError(`${what}: ${parsed.layers.length} layers is over the limit ${limitHint("layers")}`);
  return parsed;
}

/** An image config, checked where MemoBuild relies on it: the diff IDs. */
export function parseImageConfig(bytes: Buffer, what: string): ImageConfig {
  let config: ImageConfig;
  try {
    config = JSON.parse(bytes.toString("utf8")) as ImageConfig;
  } catch {
    throw new RegistryError(`${what} is not JSON`);
  }
  const diffIds = config?.rootfs?.diff_ids;
  if (!Array.isArray(diffIds)) throw new RegistryError(`${what} has no rootfs.diff_ids list`);
  const bad = diffIds.find((d) => typeof d !== "string" || !DIGEST.test(d));
  if (bad !== undefined) throw new RegistryError(`${what}: diff ID ${JSON.stringify(bad)} is not a sha256 digest`);
  return config;
}
