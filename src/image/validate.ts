/**
 * Image JSON from outside (a registry, an OCI layout, an archive) checked field by field before
 * anything is fetched, unpacked or stored for it: digests are sha256, sizes whole numbers, the
 * layer count within the limit, and diff IDs digests. `what` names the input in every message.
 */
import { limit, limitHint } from "../util/limits.ts";
import { UserError } from "../errors.ts";
import type { ImageConfig } from "./config.ts";
import type { Descriptor, Index, Manifest } from "./oci-types.ts";

export class ImageFormatError extends UserError {}

export const SHA256_DIGEST = /^sha256:[0-9a-f]{64}$/;

function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString("utf8"));
  } catch {
    throw new ImageFormatError(`${what} is not JSON`);
  }
}

function checkDescriptor(descriptor: Partial<Descriptor> | undefined, name: string, what: string) {
  if (typeof descriptor?.digest !== "string" || !SHA256_DIGEST.test(descriptor.digest)) {
    throw new ImageFormatError(`${what}: ${name} has digest ${JSON.stringify(descriptor?.digest)}, not a sha256 digest`);
  }
  if (!Number.isSafeInteger(descriptor.size) || descriptor.size! < 0) {
    throw new ImageFormatError(`${what}: ${name} (${descriptor.digest}) has an invalid size ${JSON.stringify(descriptor.size)}`);
  }
}

/** An image index (or Docker manifest list): a list of descriptors. */
export function parseImageIndex(bytes: Buffer, what: string): Index {
  const parsed = parseJson(bytes, what) as Index;
  // JSON that is not an object (null, a number, a string, an array) has no such field either.
  if (!Array.isArray((parsed as Partial<Index> | null)?.manifests)) throw new ImageFormatError(`${what} has no manifests list`);
  parsed.manifests.forEach((descriptor, i) => checkDescriptor(descriptor, `manifest ${i + 1}`, what));
  return parsed;
}

/** An image manifest. */
export function parseImageManifest(bytes: Buffer, what: string): Manifest {
  const parsed = parseJson(bytes, `${what}: the manifest`) as Manifest;
  if (!(parsed as Partial<Manifest> | null)?.config || !Array.isArray(parsed.layers)) {
    throw new ImageFormatError(`${what}: not an image manifest (no config and layers)`);
  }
  checkDescriptor(parsed.config, "config", what);
  parsed.layers.forEach((descriptor, i) => checkDescriptor(descriptor, `layer ${i + 1}`, what));
  if (parsed.layers.length > limit("layers")) throw new ImageFormatError(`${what}: ${parsed.layers.length} layers is over the limit ${limitHint("layers")}`);
  return parsed;
}

/** An image config, checked where MemoBuild relies on it: the diff IDs, one per layer. */
export function parseImageConfig(bytes: Buffer, what: string, layers?: number): ImageConfig {
  const config = parseJson(bytes, what) as ImageConfig;
  const diffIds = config?.rootfs?.diff_ids;
  if (!Array.isArray(diffIds)) throw new ImageFormatError(`${what} has no rootfs.diff_ids list`);
  const bad = diffIds.find((d) => typeof d !== "string" || !SHA256_DIGEST.test(d));
  if (bad !== undefined) throw new ImageFormatError(`${what}: diff ID ${JSON.stringify(bad)} is not a sha256 digest`);
  if (layers !== undefined && diffIds.length !== layers) throw new ImageFormatError(`${what} lists ${diffIds.length} layers, the manifest ${layers}`);
  return config;
}
