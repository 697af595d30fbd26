/**
 * Exporters: an image from the local store written as an OCI layout directory, an OCI
 * archive (that layout in a tar) or a Docker archive (what `docker load` reads).
 *
 * Layers stay uncompressed in the store; an export compresses them (gzip by default, or
 * uncompressed), once per layer: the compressed blob is cached in the store. The exported
 * manifest names the compressed layers, so its digest is the one a registry would see.
 */
import { closeSync, lstatSync, mkdirSync, openSync, readFileSync, readSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import type { LocalStore } from "../cache/store.ts";
import { OutputError, STDOUT, type Compression, type LayerCompression, type OutputSpec } from "./output-spec.ts";
import { compressLayer } from "../snapshot/pack.ts";
import { MEDIA, REF_NAME, type Descriptor, type Index, type Manifest, type StoredImage } from "./layout.ts";
import { familiarReference } from "./reference.ts";
import { TarWriter } from "../sys/tar.ts";
import { writeAll } from "../util/write-all.ts";
import { writeFileAtomic } from "../util/host-file.ts";
import { sha256File } from "../hash/sha256.ts";

export { OutputError, parseOutputSpec, type Compression, type LayerCompression, type OutputSpec } from "./output-spec.ts";

/** The layer's blob in `compression`, compressing it (once) if needed. */
async function layerIn(store: LocalStore, layer: Descriptor, diffId: string, compression: LayerCompression): Promise<Descriptor> {
  // Compressing a damaged blob would give a new blob with a valid digest: check the source first.
  await store.checkBlob(layer.digest);
  const out = await exportedLayer(store, layer, diffId, compression);
  await store.checkBlob(out.digest);
  return out;
}

const kindOf = (mediaType: string): Compression => (mediaType.endsWith("gzip") ? "gzip" : mediaType.endsWith("zstd") ? "zstd" : "uncompressed");
const MEDIA_OF: Record<Compression, string> = { gzip: MEDIA.layerGzip, zstd: MEDIA.layerZstd, uncompressed: MEDIA.layerTar };

/**
 * Layers made here are plain tars, compressed on export (once per compression and level, then
 * reused). A layer that came compressed (a pulled or imported base) stays as it is, unless the
 * output is uncompressed or `force-compression=true` asks for the output's compression, as with
 * BuildKit.
 */
async function exportedLayer(store: LocalStore, layer: Descriptor, diffId: string, { compression, level, force }: LayerCompression): Promise<Descriptor> {
  const kind = kindOf(layer.mediaType);
  if (kind === compression) return { mediaType: MEDIA_OF[kind], digest: layer.digest, size: layer.size };
  if (kind !== "uncompressed" && compression !== "uncompressed" && !force) return { mediaType: MEDIA_OF[kind], digest: layer.digest, size: layer.size };
  const plain = kind === "uncompressed" ? layer : await plainLayer(store, layer, diffId);
  if (compression === "uncompressed") return plain;
  const name = level === undefined ? compression : `${compression}-${level}`;
  const cached = store.compressedLayer(diffId, name);
  if (cached && store.hasBlob(cached.digest)) return { mediaType: MEDIA_OF[compression], digest: cached.digest, size: cached.size };
  const staging = store.tempDir("compress");
  try {
    const file = join(staging, `layer.tar.${compression}`);
    const { digest, size } = await compressLayer(store.blobPath(plain.digest), file, compression, level);
    store.adoptBlob(file, digest);
    store.recordCompressedLayer(diffId, name, digest, size);
    return { mediaType: MEDIA_OF[compression], digest, size };
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

/** A gzip or zstd layer (pulled or imported) as a plain tar: its blob is named by the diff ID. */
async function plainLayer(store: LocalStore, layer: Descriptor, diffId: string): Promise<Descriptor> {
  if (!store.hasBlob(diffId)) {
    const staging = store.tempDir("decompress");
    try {
      const file = join(staging, "layer.tar");
      const { createReadStream, createWriteStream } = await import("node:fs");
      const { pipeline } = await import("node:stream/promises");
      const { createGunzip, createZstdDecompress } = await import("node:zlib");
      await pipeline(createReadStream(store.blobPath(layer.digest)), kindOf(layer.mediaType) === "zstd" ? createZstdDecompress() : createGunzip(), createWriteStream(file));
      if ((await sha256File(file)) !== diffId) throw new OutputError(`layer ${layer.digest} does not decompress to its diff ID ${diffId}`);
      store.adoptBlob(file, diffId);
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
  }
  return { mediaType: MEDIA.layerTar, digest: diffId, size: store.blobSize(diffId) };
}

export interface ExportedImage {
  manifestDigest: string;
  manifestSize: number;
  manifest: Manifest;
  /** Every blob the export needs: layers, config, manifest. */
  blobs: string[];
}

/** Prepares the manifest an export writes (compressing layers as asked). */
export async function prepareExport(store: LocalStore, image: StoredImage, compression: LayerCompression | Compression): Promise<ExportedImage> {
  if (typeof compression === "string") compression = { compression };
  const layers = await Promise.all(image.manifest.layers.map((layer, i) => layerIn(store, layer, image.config.rootfs.diff_ids[i], compression)));
  const manifest: Manifest = { ...image.manifest, layers };
  const { digest, size } = store.putBlob(JSON.stringify(manifest));
  return { manifestDigest: digest, manifestSize: size, manifest, blobs: [...layers.map((l) => l.digest), manifest.config.digest, digest] };
}

function platformOf(image: StoredImage) {
  return { architecture: image.config.architecture, os: image.config.os, ...(image.config.variant ? { variant: image.config.variant } : {}) };
}

/**
 * Manifests an export writes beside the image (attestations, signatures): each an index entry and
 * every blob (in the store) it needs. Made once the exported manifest, and so its digest, is known.
 */
export interface Extra {
  descriptor: Descriptor;
  blobs: string[];
}
export type Extras = (exported: ExportedImage) => Promise<Extra[]>;

function indexFor(image: StoredImage, exported: ExportedImage, tags: string[], extras: Extra[] = []): Index {
  const descriptor: Descriptor = { mediaType: MEDIA.manifest, digest: exported.manifestDigest, size: exported.manifestSize, platform: platformOf(image) };
  const manifests = tags.length ? tags.map((tag) => ({ ...descriptor, annotations: { [REF_NAME]: familiarReference(tag) } })) : [descriptor];
  return { schemaVersion: 2, mediaType: MEDIA.index, manifests: [...manifests, ...extras.map((e) => e.descriptor)] };
}

const blobsWith = (exported: ExportedImage, extras: Extra[]) => [...new Set([...exported.blobs, ...extras.flatMap((e) => e.blobs)])];

/**
 * `type=oci`: an OCI image layout directory. Each file is written beside its name and renamed
 * over it (writeFileAtomic): a link planted at a blob's name or at index.json is replaced, never
 * written through. A blob already there as a regular file is kept (a layout is content-addressed).
 */
export async function exportOciLayout(store: LocalStore, image: StoredImage, dest: string, tags: string[], compression: LayerCompression | Compression = "gzip", extras?: Extras): Promise<ExportedImage> {
  const exported = await prepareExport(store, image, compression);
  const extra = (await extras?.(exported)) ?? [];
  writeLayout(store, dest, indexFor(image, exported, tags, extra), blobsWith(exported, extra));
  return exported;
}

/** An OCI layout at `dest` whose index.json is `index`, holding `blobs` from the store. */
function writeLayout(store: LocalStore, dest: string, index: Index, blobs: string[]) {
  mkdirSync(dest, { recursive: true });
  // Files are renamed into these directories: a link committed in their place (`blobs -> /etc/cron.d`) would take them elsewhere.
  for (const dir of ["blobs", "blobs/sha256"]) {
    const stat = lstatSync(join(dest, dir), { throwIfNoEntry: false });
    if (!stat) mkdirSync(join(dest, dir));
    else if (!stat.isDirectory()) throw new OutputError(`--output type=oci,dest=${dest}: ${dir} is not a directory (a symbolic link is not followed)`);
  }
  for (const digest of blobs) {
    const target = join(dest, "blobs/sha256", digest.slice(7));
    if (!lstatSync(target, { throwIfNoEntry: false })?.isFile()) writeFileAtomic(target, (fd) => copyFileInto(store.blobPath(digest), fd));
  }
  writeFileAtomic(join(dest, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  writeFileAtomic(join(dest, "index.json"), JSON.stringify(index));
}

/** An OCI archive: the layout whose index.json is `index`, as one tar. */
function writeLayoutTar(store: LocalStore, dest: string, index: Index, blobs: string[]) {
  writeTar(dest, [
    { name: "oci-layout", source: Buffer.from(JSON.stringify({ imageLayoutVersion: "1.0.0" })) },
    { name: "index.json", source: Buffer.from(JSON.stringify(index)) },
    ...blobs.map((digest) => ({ name: `blobs/sha256/${digest.slice(7)}`, source: store.blobPath(digest) })),
  ]);
}

export interface ExportedIndex {
  /** The digest of the image index as written (its manifests name the exported, compressed layers). */
  indexDigest: string;
  indexSize: number;
  /** The exported manifest of each platform's image, in the order given. */
  manifests: ExportedImage[];
  blobs: string[];
}

/** `--annotation` of an image index (buildx's index, manifest-descriptor and index-descriptor types). */
export interface IndexAnnotations {
  index?: Record<string, string>;
  /** Each platform's entry in the index, in the order of the images. */
  manifests?: (Record<string, string> | undefined)[];
  /** The index's entry in an OCI layout's index.json. */
  descriptor?: Record<string, string>;
}

const some = (annotations?: Record<string, string>) => (annotations && Object.keys(annotations).length ? { annotations } : {});

/**
 * The image index an export writes for a multi-platform image: one exported manifest per
 * platform, then what `extras` (one per image: its attestations) add about each, as BuildKit
 * lays them out.
 */
export async function prepareIndexExport(store: LocalStore, images: StoredImage[], compression: LayerCompression | Compression, extras?: Extras[], annotations: IndexAnnotations = {}): Promise<ExportedIndex & { extras: Extra[] }> {
  const manifests = await Promise.all(images.map((image) => prepareExport(store, image, compression)));
  const added = (await Promise.all(manifests.map(async (m, i) => (await extras?.[i]?.(m)) ?? []))).flat();
  const index: Index = {
    schemaVersion: 2,
    mediaType: MEDIA.index,
    manifests: [...manifests.map((m, i) => ({ mediaType: MEDIA.manifest, digest: m.manifestDigest, size: m.manifestSize, platform: platformOf(images[i]!), ...some(annotations.manifests?.[i]) })), ...added.map((e) => e.descriptor)],
    ...some(annotations.index),
  };
  const { digest, size } = store.putBlob(JSON.stringify(index));
  return { indexDigest: digest, indexSize: size, manifests, extras: added, blobs: [...new Set([...manifests.flatMap((m) => m.blobs), ...added.flatMap((e) => e.blobs), digest])] };
}

/**
 * `type=oci` and `type=oci-archive` of a multi-platform image, as BuildKit writes them: the
 * layout's index.json names the image index (once per name), which names each platform's manifest.
 * `beside` adds entries to index.json once the index's digest is known (signatures, named by
 * their cosign tags: they are about the index and its manifests, so they cannot be in it).
 */
export async function exportImageIndex(store: LocalStore, images: StoredImage[], output: Extract<OutputSpec, { type: "oci" | "oci-archive" }>, tags: string[], extras?: Extras[], beside?: (indexDigest: string) => Extra[], annotations: IndexAnnotations = {}): Promise<ExportedIndex> {
  const exported = await prepareIndexExport(store, images, output, extras, annotations);
  const descriptor: Descriptor = { mediaType: MEDIA.index, digest: exported.indexDigest, size: exported.indexSize, ...some(annotations.descriptor) };
  const entries = tags.length ? tags.map((tag) => ({ ...descriptor, annotations: { ...annotations.descriptor, [REF_NAME]: familiarReference(tag) } })) : [descriptor];
  const added = beside?.(exported.indexDigest) ?? [];
  const top: Index = { schemaVersion: 2, mediaType: MEDIA.index, manifests: [...entries, ...added.map((e) => e.descriptor)] };
  const blobs = [...new Set([...exported.blobs, ...added.flatMap((e) => e.blobs)])];
  if (output.type === "oci" && output.dest !== STDOUT) writeLayout(store, output.dest, top, blobs);
  else writeLayoutTar(store, output.dest, top, blobs);
  return exported;
}

/** Appends the whole of `source` (a store blob) to the open file `fd`. */
function copyFileInto(source: string, fd: number) {
  const input = openSync(source, "r");
  try {
    const buffer = Buffer.allocUnsafe(1024 * 1024);
    for (let n; (n = readSync(input, buffer, 0, buffer.length, null)) > 0; ) writeAll(fd, buffer.subarray(0, n));
  } finally {
    closeSync(input);
  }
}

/** Writes a tar of named members whose content comes from files or bytes, streaming files; whole or not at all. */
function writeTar(file: string, members: { name: string; source: string | Buffer }[]) {
  if (file === STDOUT) return writeTarTo(1, members);
  writeFileAtomic(file, (fd) => writeTarTo(fd, members));
}

function writeTarTo(fd: number, members: { name: string; source: string | Buffer }[]) {
  const writer = new TarWriter((chunk) => writeAll(fd, chunk));
  const buffer = Buffer.allocUnsafe(1024 * 1024);
  for (const member of members) {
    const size = typeof member.source === "string" ? statSync(member.source).size : member.source.length;
    writer.add({ name: member.name, type: "file", mode: 0o644, uid: 0, gid: 0, size, mtime: 0 });
    if (typeof member.source === "string") {
      const input = openSync(member.source, "r");
      try {
        let offset = 0;
        while (offset < size) {
          const n = readSync(input, buffer, 0, Math.min(buffer.length, size - offset), offset);
          if (n === 0) throw new Error(`${member.source} shrank while it was being exported`);
          writer.content(n === buffer.length ? buffer : buffer.subarray(0, n));
          offset += n;
        }
      } finally {
        closeSync(input);
      }
    } else writer.content(member.source);
    writer.pad(size);
  }
  writer.finish();
}

/** `type=oci-archive`: the OCI layout, as a tar file. */
export async function exportOciArchive(store: LocalStore, image: StoredImage, dest: string, tags: string[], compression: LayerCompression | Compression = "gzip", extras?: Extras): Promise<ExportedImage> {
  const exported = await prepareExport(store, image, compression);
  const extra = (await extras?.(exported)) ?? [];
  writeLayoutTar(store, dest, indexFor(image, exported, tags, extra), blobsWith(exported, extra));
  return exported;
}

/** `type=docker-archive`: what `docker save` writes and `docker load` reads (plain layers). */
export async function exportDockerArchive(store: LocalStore, image: StoredImage, dest: string, tags: string[]): Promise<ExportedImage> {
  const exported = await prepareExport(store, image, "uncompressed");
  const configHex = image.manifest.config.digest.slice(7);
  const layers = exported.manifest.layers.map((layer) => ({ name: `${layer.digest.slice(7)}/layer.tar`, source: store.blobPath(layer.digest) }));
  const manifest = [{ Config: `${configHex}.json`, RepoTags: tags.map(familiarReference), Layers: layers.map((l) => l.name) }];
  writeTar(dest, [
    { name: "manifest.json", source: Buffer.from(JSON.stringify(manifest)) },
    { name: `${configHex}.json`, source: readFileSync(store.blobPath(image.manifest.config.digest)) },
    ...layers,
  ]);
  return exported;
}

export type ImageOutput = Extract<OutputSpec, { type: "oci" | "oci-archive" | "docker-archive" }>;

/** `extras` go into OCI layouts and archives; a docker archive has no index to hold them. */
export async function exportImage(store: LocalStore, image: StoredImage, output: ImageOutput, tags: string[], extras?: Extras): Promise<ExportedImage> {
  switch (output.type) {
    case "oci":
      // A directory cannot go to stdout: the layout goes there as its archive, as buildx's does.
      if (output.dest === STDOUT) return exportOciArchive(store, image, output.dest, tags, output, extras);
      return exportOciLayout(store, image, output.dest, tags, output, extras);
    case "oci-archive":
      return exportOciArchive(store, image, output.dest, tags, output, extras);
    case "docker-archive":
      return exportDockerArchive(store, image, output.dest, tags);
  }
}
