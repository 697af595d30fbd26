/**
 * Attestations stored as BuildKit stores them: one manifest per image, beside the image in the
 * index, platform unknown/unknown, annotated with the image manifest it is about; each statement
 * a layer of type application/vnd.in-toto+json naming its predicate type.
 */
import type { LocalStore } from "../cache/store.ts";
import { storeManifestBlobs, type Descriptor } from "../image/layout.ts";
import { IN_TOTO_PAYLOAD_TYPE, type Statement } from "./statement.ts";

export const REFERENCE_TYPE = "vnd.docker.reference.type";
export const REFERENCE_DIGEST = "vnd.docker.reference.digest";
export const ATTESTATION_MANIFEST = "attestation-manifest";
export const PREDICATE_TYPE_ANNOTATION = "in-toto.io/predicate-type";
export const UNKNOWN_PLATFORM = { architecture: "unknown", os: "unknown" } as const;

export interface Attachment {
  /** The entry for the index (or, for a signature, the manifest pushed under its tag). */
  descriptor: Descriptor;
  /** Every blob it needs, its own manifest included, all in the store. */
  blobs: string[];
}

/** An OCI manifest of `layers` with a config naming them, stored; its descriptor and blobs. */
export function storeManifest(store: LocalStore, config: object, layers: Descriptor[], annotations?: Record<string, string>): Attachment {
  const { manifest, descriptor } = storeManifestBlobs(store, JSON.stringify(config), layers, annotations);
  return { descriptor, blobs: [...layers.map((l) => l.digest), manifest.config.digest, descriptor.digest] };
}

/** The attestation manifest for the image `imageDigest`, holding `statements`. */
export function attestationManifest(store: LocalStore, imageDigest: string, statements: Statement[]): Attachment {
  const layers = statements.map((s): Descriptor => {
    const blob = store.putBlob(JSON.stringify(s));
    return { mediaType: IN_TOTO_PAYLOAD_TYPE, digest: blob.digest, size: blob.size, annotations: { [PREDICATE_TYPE_ANNOTATION]: s.predicateType } };
  });
  const config = { architecture: "unknown", os: "unknown", config: {}, rootfs: { type: "layers", diff_ids: layers.map((l) => l.digest) } };
  const stored = storeManifest(store, config, layers);
  return {
    descriptor: { ...stored.descriptor, annotations: { [REFERENCE_DIGEST]: imageDigest, [REFERENCE_TYPE]: ATTESTATION_MANIFEST }, platform: { ...UNKNOWN_PLATFORM } },
    blobs: stored.blobs,
  };
}
