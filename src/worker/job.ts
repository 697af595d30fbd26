/**
 * One remote build on a worker. The definition is the submitter's and untrusted: the context is
 * rebuilt from its blobs inside a private directory through the root-confined file system, and
 * must come out with the digest the submitter stated; base images are laid out from their blobs
 * (each checked against its digest) and given to the build as `--build-context` images, so they
 * never retag this worker's store. The build itself is this binary's own `build`, with the
 * worker's cache, its remote token and its signing key: what it writes under a key is what the
 * worker computed from exactly that key's inputs.
 */
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LocalStore } from "../cache/store.ts";
import { loadContext } from "../context/context.ts";
import { sha256File } from "../hash/sha256.ts";
import { loadImage } from "../image/layout.ts";
import type { RemoteCache } from "../remote/client.ts";
import { parseContextManifest, type BlobRef, type ImageBlobs, type ImageIndexBlobs, type JobDefinition } from "../remote/job-definition.ts";
import { JobsError, type JobsClient } from "../remote/jobs-client.ts";
import { Root } from "../rootfs/root.ts";

export interface JobPlace {
  jobs: JobsClient;
  remote: RemoteCache;
  cacheDir: string;
  /** A private directory for this job; the caller removes it. */
  work: string;
}

/** Fetches a blob into `file`, checked against its BLAKE3 name (and its sha256 digest when it has one). */
async function fetchChecked(place: JobPlace, blob: { blake3: string; size: number; digest?: string }, file: string) {
  if (!(await place.remote.fetchBlob(blob.blake3, file, blob.size))) throw new JobsError(`the server has no blob ${blob.blake3.slice(0, 12)} that the job names`);
  if (blob.digest && (await sha256File(file)) !== blob.digest) throw new JobsError(`blob ${blob.blake3.slice(0, 12)} is not ${blob.digest}`);
}

/** The build context, rebuilt in `work/context`; its digest must be the one the submitter stated. */
export async function materializeContext(place: JobPlace, definition: JobDefinition): Promise<string> {
  return materializeTree(place, definition.context, "context", "the build context");
}

/** Each `--build-context NAME=DIR` the submitter sent, rebuilt as the main context is: `--build-context` flags. */
export async function materializeNamedContexts(place: JobPlace, contexts: JobDefinition["contexts"]): Promise<string[]> {
  const flags: string[] = [];
  let n = 0;
  for (const [name, tree] of Object.entries(contexts)) flags.push(`--build-context=${name}=${await materializeTree(place, tree, `context-${++n}`, `the build context ${name}`)}`);
  return flags;
}

/** A directory sent as a manifest of blobs, rebuilt in `work/NAME`; its digest must be the one stated. */
async function materializeTree(place: JobPlace, tree: { manifest: string; digest: string }, name: string, what: string): Promise<string> {
  const manifestFile = join(place.work, `${name}.json`);
  await fetchChecked(place, { blake3: tree.manifest, size: 256 * 1024 * 1024 }, manifestFile);
  const manifest = parseContextManifest(JSON.parse(readFileSync(manifestFile, "utf8")));
  const dir = join(place.work, name);
  const blobs = join(place.work, `${name}-blobs`);
  mkdirSync(dir);
  mkdirSync(blobs);
  const fetched = new Set<string>();
  const entries = [...manifest.entries].sort((a, b) => (a.path < b.path ? -1 : 1));
  // Opened by hand, not with Root.with: the writes wait for downloads, and the root must stay open.
  const root = Root.open(dir, { symlinks: "none" });
  try {
    for (const entry of entries) {
      const path = Buffer.from(entry.path, "latin1");
      if (entry.type === "dir") root.mkdirAll(path, { mode: entry.mode });
      else if (entry.type === "symlink") root.symlink(Buffer.from(entry.target!, "latin1"), path);
      else {
        const file = join(blobs, entry.blake3!);
        if (!fetched.has(entry.blake3!)) await fetchChecked(place, { blake3: entry.blake3!, size: entry.size! }, file);
        fetched.add(entry.blake3!);
        const fd = openSync(file, "r");
        try {
          root.writeFile(path, { from: fd, size: entry.size! }, { mode: entry.mode });
        } finally {
          closeSync(fd);
        }
      }
    }
    // Modes last: a directory made as a parent first, or written into, keeps its own.
    for (const entry of entries) if (entry.type !== "symlink") root.setAttributes(Buffer.from(entry.path, "latin1"), { mode: entry.mode });
  } finally {
    root.close();
  }
  const context = await loadContext({ contextDir: dir });
  if (context.digest() !== tree.digest) throw new JobsError(`${what} did not arrive as it was sent (digest ${context.digest().slice(0, 12)}, stated ${tree.digest.slice(0, 12)})`);
  return dir;
}

/**
 * Each base image the submitter sent, as an OCI layout of its checked blobs: `--build-context`
 * flags. An index goes with every platform's image it names, so the build picks each stage's
 * platform from it as from its own store.
 */
export async function layOutImages(place: JobPlace, images: Record<string, ImageBlobs>, indexes: Record<string, ImageIndexBlobs> = {}): Promise<string[]> {
  const flags: string[] = [];
  let n = 0;
  const layOut = async (ref: string, blobs: BlobRef[], top: BlobRef, mediaType: string) => {
    const dir = join(place.work, `image-${++n}`);
    mkdirSync(join(dir, "blobs/sha256"), { recursive: true });
    for (const blob of blobs) await fetchChecked(place, blob, join(dir, "blobs/sha256", blob.digest.slice("sha256:".length)));
    writeFileSync(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
    writeFileSync(join(dir, "index.json"), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType, digest: top.digest, size: top.size }] }));
    flags.push(`--build-context=${ref}=oci-layout://${dir}`);
  };
  const imageBlobs = (image: ImageBlobs) => [image.manifest, image.config, ...image.layers];
  for (const [ref, image] of Object.entries(images)) await layOut(ref, imageBlobs(image), image.manifest, image.manifest.mediaType ?? "application/vnd.oci.image.manifest.v1+json");
  for (const [ref, { index, images: members }] of Object.entries(indexes)) await layOut(ref, [...members.flatMap(imageBlobs), index], index, "application/vnd.oci.image.index.v1+json");
  return flags;
}

/** The image the job built, from this worker's store to the server's blobs: what its submitter imports. */
export async function publishImage(place: JobPlace, manifestDigest: string): Promise<ImageBlobs> {
  const store = LocalStore.open(place.cacheDir);
  try {
    const image = loadImage(store, manifestDigest);
    const blob = async (digest: string, mediaType: string): Promise<BlobRef> => ({ blake3: await place.jobs.putBlob(store.blobPath(digest)), digest, size: store.blobSize(digest), mediaType });
    return {
      manifest: await blob(image.manifestDigest, image.manifest.mediaType ?? "application/vnd.oci.image.manifest.v1+json"),
      config: await blob(image.manifest.config.digest, image.manifest.config.mediaType),
      layers: await Promise.all(image.manifest.layers.map((l) => blob(l.digest, l.mediaType))),
    };
  } finally {
    store.close();
  }
}
