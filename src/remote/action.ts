/**
 * A step's result as the remote cache stores it (an "action"), and what makes two of them the
 * same: the server keeps the first result for a key forever and refuses a different one, and a
 * client can insist that a result was signed by a key it trusts.
 *
 * Signatures are Ed25519 (asymmetric on purpose: a laptop that can verify CI's results cannot
 * forge them, unlike a shared HMAC secret). Public keys travel as one line: `ed25519:` and the
 * 32 raw key bytes in base64url.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { blake3Hex } from "../hash/blake3.ts";
import { UserError } from "../errors.ts";

export interface RemoteAction {
  /** BLAKE3 hashes of the blobs the action needs (the server checks they are stored). */
  blobs: string[];
  diffId: string | null;
  layer?: { blake3: string; digest: string; size: number; mediaType: string };
  created: number;
  /** How long the step took where it ran: what a hit saves (a measurement, not part of the result). */
  duration_ms?: number;
  signature?: { signer: string; value: string };
}

const HASH = /^[0-9a-f]{64}$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;
/** What a layer may be: it goes into image manifests as it is, so only what a layer is. */
const LAYER_TYPES: ReadonlySet<unknown> = new Set([
  "application/vnd.oci.image.layer.v1.tar",
  "application/vnd.oci.image.layer.v1.tar+gzip",
  "application/vnd.oci.image.layer.v1.tar+zstd",
  "application/vnd.docker.image.rootfs.diff.tar",
  "application/vnd.docker.image.rootfs.diff.tar.gzip",
]);
/** The largest time a Date holds (ECMAScript: 8.64e15 ms either side of 1970). */
export const MAX_DATE_MS = 8.64e15;

/**
 * An action as JSON, checked field by field, or why it is not one. The server stores only what
 * this returns (so what it verified is what readers get), and the client checks again what a
 * server sends (a lying or old server must cost a miss, never a crash). Unknown fields are
 * dropped; `blobs` defaults to none, `diffId` to null, `created` to 0.
 */
export function validateAction(value: unknown): RemoteAction | string {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return "the action must be a JSON object";
  const parsed = value as Partial<Record<keyof RemoteAction, unknown>>;
  const blobs = parsed.blobs ?? [];
  if (!Array.isArray(blobs) || !blobs.every((b) => typeof b === "string" && HASH.test(b))) return 'the action\'s "blobs" must be a list of BLAKE3 hashes';
  const diffId = parsed.diffId ?? null;
  if (diffId !== null && (typeof diffId !== "string" || !DIGEST.test(diffId))) return 'the action\'s "diffId" must be a sha256 digest or null';
  const layer = parsed.layer as RemoteAction["layer"] | undefined;
  if (layer !== undefined) {
    // Stryker disable next-line ConditionalExpression: a layer that is no object has none of the fields checked next
    const ok = typeof layer === "object" && layer !== null && HASH.test(String(layer.blake3)) && DIGEST.test(String(layer.digest)) && Number.isSafeInteger(layer.size) && layer.size >= 0 && LAYER_TYPES.has(layer.mediaType);
    if (!ok) return 'the action\'s "layer" must have blake3, digest, size and mediaType (a layer media type)';
    // The layer's blob is one the action names, so "every blob it names is stored" covers it.
    if (!blobs.includes(layer.blake3)) return 'the action\'s "layer" blob must be among its "blobs"';
    if (diffId === null) return 'an action with a "layer" needs its "diffId"';
  }
  // Within what a Date can hold: a creation time dates an image (toISOString throws past it).
  if (parsed.created !== undefined && !(Number.isSafeInteger(parsed.created) && Math.abs(parsed.created as number) <= MAX_DATE_MS)) return 'the action\'s "created" must be a whole number of milliseconds';
  if (parsed.duration_ms !== undefined && !(Number.isSafeInteger(parsed.duration_ms) && (parsed.duration_ms as number) >= 0)) return 'the action\'s "duration_ms" must be a whole number of milliseconds';
  const signature = parsed.signature as RemoteAction["signature"] | undefined;
  if (signature !== undefined && (typeof signature !== "object" || signature === null || typeof signature.signer !== "string" || typeof signature.value !== "string")) {
    return 'the action\'s "signature" must name its signer and value as strings';
  }
  return {
    blobs: blobs as string[],
    diffId: diffId as string | null,
    ...(layer ? { layer: { blake3: layer.blake3, digest: layer.digest, size: layer.size, mediaType: layer.mediaType } } : {}),
    created: (parsed.created as number | undefined) ?? 0,
    ...(parsed.duration_ms !== undefined ? { duration_ms: parsed.duration_ms as number } : {}),
    ...(signature ? { signature: { signer: signature.signer, value: signature.value } } : {}),
  };
}

/** What a result IS: every digest it names. Two results for one key differ when this differs. */
export function resultText(key: string, action: Pick<RemoteAction, "blobs" | "diffId" | "layer">): string {
  const layer = action.layer;
  return ["memobuild-result-v1", key, action.diffId ?? "-", layer ? `${layer.digest} ${layer.blake3} ${layer.size} ${layer.mediaType}` : "-", action.blobs.join(",")].join("\n");
}

export function resultDigest(key: string, action: Pick<RemoteAction, "blobs" | "diffId" | "layer">): string {
  return blake3Hex(resultText(key, action));
}

/** The bytes a signature covers: the result and its creation time (which dates the image). */
function signedBytes(key: string, action: RemoteAction): Buffer {
  return Buffer.from(`${resultText(key, action)}\ncreated ${action.created}`);
}

const PUBLIC_PREFIX = "ed25519:";

export function formatPublicKey(key: KeyObject): string {
  return PUBLIC_PREFIX + (key.export({ format: "jwk" }).x as string);
}

export function parsePublicKey(text: string): KeyObject {
  const trimmed = text.trim();
  const raw = trimmed.startsWith(PUBLIC_PREFIX) ? trimmed.slice(PUBLIC_PREFIX.length) : "";
  if (!/^[A-Za-z0-9_-]{43}$/.test(raw)) throw new UserError(`"${trimmed.slice(0, 80)}" is not a MemoBuild public key (ed25519: and 43 base64url characters)`);
  return createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: raw }, format: "jwk" });
}

export class SigningKey {
  readonly publicKey: string;

  private constructor(private readonly key: KeyObject) {
    this.publicKey = formatPublicKey(createPublicKey(key));
  }

  static generate(): { key: SigningKey; pem: string } {
    const { privateKey } = generateKeyPairSync("ed25519");
    return { key: new SigningKey(privateKey), pem: privateKey.export({ format: "pem", type: "pkcs8" }) as string };
  }

  static load(file: string): SigningKey {
    let pem: string;
    try {
      pem = readFileSync(file, "utf8");
    } catch (error) {
      throw new UserError(`cannot read signing key ${file}: ${(error as Error).message}`);
    }
    try {
      const key = createPrivateKey(pem);
      if (key.asymmetricKeyType !== "ed25519") throw new Error(`it is a ${key.asymmetricKeyType} key`);
      return new SigningKey(key);
    } catch (error) {
      throw new UserError(`${file} is not an Ed25519 private key (make one with \`memobuild key generate\`): ${(error as Error).message}`);
    }
  }

  /** Signs any text (a cache-mount version signs its manifest's canonical text). */
  signText(text: string): { signer: string; value: string } {
    return { signer: this.publicKey, value: sign(null, Buffer.from(text), this.key).toString("base64") };
  }

  sign(key: string, action: RemoteAction): RemoteAction {
    return { ...action, signature: { signer: this.publicKey, value: sign(null, signedBytes(key, action), this.key).toString("base64") } };
  }
}

/** The signer's public key when the action carries a signature that verifies; else why not. */
export function checkSignature(key: string, action: RemoteAction): { signer: string } | { error: string } | undefined {
  if (action.signature === undefined) return undefined;
  const { signer, value } = action.signature;
  if (typeof signer !== "string" || typeof value !== "string") return { error: "the signature must name its signer and value as strings" };
  let publicKey: KeyObject;
  try {
    publicKey = parsePublicKey(signer);
  } catch (error) {
    return { error: (error as Error).message };
  }
  const { signature: _, ...unsigned } = action;
  const ok = verify(null, signedBytes(key, unsigned), publicKey, Buffer.from(value, "base64"));
  return ok ? { signer } : { error: `the signature by ${signer} does not verify` };
}

/** The signer of `text` when `signature` verifies for it; else why not. */
export function checkTextSignature(text: string, signature: unknown): { signer: string } | { error: string } {
  const { signer, value } = (signature ?? {}) as { signer?: unknown; value?: unknown };
  if (typeof signer !== "string" || typeof value !== "string") return { error: "the signature must name its signer and value as strings" };
  let publicKey: KeyObject;
  try {
    publicKey = parsePublicKey(signer);
  } catch (error) {
    return { error: (error as Error).message };
  }
  return verify(null, Buffer.from(text), publicKey, Buffer.from(value, "base64")) ? { signer } : { error: `the signature by ${signer} does not verify` };
}
