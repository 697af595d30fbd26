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
import { formatPlatform, hostPlatform, platformMatches, type Platform } from "../frontend/platform.ts";
import { prepareExport, prepareIndexExport, type Extra, type Extras, type IndexAnnotations, type LayerCompression } from "../image/export.ts";
import { loadImage, MEDIA, type StoredImage } from "../image/layout.ts";
import { parseImageConfig, parseImageIndex, parseImageManifest } from "../image/validate.ts";
import { formatReference, parseReference } from "../image/reference.ts";
import { RegistryClient, RegistryError, type RegistryOptions } from "./client.ts";
import { limit, limitHint } from "../util/limits.ts";

const INDEX_TYPES = new Set(["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"]);

/**
 * Pulls `refText` into the store and names it there; returns the stored image. From an index,
 * the image of `platform` (this machine's by default) is pulled; when a platform is asked for
 * (a build for other platforms), the name goes to the registry's index, so each platform's
 * build finds its own image there (pulled as it is needed).
 */
export async function pullImage(store: LocalStore, refText: string, options: RegistryOptions, onProgress: (line: string) => void = () => {}, asked?: Platform): Promise<StoredImage> {
  const ref = parseReference(refText);
  const client = new RegistryClient(ref.registry, options);
  const platform = asked ?? hostPlatform();
  let manifest = await client.getManifest(ref.repository, ref.digest ?? ref.tag!);
  let index: typeof manifest | undefined;
  if (INDEX_TYPES.has(manifest.mediaType)) {
    const parsed = parseImageIndex(manifest.bytes, `${refText}: the image index`);
    const chosen = parsed.manifests.find((m) => !INDEX_TYPES.has(m.mediaType) && platformMatches(platform, m.platform));
    if (!chosen) {
      const offered = parsed.manifests.flatMap((m) => (m.platform ? [formatPlatform(m.platform)] : [])).join(", ");
      throw new RegistryError(`${refText} has no image for ${formatPlatform(platform)} (it has: ${offered})`);
    }
    if (asked) index = manifest;
    manifest = await client.getManifest(ref.repository, chosen.digest);
  }
  const parsed = parseImageManifest(manifest.bytes, refText);

  const staging = store.tempDir("pull");
  try {
    const configFile = join(staging, "config");
    if (parsed.config.size > limit("configBytes")) throw new RegistryError(`${refText}: its config is ${parsed.config.size} bytes, over the limit ${limitHint("configBytes")}`);
    await client.getBlob(ref.repository, parsed.config.digest, configFile, parsed.config.size);
    const config = parseImageConfig(readFileSync(configFile), `${refText}: config ${parsed.config.digest}`, parsed.layers.length);
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
    if (index && store.putBlob(index.bytes).digest !== index.digest) throw new RegistryError("internal error: the stored index changed");
    store.setImage(name, index?.digest ?? manifest.digest);
    return loadImage(store, manifest.digest);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

/** Pushes a stored image to `refText` (its tag, or its digest); returns the manifest digest. */
export async function pushImage(store: LocalStore, image: StoredImage, refText: string, options: RegistryOptions, onProgress: (line: string) => void = () => {}, extras?: Extras, compression: LayerCompression = { compression: "gzip" }): Promise<string> {
  const ref = parseReference(refText);
  const client = new RegistryClient(ref.registry, options);
  const exported = await prepareExport(store, image, compression);
  const blobs = [...exported.manifest.layers.map((l) => l.digest), exported.manifest.config.digest];
  for (const digest of blobs) {
    const from = store.layerSources(digest).find((s) => s.registry === ref.registry && s.repository !== ref.repository);
    const result = await client.putBlob(ref.repository, digest, store.blobPath(digest), from?.repository);
    onProgress(`${digest.slice(0, 19)}: ${result}`);
    store.recordLayerSource(digest, ref.registry, ref.repository);
  }
  const manifestBytes = store.readBlob(exported.manifestDigest);
  const extra = (await extras?.(exported)) ?? [];
  if (!extra.length) return client.putManifest(ref.repository, ref.digest ?? ref.tag!, manifestBytes, MEDIA.manifest);
  // With attestations the name points to an index of the image and them, as BuildKit pushes it.
  await client.putManifest(ref.repository, exported.manifestDigest, manifestBytes, MEDIA.manifest);
  for (const attachment of extra) await pushExtra(store, client, ref.repository, attachment.descriptor.digest, attachment);
  const { architecture, os, variant } = image.config;
  const imageDescriptor = { mediaType: MEDIA.manifest, digest: exported.manifestDigest, size: exported.manifestSize, platform: { architecture, os, ...(variant ? { variant } : {}) } };
  const index = { schemaVersion: 2, mediaType: MEDIA.index, manifests: [imageDescriptor, ...extra.map((e) => e.descriptor)] };
  return client.putManifest(ref.repository, ref.digest ?? ref.tag!, Buffer.from(JSON.stringify(index)), MEDIA.index);
}

/**
 * Pushes a multi-platform image: each platform's blobs and manifest (by digest), then the image
 * index under `refText`'s tag, as buildx pushes one; returns the index digest.
 */
export async function pushImageIndex(store: LocalStore, images: StoredImage[], refText: string, options: RegistryOptions, onProgress: (line: string) => void = () => {}, compression: LayerCompression = { compression: "gzip" }, extras?: Extras[], annotations?: IndexAnnotations): Promise<string> {
  const ref = parseReference(refText);
  const client = new RegistryClient(ref.registry, options);
  const exported = await prepareIndexExport(store, images, compression, extras, annotations);
  for (const manifest of exported.manifests) {
    for (const digest of [...manifest.manifest.layers.map((l) => l.digest), manifest.manifest.config.digest]) {
      const from = store.layerSources(digest).find((s) => s.registry === ref.registry && s.repository !== ref.repository);
      const result = await client.putBlob(ref.repository, digest, store.blobPath(digest), from?.repository);
      onProgress(`${digest.slice(0, 19)}: ${result}`);
      store.recordLayerSource(digest, ref.registry, ref.repository);
    }
    await client.putManifest(ref.repository, manifest.manifestDigest, store.readBlob(manifest.manifestDigest), MEDIA.manifest);
  }
  // Each platform's attestations, by digest, before the index that names them.
  for (const attachment of exported.extras) await pushExtra(store, client, ref.repository, attachment.descriptor.digest, attachment);
  return client.putManifest(ref.repository, ref.digest ?? ref.tag!, store.readBlob(exported.indexDigest), MEDIA.index);
}

/** Pushes a stored manifest and its blobs to `repository`, naming it `reference` (a tag or its digest). */
export async function pushExtra(store: LocalStore, client: RegistryClient, repository: string, reference: string, extra: Extra): Promise<string> {
  for (const digest of extra.blobs) if (digest !== extra.descriptor.digest) await client.putBlob(repository, digest, store.blobPath(digest));
  return client.putManifest(repository, reference, store.readBlob(extra.descriptor.digest), extra.descriptor.mediaType);
}

/** Pushes a stored manifest (a signature, say) into the repository of `refText`, under `tag`. */
export async function pushTagged(store: LocalStore, refText: string, tag: string, extra: Extra, options: RegistryOptions): Promise<string> {
  const ref = parseReference(refText);
  return pushExtra(store, new RegistryClient(ref.registry, options), ref.repository, tag, extra);
}
