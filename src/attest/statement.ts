/** in-toto statements (v1) and the DSSE envelopes that sign them. */
import { createHash } from "node:crypto";

export const STATEMENT_TYPE = "https://in-toto.io/Statement/v1";
export const IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json";
export const PROVENANCE_TYPE = "https://slsa.dev/provenance/v1";
export const SPDX_TYPE = "https://spdx.dev/Document";

export interface Subject {
  name: string;
  digest: Record<string, string>;
}

export interface Statement<P = unknown> {
  _type: typeof STATEMENT_TYPE;
  subject: Subject[];
  predicateType: string;
  predicate: P;
}

/** The image an attestation is about: its name (a reference, or "") and manifest digest. */
export function imageSubject(name: string, manifestDigest: string): Subject {
  return { name, digest: { sha256: manifestDigest.replace(/^sha256:/, "") } };
}

export function statement<P>(subject: Subject, predicateType: string, predicate: P): Statement<P> {
  return { _type: STATEMENT_TYPE, subject: [subject], predicateType, predicate };
}

export interface DsseEnvelope {
  payloadType: string;
  payload: string;
  signatures: { keyid: string; sig: string }[];
}

/** DSSE's pre-authentication encoding: what a DSSE signature is computed over. */
export function preAuthEncoding(payloadType: string, payload: Buffer): Buffer {
  const header = `DSSEv1 ${Buffer.byteLength(payloadType)} ${payloadType} ${payload.length} `;
  return Buffer.concat([Buffer.from(header), payload]);
}

export const sha256Hex = (bytes: Buffer | string) => createHash("sha256").update(bytes).digest("hex");
