/**
 * `memobuild verify`: an image's cosign-style signature checked against its digest with a public
 * key, and (with provenance) the attestation checked against the image and the signed copy.
 * Every failure names what does not match. The image is read through an ImageSource: a registry
 * or an OCI layout (sources.ts).
 */
import type { KeyObject } from "node:crypto";
import { UserError } from "../errors.ts";
import type { Descriptor, Index, Manifest } from "../image/layout.ts";
import { MEDIA } from "../image/layout.ts";
import { PREDICATE_TYPE_ANNOTATION, REFERENCE_DIGEST, REFERENCE_TYPE, ATTESTATION_MANIFEST } from "./manifest.ts";
import { COSIGN_SIGNATURE_TYPE, DSSE_TYPE, openEnvelope, SIGNATURE_ANNOTATION, signatureTag, verifyBytes } from "./sign.ts";
import { PROVENANCE_TYPE, type DsseEnvelope, type Statement } from "./statement.ts";
import type { SlsaProvenance } from "./provenance.ts";

export class VerifyError extends UserError {}

export interface Fetched {
  digest: string;
  mediaType: string;
  bytes: Buffer;
}

/** Where an image is read from; every byte it returns is checked against its digest. */
export interface ImageSource {
  /** As the user named it, for messages. */
  name: string;
  /** The repository (registry/name) the signature must name; undefined for a layout. */
  identity?: string;
  /** What the name points to. */
  top(): Promise<Fetched>;
  /** A manifest by tag or digest; undefined when there is none. */
  manifest(reference: string): Promise<Fetched | undefined>;
  blob(descriptor: Descriptor): Promise<Buffer>;
  /** Index entries beside the image that the source itself holds (a layout's index.json). */
  siblings(): Promise<Descriptor[]>;
}

export interface VerifiedPlatform {
  platform: string;
  digest: string;
  provenance?: Statement<SlsaProvenance>;
}

export interface Verified {
  /** The digest the signature covers (what the name points to). */
  digest: string;
  identity: string;
  imageDigest: string;
  /** For a multi-platform image: each platform's manifest, its signature (and provenance) verified too. */
  platforms: VerifiedPlatform[];
  /** A single image's provenance (a multi-platform image's are in `platforms`). */
  provenance?: Statement<SlsaProvenance>;
}

const json = <T>(bytes: Buffer): T => JSON.parse(bytes.toString("utf8")) as T;

/**
 * The signature of `digest`: a layer whose signature verifies and whose payload names it.
 * `what` names the manifest in errors when it is not the one IMAGE points to (a platform's).
 */
async function checkSignature(source: ImageSource, key: KeyObject, digest: string, what?: string): Promise<string> {
  const tag = signatureTag(digest, "sig");
  const signatures = await source.manifest(tag);
  const where = what ? `${source.name}: ${what}` : source.name;
  if (!signatures) throw new VerifyError(`${where}: no signature (no ${tag} beside ${digest})`);
  const problems: string[] = [];
  for (const layer of json<Manifest>(signatures.bytes).layers) {
    const signature = layer.annotations?.[SIGNATURE_ANNOTATION];
    if (!signature) continue;
    const payload = await source.blob(layer);
    if (!verifyBytes(key, payload, Buffer.from(signature, "base64"))) {
      problems.push(`the signature in ${tag} does not verify with the given key`);
      continue;
    }
    const claims = json<{ critical?: { identity?: { "docker-reference"?: string }; image?: { "docker-manifest-digest"?: string }; type?: string } }>(payload).critical;
    const named = claims?.image?.["docker-manifest-digest"];
    const identity = claims?.identity?.["docker-reference"] ?? "";
    if (claims?.type !== COSIGN_SIGNATURE_TYPE) problems.push(`the payload in ${tag} is not a cosign image signature`);
    else if (named !== digest) problems.push(`the signature is for ${named}, but ${what ?? source.name} is ${digest} (the manifest was replaced)`);
    else if (source.identity && identity !== source.identity) problems.push(`the signature names the repository ${identity}, not ${source.identity}`);
    else return identity;
  }
  throw new VerifyError(`${where}: ${problems.join("; ") || `${tag} holds no signature`}`);
}

/** The platform images an index lists (its attestation manifests, platform unknown/unknown, left out). */
function platformImages(top: Fetched): Descriptor[] {
  if (top.mediaType !== MEDIA.index) return [];
  return json<Index>(top.bytes).manifests.filter((m) => m.platform && m.platform.os !== "unknown");
}

const platformName = (d: Descriptor) => [d.platform!.os, d.platform!.architecture, d.platform!.variant].filter(Boolean).join("/");

/**
 * A multi-platform image is signed manifest by manifest (so each verifies pulled alone) and as an
 * index: each platform's signature is checked first, so a manifest swapped in the index is named
 * by its platform rather than only as an index whose signature is missing.
 */
async function checkPlatformSignatures(source: ImageSource, key: KeyObject, top: Fetched): Promise<VerifiedPlatform[]> {
  const images = platformImages(top);
  if (images.length < 2) return []; // one image and its attestations: the index's signature covers it
  const checked: VerifiedPlatform[] = [];
  for (const image of images) {
    const platform = platformName(image);
    await checkSignature(source, key, image.digest, `the ${platform} image ${image.digest}`);
    checked.push({ platform, digest: image.digest });
  }
  return checked;
}

/** The image manifest a signed digest stands for, and the attestation manifests listed beside it. */
async function imageAndAttestations(source: ImageSource, top: Fetched): Promise<{ imageDigest: string; attestations: Descriptor[]; signedIndex: boolean }> {
  if (top.mediaType !== MEDIA.index) return { imageDigest: top.digest, attestations: await source.siblings(), signedIndex: false };
  const index = json<Index>(top.bytes);
  const image = index.manifests.find((m) => m.platform?.os !== "unknown");
  if (!image) throw new VerifyError(`${source.name}: the index ${top.digest} lists no image`);
  return { imageDigest: image.digest, attestations: index.manifests, signedIndex: true };
}

async function inIndexProvenance(source: ImageSource, imageDigest: string, attestations: Descriptor[]): Promise<Statement<SlsaProvenance>> {
  const entry = attestations.find((d) => d.annotations?.[REFERENCE_TYPE] === ATTESTATION_MANIFEST && d.annotations?.[REFERENCE_DIGEST] === imageDigest);
  if (!entry) throw new VerifyError(`${source.name}: no attestation manifest for ${imageDigest}`);
  const manifest = await source.manifest(entry.digest);
  if (!manifest) throw new VerifyError(`${source.name}: the attestation manifest ${entry.digest} is missing`);
  const layer = json<Manifest>(manifest.bytes).layers.find((l) => l.annotations?.[PREDICATE_TYPE_ANNOTATION] === PROVENANCE_TYPE);
  if (!layer) throw new VerifyError(`${source.name}: the attestation manifest ${entry.digest} holds no provenance`);
  return json<Statement<SlsaProvenance>>(await source.blob(layer));
}

/** The provenance as the key signed it (the `.att` DSSE envelope), when there is one. */
async function signedProvenance(source: ImageSource, key: KeyObject, imageDigest: string): Promise<Statement | undefined> {
  const tag = signatureTag(imageDigest, "att");
  const attestations = await source.manifest(tag);
  if (!attestations) return undefined;
  for (const layer of json<Manifest>(attestations.bytes).layers) {
    if (layer.mediaType !== DSSE_TYPE || layer.annotations?.[PREDICATE_TYPE_ANNOTATION] !== PROVENANCE_TYPE) continue;
    const statement = openEnvelope(key, json<DsseEnvelope>(await source.blob(layer)));
    if (!statement) throw new VerifyError(`${source.name}: the provenance envelope in ${tag} does not verify with the given key`);
    return statement;
  }
  return undefined;
}

/**
 * The provenance of the image `imageDigest`, attested beside it: its subject must be the image,
 * and it must equal the copy signed in the image's .att, or be covered by a signed index that
 * lists it (digests all the way down). `what` names a platform's image in errors.
 */
async function checkedProvenance(source: ImageSource, key: KeyObject, imageDigest: string, attestations: Descriptor[], signedIndex: boolean, what?: string): Promise<Statement<SlsaProvenance>> {
  const where = what ? `${source.name}: ${what}` : source.name;
  const provenance = await inIndexProvenance(source, imageDigest, attestations);
  const subject = provenance.subject?.[0]?.digest?.sha256;
  if (`sha256:${subject}` !== imageDigest) throw new VerifyError(`${where}: the provenance's subject is sha256:${subject}, not the image ${imageDigest}`);
  const signed = await signedProvenance(source, key, imageDigest);
  if (signed && JSON.stringify(signed) !== JSON.stringify(provenance)) {
    throw new VerifyError(`${where}: the provenance in the attestation manifest differs from the one signed in ${signatureTag(imageDigest, "att")} (it was altered)`);
  }
  if (!signed && !signedIndex) throw new VerifyError(`${where}: the provenance is not signed (no ${signatureTag(imageDigest, "att")})`);
  return provenance;
}

export async function verifyImage(source: ImageSource, key: KeyObject, options: { provenance: boolean }): Promise<Verified> {
  const top = await source.top();
  const platforms = await checkPlatformSignatures(source, key, top);
  const identity = await checkSignature(source, key, top.digest);
  const { imageDigest, attestations, signedIndex } = await imageAndAttestations(source, top);
  if (!options.provenance) return { digest: top.digest, identity, imageDigest, platforms };
  if (!platforms.length) return { digest: top.digest, identity, imageDigest, platforms, provenance: await checkedProvenance(source, key, imageDigest, attestations, signedIndex) };
  // Several platforms: each image has its own provenance beside it in the index.
  for (const platform of platforms) platform.provenance = await checkedProvenance(source, key, platform.digest, attestations, signedIndex, `the ${platform.platform} image ${platform.digest}`);
  return { digest: top.digest, identity, imageDigest, platforms };
}

/** What a provenance says, for people: base images, context, and each step with who produced it. */
export function describeProvenance(statement: Statement<SlsaProvenance>): string[] {
  const { buildDefinition, runDetails } = statement.predicate;
  const external = buildDefinition.externalParameters as { context?: { digest?: { blake3?: string } }; dockerfile?: { path?: string }; target?: string; platform?: string };
  const lines = [
    `builder: ${runDetails.builder.id} (invocation ${runDetails.metadata.invocationId}, ${runDetails.metadata.startedOn} to ${runDetails.metadata.finishedOn})`,
    `dockerfile: ${external.dockerfile?.path ?? "?"}${external.target ? ` (target ${external.target})` : ""}, platform ${external.platform ?? "?"}`,
    `context: ${external.context?.digest?.blake3 ? `blake3:${external.context.digest.blake3}` : "not recorded"}`,
  ];
  for (const dependency of buildDefinition.resolvedDependencies) lines.push(`input: ${dependency.uri} ${Object.entries(dependency.digest).map(([a, d]) => `${a}:${d}`).join(" ")}`);
  for (const step of runDetails.byproducts) lines.push(`step ${step.name.replace(/^step:/, "")}: ${step.annotations.status}${step.annotations.signer ? ` (signed by ${step.annotations.signer})` : ""}  ${step.annotations.instruction.split("\n")[0]}`);
  return lines;
}
