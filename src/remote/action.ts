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
