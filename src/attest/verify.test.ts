/** verify's decisions on an image held in memory: what each mismatch is called. */
import { expect, test } from "bun:test";
import { createPrivateKey, createPublicKey } from "node:crypto";
import { MEDIA, type Descriptor } from "../image/layout.ts";
import { ATTESTATION_MANIFEST, PREDICATE_TYPE_ANNOTATION, REFERENCE_DIGEST, REFERENCE_TYPE } from "./manifest.ts";
import { DSSE_TYPE, dsseEnvelope, generateEcdsaKey, SIGNATURE_ANNOTATION, signatureTag, signBytes, simpleSigningPayload } from "./sign.ts";
import { imageSubject, PROVENANCE_TYPE, sha256Hex, statement } from "./statement.ts";
import { verifyImage, type Fetched, type ImageSource } from "./verify.ts";

const pair = generateEcdsaKey();
const privateKey = createPrivateKey(pair.privatePem);
const publicKey = createPublicKey(pair.publicPem);

interface Options {
  subjectDigest?: string;
  signedAttestations?: boolean;
  signatureIdentity?: string;
  signature?: boolean;
}

/** A layout-like image: manifest, attestation manifest beside it, and its .sig (and .att). */
function memoryImage(options: Options = {}): ImageSource {
  const blobs = new Map<string, Buffer>();
  const manifests = new Map<string, Fetched>();
  const put = (bytes: Buffer | string, mediaType = "application/octet-stream"): Descriptor => {
    const buffer = Buffer.from(bytes);
    const digest = `sha256:${sha256Hex(buffer)}`;
    blobs.set(digest, buffer);
    manifests.set(digest, { digest, mediaType, bytes: buffer });
    return { mediaType, digest, size: buffer.length };
  };
  const manifest = (layers: Descriptor[], tag?: string): Descriptor => {
    const descriptor = put(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.manifest, config: put("{}"), layers }), MEDIA.manifest);
    if (tag) manifests.set(tag, manifests.get(descriptor.digest)!);
    return descriptor;
  };
  const image = manifest([put("layer")]);
  const provenance = statement(imageSubject("app", options.subjectDigest ?? image.digest), PROVENANCE_TYPE, { buildDefinition: {}, runDetails: {} });
  const attestation = manifest([{ ...put(JSON.stringify(provenance)), annotations: { [PREDICATE_TYPE_ANNOTATION]: PROVENANCE_TYPE } }]);
  if (options.signature !== false) {
    const payload = simpleSigningPayload(options.signatureIdentity ?? "registry.test/app", image.digest);
    manifest([{ ...put(payload), annotations: { [SIGNATURE_ANNOTATION]: signBytes(privateKey, payload).toString("base64") } }], signatureTag(image.digest, "sig"));
  }
  if (options.signedAttestations !== false) {
    const envelope = dsseEnvelope(privateKey, provenance);
    manifest([{ ...put(JSON.stringify(envelope)), mediaType: DSSE_TYPE, annotations: { [PREDICATE_TYPE_ANNOTATION]: PROVENANCE_TYPE } }], signatureTag(image.digest, "att"));
  }
  const siblings = [image, { ...attestation, annotations: { [REFERENCE_TYPE]: ATTESTATION_MANIFEST, [REFERENCE_DIGEST]: image.digest } }];
  return {
    name: "memory",
    identity: "registry.test/app",
    top: async () => manifests.get(image.digest)!,
    manifest: async (reference) => manifests.get(reference),
    blob: async (d) => blobs.get(d.digest)!,
    siblings: async () => siblings,
  };
}

test("a signed image with signed provenance verifies", async () => {
  const verified = await verifyImage(memoryImage(), publicKey, { provenance: true });
  expect(verified.identity).toBe("registry.test/app");
  expect(verified.provenance?.predicateType).toBe(PROVENANCE_TYPE);
});

test("no signature, another repository, another subject, unsigned provenance: each named", async () => {
  await expect(verifyImage(memoryImage({ signature: false }), publicKey, { provenance: false })).rejects.toThrow("no signature (no sha256-");
  await expect(verifyImage(memoryImage({ signatureIdentity: "registry.test/other" }), publicKey, { provenance: false })).rejects.toThrow(
    "the signature names the repository registry.test/other, not registry.test/app",
  );
  const elsewhere = `sha256:${"e".repeat(64)}`;
  await expect(verifyImage(memoryImage({ subjectDigest: elsewhere }), publicKey, { provenance: true })).rejects.toThrow(`the provenance's subject is ${elsewhere}, not the image sha256:`);
  await expect(verifyImage(memoryImage({ signedAttestations: false }), publicKey, { provenance: true })).rejects.toThrow("the provenance is not signed");
  // Without --provenance, the attestations are not looked at.
  expect((await verifyImage(memoryImage({ signedAttestations: false }), publicKey, { provenance: false })).provenance).toBeUndefined();
});
