/**
 * OCI image layouts and Docker archives in and out of the local store: manifests, the OCI
 * layout exporter (`--output type=oci,dest=DIR`) and `memobuild image import`.
 */
import { UserError } from "../errors.ts";
import { closeSync, existsSync, lstatSync, mkdirSync, openSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { LocalStore } from "../cache/store.ts";
import type { ImageConfig } from "./config.ts";
import { TarReader } from "../sys/tar.ts";
import { sha256Digest, sha256FileSync } from "../hash/sha256.ts";
import { limit, limitHint } from "../util/limits.ts";
import { parseImageConfig, parseImageIndex, parseImageManifest } from "./validate.ts";
import { writeAll } from "../util/write-all.ts";
import { checkRegular, HostFileError, openRegularFile, readBounded } from "../util/host-file.ts";
import { Root } from "../rootfs/root.ts";
import type { SystemError } from "../sys/libc.ts";

export const MEDIA = {
  manifest: "application/vnd.oci.image.manifest.v1+json",
  index: "application/vnd.oci.image.index.v1+json",
  config: "application/vnd.oci.image.config.v1+json",
  layerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  layerZstd: "application/vnd.oci.image.layer.v1.tar+zstd",
  layerTar: "application/vnd.oci.image.layer.v1.tar",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerLayerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
  dockerLayerTar: "application/vnd.docker.image.rootfs.diff.tar",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
} as const;

export type { Descriptor, Index, Manifest } from "./oci-types.ts";
import type { Descriptor, Index, Manifest } from "./oci-types.ts";
import { formatPlatform, hostPlatform, platformMatches, type Platform } from "../frontend/platform.ts";

export const REF_NAME = "org.opencontainers.image.ref.name";

/** An image in the store: its manifest and config, both read and verified. */
export interface StoredImage {
  manifestDigest: string;
  manifest: Manifest;
  config: ImageConfig;
}

/**
 * The image a digest names. A multi-platform image (an index) stands for its manifest for
 * `platform`, this machine's by default, as `docker run` picks one.
 */
export function loadImage(store: LocalStore, manifestDigest: string, platform: Platform = hostPlatform()): StoredImage {
  const manifest = store.readJson<Manifest | Index>(manifestDigest);
  if ("manifests" in manifest) return loadImage(store, platformManifest(store, manifestDigest, manifest, platform), platform);
  if (manifest.mediaType === MEDIA.index || !manifest.layers) throw new Error(`${manifestDigest} is not an image manifest`);
  const config = store.readJson<ImageConfig>(manifest.config.digest);
  if (config.rootfs.diff_ids.length !== manifest.layers.length) {
    throw new Error(`image ${manifestDigest}: the config lists ${config.rootfs.diff_ids.length} layers, the manifest ${manifest.layers.length}`);
  }
  return { manifestDigest, manifest, config };
}

/** The manifest of `index` for `platform`, which the store must hold; an error names the platforms it has. */
function platformManifest(store: LocalStore, digest: string, index: Index, platform: Platform): string {
  const chosen = index.manifests.find((m) => m.mediaType !== MEDIA.index && platformMatches(platform, m.platform));
  if (!chosen) {
    const offered = index.manifests.flatMap((m) => (m.platform ? [formatPlatform(m.platform)] : [])).join(", ") || "none";
    throw new UserError(`image ${digest} has no image for ${formatPlatform(platform)} (it has: ${offered})`);
  }
  if (!store.hasBlob(chosen.digest)) throw new UserError(`image ${digest}: its ${formatPlatform(platform)} image ${chosen.digest} is not in the local store (pull it for that platform)`);
  return chosen.digest;
}

/** Whether a stored image is a multi-platform one (an index). */
export const isIndex = (store: LocalStore, digest: string) => "manifests" in store.readJson<object>(digest);

/** The platforms a stored image (a manifest or an index) has an image for. */
export function imagePlatforms(store: LocalStore, digest: string): Platform[] {
  const blob = store.readJson<Manifest | Index>(digest);
  if (!("manifests" in blob)) {
    const config = store.readJson<ImageConfig>(blob.config.digest);
    return [{ os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) }];
  }
  return blob.manifests.flatMap((m) => (m.platform && m.mediaType !== MEDIA.index && store.hasBlob(m.digest) ? [m.platform] : []));
}

/**
 * A multi-platform image: an OCI index of stored images, one per platform; its digest. The
 * build's `--annotation index:` and `manifest-descriptor:` go in it, so what is exported or
 * pushed from the store later carries them as the build's own outputs did.
 */
export function storeImageIndex(store: LocalStore, images: StoredImage[], annotations: { index?: Record<string, string>; manifests?: (Record<string, string> | undefined)[] } = {}): string {
  const some = (found?: Record<string, string>) => (found && Object.keys(found).length ? { annotations: found } : {});
  const manifests: Descriptor[] = images.map((image, i) => ({
    mediaType: MEDIA.manifest,
    digest: image.manifestDigest,
    size: store.blobSize(image.manifestDigest),
    platform: { architecture: image.config.architecture, os: image.config.os, ...(image.config.variant ? { variant: image.config.variant } : {}) },
    ...some(annotations.manifests?.[i]),
  }));
  return store.putBlob(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.index, manifests, ...some(annotations.index) } satisfies Index)).digest;
}

/**
 * A stored index's platform images (those the store holds, in its order) and its annotations
 * (the index's, and each of those images' entry's), for an export or push of it as it is.
 */
export function storedIndex(store: LocalStore, digest: string): { images: StoredImage[]; annotations: { index?: Record<string, string>; manifests: (Record<string, string> | undefined)[] } } {
  const index = store.readJson<Index>(digest);
  const entries = index.manifests.filter((m) => m.platform && m.mediaType !== MEDIA.index && store.hasBlob(m.digest));
  // Each entry by its own digest: two entries may share a platform (an image and its variant).
  return { images: entries.map((m) => loadImage(store, m.digest, m.platform!)), annotations: { ...(index.annotations ? { index: index.annotations } : {}), manifests: entries.map((m) => m.annotations) } };
}

/**
 * Writes config and manifest blobs for an image whose layers are already in the store.
 * `configBytes` keeps an imported config byte for byte (and so its digest).
 */
export function storeImage(store: LocalStore, config: ImageConfig, layers: Descriptor[], annotations?: Record<string, string>, configBytes?: Buffer): StoredImage {
  const { manifest, descriptor } = storeManifestBlobs(store, configBytes ?? JSON.stringify(config), layers, annotations);
  return { manifestDigest: descriptor.digest, manifest, config };
}

/** Stores a config blob and the OCI manifest naming it and `layers`; the manifest and its descriptor. */
export function storeManifestBlobs(store: LocalStore, configBytes: string | Buffer, layers: Descriptor[], annotations?: Record<string, string>): { manifest: Manifest; descriptor: Descriptor } {
  const configBlob = store.putBlob(configBytes);
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: MEDIA.manifest,
    config: { mediaType: MEDIA.config, digest: configBlob.digest, size: configBlob.size },
    layers,
    ...(annotations ? { annotations } : {}),
  };
  const manifestBlob = store.putBlob(JSON.stringify(manifest));
  return { manifest, descriptor: { mediaType: MEDIA.manifest, digest: manifestBlob.digest, size: manifestBlob.size } };
}

export class ImportError extends UserError {}

/** Writes the tar entry being read to `target`, chunk by chunk; returns its sha256 digest. */
function writeEntry(reader: TarReader, target: string): string {
  const hasher = new Bun.CryptoHasher("sha256");
  const fd = openSync(target, "wx", 0o600);
  try {
    for (const chunk of reader.readContent()) {
      hasher.update(chunk);
      writeAll(fd, chunk);
    }
  } finally {
    closeSync(fd);
  }
  return `sha256:${hasher.digest("hex")}`;
}

/** A JSON member of a docker archive (staged by us under a numbered name), bounded by `limitName`. */
function readSmallFile(path: string, what: string, limitName: "manifestBytes" | "configBytes"): Buffer {
  if (!existsSync(path)) throw new ImportError(`${what} is missing`);
  const fd = openRegularFile(path, { what });
  try {
    return readBounded(fd, limit(limitName), () => tooLarge(what, limitName));
  } finally {
    closeSync(fd);
  }
}

const tooLarge = (what: string, limitName: "manifestBytes" | "configBytes") => new ImportError(`${what} is larger than ${limit(limitName)} bytes ${limitHint(limitName)}`);

/**
 * Opens a file of an OCI layout for reading. A layout is an image's: its names are looked up
 * below the layout's directory without following any link (a link to /dev/zero, a FIFO or a
 * host file makes no sense in a layout), and only a regular file is opened.
 */
function openLayoutFile(layout: Root, name: string, what: string): number {
  let fd: number;
  try {
    fd = layout.openFile(name, false);
  } catch (error) {
    const code = (error as SystemError).code;
    if (code === "ENOENT" || code === "ENOTDIR") throw new ImportError(`${what} is missing`);
    if (code === "ELOOP" || code === "EXDEV") throw new ImportError(`${what} is a symbolic link (or below one): a layout's files are read without following links`);
    throw error;
  }
  try {
    checkRegular(fd, what);
    return fd;
  } catch (error) {
    closeSync(fd);
    throw error instanceof HostFileError ? new ImportError(error.message) : error;
  }
}

/** A small file of a layout (index.json, a manifest, a config): at most `limitName` bytes, whatever stat says. */
function readLayoutFile(layout: Root, name: string, what: string, limitName: "manifestBytes" | "configBytes"): Buffer {
  const fd = openLayoutFile(layout, name, what);
  try {
    return readBounded(fd, limit(limitName), () => tooLarge(what, limitName));
  } finally {
    closeSync(fd);
  }
}

const blobName = (digest: string) => `blobs/${digest.replace(":", "/")}`;

/** Copies a blob of the layout into the store, hashing it in the same pass; kept only when it is `digest` (of at most `size` bytes). */
function importBlob(store: LocalStore, layout: Root, dir: string, digest: string, size: number) {
  if (store.hasBlob(digest)) return;
  const what = `${dir}: blob ${digest}`;
  const fd = openLayoutFile(layout, blobName(digest), what);
  const staging = store.tempDir("import");
  try {
    const actual = sha256FileSync(fd, join(staging, "blob"), size);
    if (actual === undefined) throw new ImportError(`${what} is larger than the ${size} bytes its descriptor declares`);
    if (actual !== digest) throw new ImportError(`blob ${digest} in the layout is corrupt (hashes to ${actual})`);
    store.adoptBlob(join(staging, "blob"), digest);
  } finally {
    closeSync(fd);
    rmSync(staging, { recursive: true, force: true });
  }
}

/** A small JSON blob of a layout (manifest or config), checked against its digest, then parsed. */
function layoutJson<T>(layout: Root, digest: string, what: string, limitName: "manifestBytes" | "configBytes", parse: (bytes: Buffer, what: string) => T): T {
  const bytes = readLayoutFile(layout, blobName(digest), `${what} ${digest}`, limitName);
  const actual = sha256Digest(bytes);
  if (actual !== digest) throw new ImportError(`${what}: blob ${digest} in the layout is corrupt (hashes to ${actual})`);
  return parse(bytes, `${what} ${digest}`);
}

/**
 * Records and unpacks an imported image's layers, each checked against its diff ID (the store
 * never lets an image change what a diff ID it already has stands for).
 */
export async function adoptImageLayers(store: LocalStore, manifest: Manifest, config: ImageConfig) {
  for (const [i, layer] of manifest.layers.entries()) {
    await store.adoptLayer({ diffId: config.rootfs.diff_ids[i], digest: layer.digest, size: layer.size, uncompressedSize: -1, mediaType: layer.mediaType });
  }
}

/**
 * What an import brought in: one image, or a multi-platform one (`digest` names its index in the
 * store) with an image per platform.
 */
export interface ImportedImage {
  digest: string;
  images: StoredImage[];
  refName?: string;
}

/**
 * Imports one image from an OCI layout directory. `refName` selects the manifest by its
 * `org.opencontainers.image.ref.name` (needed when the layout holds several). Every JSON file is
 * validated (and every blob checked against its digest) before anything enters the store. An
 * image index is imported with each platform's image (attestation manifests, platform
 * unknown/unknown, are left out, as everywhere here).
 */
export function importOciLayout(store: LocalStore, dir: string, refName?: string): ImportedImage {
  if (!lstatSync(join(dir, "index.json"), { throwIfNoEntry: false })) throw new ImportError(`${dir} is not an OCI image layout (no index.json)`);
  return Root.with(dir, (layout) => importFromLayout(store, layout, dir, refName), { symlinks: "none" });
}

function importFromLayout(store: LocalStore, layout: Root, dir: string, refName?: string): ImportedImage {
  const indexPath = join(dir, "index.json");
  const index = parseImageIndex(readLayoutFile(layout, "index.json", indexPath, "manifestBytes"), indexPath);
  // Attestation manifests and cosign signatures beside an image are not images to import.
  const images = index.manifests.filter((m) => m.annotations?.["vnd.docker.reference.type"] !== "attestation-manifest" && !/^sha256-[0-9a-f]{64}\.(sig|att)$/.test(m.annotations?.[REF_NAME] ?? ""));
  const candidates = refName ? images.filter((m) => m.annotations?.[REF_NAME] === refName) : images;
  if (candidates.length === 0) {
    const names = index.manifests.map((m) => m.annotations?.[REF_NAME]).filter(Boolean);
    throw new ImportError(`no image named "${refName}" in ${dir} (it has: ${names.join(", ") || "unnamed images"})`);
  }
  const digests = new Set(candidates.map((m) => m.digest));
  if (digests.size > 1) throw new ImportError(`${dir} holds several images; name one: oci:${dir}:NAME`);
  const chosen = candidates[0];
  const named = chosen.annotations?.[REF_NAME];
  if (chosen.mediaType !== MEDIA.index) return { digest: chosen.digest, images: [importManifest(store, layout, dir, chosen)], refName: named };
  const nested = layoutJson(layout, chosen.digest, `${dir}: image index`, "manifestBytes", parseImageIndex);
  const platforms = nested.manifests.filter((m) => m.mediaType !== MEDIA.index && m.platform && m.platform.os !== "unknown");
  if (!platforms.length) throw new ImportError(`${dir}: the image index ${chosen.digest} names no platform's image`);
  const members = platforms.map((entry) => importManifest(store, layout, dir, entry));
  importBlob(store, layout, dir, chosen.digest, chosen.size);
  return { digest: chosen.digest, images: members, refName: named };
}

/** One image manifest of a layout, with its config and layers, into the store. */
function importManifest(store: LocalStore, layout: Root, dir: string, entry: Descriptor): StoredImage {
  const manifest = layoutJson(layout, entry.digest, `${dir}: manifest`, "manifestBytes", parseImageManifest);
  const config = layoutJson(layout, manifest.config.digest, `${dir}: config`, "configBytes", (bytes, what) => parseImageConfig(bytes, what, manifest.layers.length));
  for (const layer of manifest.layers) importBlob(store, layout, dir, layer.digest, layer.size);
  importBlob(store, layout, dir, manifest.config.digest, manifest.config.size);
  importBlob(store, layout, dir, entry.digest, entry.size);
  return { manifestDigest: entry.digest, manifest, config };
}

/** Imports one image from an OCI archive (an OCI layout in a tar). */
export function importOciArchive(store: LocalStore, file: string, refName?: string): ImportedImage {
  const staging = store.tempDir("oci-archive");
  try {
    const reader = new TarReader(file);
    try {
      for (let entry = reader.next(); entry; entry = reader.next()) {
        const name = entry.name.replace(/^\.\//, "");
        if (entry.type === "dir") continue;
        // Only what a layout holds; nothing else is written, so no path can escape.
        if (entry.type !== "file" || !/^(oci-layout|index\.json|blobs\/sha256\/[0-9a-f]{64})$/.test(name)) {
          throw new ImportError(`${file}: unexpected member ${JSON.stringify(name)} in an OCI archive`);
        }
        if (existsSync(join(staging, name))) throw new ImportError(`${file}: member ${JSON.stringify(name)} appears twice`);
        mkdirSync(join(staging, name, ".."), { recursive: true });
        writeEntry(reader, join(staging, name));
      }
    } finally {
      reader.close();
    }
    return importOciLayout(store, staging, refName);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

/** `docker save`'s manifest.json: a list of images, each a config member and layer members. */
export function parseDockerArchiveManifest(bytes: Buffer, what: string): { Config: string; RepoTags: string[]; Layers: string[] } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString("utf8"));
  } catch {
    throw new ImportError(`${what} is not JSON`);
  }
  const entry = (Array.isArray(parsed) ? parsed[0] : undefined) as { Config?: unknown; RepoTags?: unknown; Layers?: unknown } | undefined;
  const strings = (value: unknown) => Array.isArray(value) && value.every((v) => typeof v === "string");
  if (typeof entry?.Config !== "string" || !strings(entry.Layers) || (entry.RepoTags != null && !strings(entry.RepoTags))) {
    throw new ImportError(`${what}: expected [{"Config": NAME, "Layers": [NAME, ...], "RepoTags": [...]}]`);
  }
  const layers = entry.Layers as string[];
  if (layers.length > limit("layers")) throw new ImportError(`${what}: ${layers.length} layers is over the limit ${limitHint("layers")}`);
  return { Config: entry.Config, RepoTags: (entry.RepoTags as string[] | null) ?? [], Layers: layers };
}

/** Imports the first image of a `docker save` archive; returns it and its RepoTags. */
export function importDockerArchive(store: LocalStore, file: string): StoredImage & { repoTags: string[] } {
  const staging = store.tempDir("docker-archive");
  try {
    const reader = new TarReader(file);
    const members = new Map<string, { path: string; digest: string }>();
    try {
      for (let entry = reader.next(); entry; entry = reader.next()) {
        if (entry.type !== "file") continue;
        const name = entry.name.replace(/^\.\//, "");
        // Members are staged under numbered names: a member's own name is never a path here.
        const path = join(staging, `m${members.size}`);
        members.set(name, { path, digest: writeEntry(reader, path) });
      }
    } finally {
      reader.close();
    }
    const manifestFile = members.get("manifest.json")?.path;
    if (!manifestFile) throw new ImportError(`${file} is not a docker archive (no manifest.json)`);
    const entry = parseDockerArchiveManifest(readSmallFile(manifestFile, `${file}: manifest.json`, "manifestBytes"), `${file}: manifest.json`);
    const configFile = members.get(entry.Config)?.path;
    if (!configFile) throw new ImportError(`${file}: config ${entry.Config} is missing`);
    const configBytes = readSmallFile(configFile, `${file}: config ${entry.Config}`, "configBytes");
    const config = parseImageConfig(configBytes, `${file}: config ${entry.Config}`, entry.Layers.length);
    const layers: Descriptor[] = entry.Layers.map((name, i) => {
      const member = members.get(name);
      if (!member) throw new ImportError(`${file}: layer ${name} is missing`);
      if (member.digest !== config.rootfs.diff_ids[i]) throw new ImportError(`${file}: layer ${name} does not match diff ID ${config.rootfs.diff_ids[i]}`);
      // Hashed while it was written: the staged file (on the store's file system) is the blob.
      if (!store.hasBlob(member.digest)) store.adoptBlob(member.path, member.digest);
      return { mediaType: MEDIA.layerTar, digest: member.digest, size: store.blobSize(member.digest) };
    });
    const image = storeImage(store, config, layers, undefined, configBytes);
    return { ...image, repoTags: entry.RepoTags };
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}
