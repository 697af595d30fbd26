/**
 * Signatures as cosign writes them, with a key of one's own (no transparency log): ECDSA P-256
 * over SHA-256, DER-encoded, over cosign's simple-signing payload, kept as a one-layer manifest
 * under the tag `sha256-<hex>.sig`; attestations as DSSE envelopes under `sha256-<hex>.att`.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { UserError } from "../errors.ts";
import type { LocalStore } from "../cache/store.ts";
import type { Descriptor } from "../image/layout.ts";
import { parseReference } from "../image/reference.ts";
import { storeManifest, PREDICATE_TYPE_ANNOTATION, type Attachment } from "./manifest.ts";
import { IN_TOTO_PAYLOAD_TYPE, preAuthEncoding, type DsseEnvelope, type Statement } from "./statement.ts";

export const SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature";
export const SIMPLE_SIGNING_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json";
export const DSSE_TYPE = "application/vnd.dsse.envelope.v1+json";
export const COSIGN_SIGNATURE_TYPE = "cosign container image signature";

export class SignError extends UserError {}

/** The repository a signature names: `registry/name` of a reference, as cosign writes it. */
export function signatureIdentity(tag: string): string {
  const ref = parseReference(tag);
  return `${ref.registry}/${ref.repository}`;
}

/** `sha256-<hex>.sig` / `.att`: where cosign looks for an image's signatures and attestations. */
export const signatureTag = (digest: string, kind: "sig" | "att") => `${digest.replace(":", "-")}.${kind}`;

/** A new ECDSA P-256 key pair: PKCS#8 PEM (private) and SPKI PEM (public), what cosign reads. */
export function generateEcdsaKey(): { privatePem: string; publicPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return { privatePem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(), publicPem: publicKey.export({ type: "spki", format: "pem" }).toString() };
}

function checkCurve(key: KeyObject, file: string) {
  if (key.asymmetricKeyType !== "ec" || key.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
    throw new SignError(`${file}: an ECDSA P-256 key is needed (this is ${key.asymmetricKeyType}${key.asymmetricKeyDetails?.namedCurve ? ` ${key.asymmetricKeyDetails.namedCurve}` : ""}); make one with memobuild key generate --type ecdsa-p256`);
  }
}

/** A key file's bytes: a file that cannot be read is said so, apart from one that is not a key. */
function readKeyFile(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new SignError(`${file}: cannot be read (${(error as Error).message})`);
  }
}

export function loadSigningKey(file: string): KeyObject {
  let key: KeyObject;
  const pem = readKeyFile(file);
  try {
    key = createPrivateKey(pem);
  } catch (error) {
    throw new SignError(`${file}: not a PEM private key (${(error as Error).message})`);
  }
  checkCurve(key, file);
  return key;
}

/** A public key file: SPKI PEM, or the private key's file (its public half). */
export function loadPublicKey(file: string): KeyObject {
  let key: KeyObject;
  const pem = readKeyFile(file);
  try {
    key = createPublicKey(pem);
  } catch (error) {
    throw new SignError(`${file}: not a PEM public key (${(error as Error).message})`);
  }
  checkCurve(key, file);
  return key;
}

export const signBytes = (key: KeyObject, bytes: Buffer) => sign("sha256", bytes, key);
export const verifyBytes = (key: KeyObject, bytes: Buffer, signature: Buffer) => verify("sha256", bytes, key, signature);

/** cosign's simple-signing payload for `digest` of the repository `identity` (registry/name). */
export function simpleSigningPayload(identity: string, digest: string): Buffer {
  return Buffer.from(JSON.stringify({ critical: { identity: { "docker-reference": identity }, image: { "docker-manifest-digest": digest }, type: COSIGN_SIGNATURE_TYPE }, optional: null }));
}

/** A manifest of one or more signed layers, as cosign stores signatures and attestations. */
function signatureManifest(store: LocalStore, layers: Descriptor[]): Attachment {
  // cosign's config: no platform, the layers as diff IDs, the zero time (nothing here has a date).
  const zero = "0001-01-01T00:00:00Z";
  const config = { architecture: "", created: zero, history: [{ created: zero }], os: "", config: {}, rootfs: { type: "layers", diff_ids: layers.map((l) => l.digest) } };
  return storeManifest(store, config, layers);
}

/** The `.sig` manifest for the image `digest`. */
export function imageSignature(store: LocalStore, key: KeyObject, identity: string, digest: string): Attachment {
  const payload = simpleSigningPayload(identity, digest);
  const blob = store.putBlob(payload);
  const signature = signBytes(key, payload).toString("base64");
  return signatureManifest(store, [{ mediaType: SIMPLE_SIGNING_TYPE, digest: blob.digest, size: blob.size, annotations: { [SIGNATURE_ANNOTATION]: signature } }]);
}

export function dsseEnvelope(key: KeyObject, statement: Statement): DsseEnvelope {
  const payload = Buffer.from(JSON.stringify(statement));
  const sig = signBytes(key, preAuthEncoding(IN_TOTO_PAYLOAD_TYPE, payload)).toString("base64");
  return { payloadType: IN_TOTO_PAYLOAD_TYPE, payload: payload.toString("base64"), signatures: [{ keyid: "", sig }] };
}

/** The `.att` manifest: each statement as a DSSE envelope layer (the signature is inside it). */
export function signedAttestations(store: LocalStore, key: KeyObject, statements: Statement[]): Attachment {
  const layers = statements.map((s): Descriptor => {
    const blob = store.putBlob(JSON.stringify(dsseEnvelope(key, s)));
    return { mediaType: DSSE_TYPE, digest: blob.digest, size: blob.size, annotations: { [SIGNATURE_ANNOTATION]: "", predicateType: s.predicateType, [PREDICATE_TYPE_ANNOTATION]: s.predicateType } };
  });
  return signatureManifest(store, layers);
}

/** A DSSE envelope's statement, when one of its signatures verifies with `key`. */
export function openEnvelope(key: KeyObject, envelope: DsseEnvelope): Statement | undefined {
  const payload = Buffer.from(envelope.payload ?? "", "base64");
  const signed = envelope.signatures?.some((s) => verifyBytes(key, preAuthEncoding(envelope.payloadType, payload), Buffer.from(s.sig, "base64")));
  return signed ? (JSON.parse(payload.toString("utf8")) as Statement) : undefined;
}
