/**
 * What the CLI asks of this folder: the manifests an export writes beside an image (attestation
 * manifest, and with a key its signature and signed attestations), and after a registry push the
 * signature manifests pushed under cosign's tags.
 */
import type { KeyObject } from "node:crypto";
import type { LocalStore } from "../cache/store.ts";
import type { Extra, Extras } from "../image/export.ts";
import { REF_NAME, type StoredImage } from "../image/layout.ts";
import { attestationManifest } from "./manifest.ts";
import type { AttestOptions } from "./options.ts";
import { packageFiles } from "./image-files.ts";
import { packagesIn, type Package } from "./packages.ts";
import { provenanceStatement, type BuildRecord } from "./provenance.ts";
import { spdxDocument } from "./sbom.ts";
import { imageSignature, signatureIdentity, signatureTag, signedAttestations } from "./sign.ts";
import { imageSubject, SPDX_TYPE, statement, type Statement } from "./statement.ts";

export interface AttestRequest {
  options: AttestOptions;
  record: BuildRecord;
  /** The image's name in subjects and the SBOM (its first -t, or ""). */
  name: string;
  /** When the SBOM says it was made: SOURCE_DATE_EPOCH when given, so rebuilds match. */
  created: Date;
  signKey?: KeyObject;
  /** The repository (registry/name) a layout's signature vouches for (a push signs for each name's own). */
  identity?: string;
}

export class Attester {
  /** Read once: the image's packages do not depend on how an output compresses its layers. */
  private packages?: Promise<Package[]>;
  /** The image manifest last pushed and what was said about it, for the signatures that follow. */
  private pushed?: { digest: string; statements: Statement[] };

  constructor(private readonly store: LocalStore, private readonly image: StoredImage, private readonly request: AttestRequest) {}

  /** The statements about the exported manifest `digest`. */
  async statements(digest: string): Promise<Statement[]> {
    const { options, record, name } = this.request;
    const subject = imageSubject(name, digest);
    const statements: Statement[] = [];
    if (options.provenance) statements.push(provenanceStatement(record, subject, options.provenance));
    if (options.sbom) {
      this.packages ??= packageFiles(this.store, this.image).then(packagesIn);
      const document = spdxDocument({
        name: name || digest,
        namespace: `https://memobuild.dev/spdx/${digest.replace(":", "-")}/${record.invocationId}`,
        created: this.request.created,
        tool: `memobuild-${record.version}`,
        packages: await this.packages,
      });
      statements.push(statement(subject, SPDX_TYPE, document));
    }
    return statements;
  }

  /** For an OCI layout or archive: attestations, and with a key the .sig and .att named by ref.name. */
  layoutExtras(): Extras {
    return async (exported) => {
      const digest = exported.manifestDigest;
      const statements = await this.statements(digest);
      const extras: Extra[] = statements.length ? [attestationManifest(this.store, digest, statements)] : [];
      const { signKey, identity } = this.request;
      if (!signKey || !identity) return extras;
      const named = (extra: Extra, tag: string): Extra => ({ ...extra, descriptor: { ...extra.descriptor, annotations: { [REF_NAME]: tag } } });
      extras.push(named(imageSignature(this.store, signKey, identity, digest), signatureTag(digest, "sig")));
      if (statements.length) extras.push(named(signedAttestations(this.store, signKey, statements), signatureTag(digest, "att")));
      return extras;
    };
  }

  /**
   * For a registry push, and for each platform of a multi-platform image in any output: the
   * attestation manifest in the index (signatures come after, outside it).
   */
  registryExtras(): Extras {
    return async (exported) => {
      const statements = await this.statements(exported.manifestDigest);
      this.pushed = { digest: exported.manifestDigest, statements };
      return statements.length ? [attestationManifest(this.store, exported.manifestDigest, statements)] : [];
    };
  }

  /** The repository a signature pushed to `tag` names. */
  identityOf(tag: string): string {
    return signatureIdentity(tag);
  }

  /**
   * After a push whose name now points to `topDigest`: the signature of that digest (what `cosign
   * verify NAME` looks up) and the signed attestations of the image manifest, with their tags.
   */
  registrySignatures(topDigest: string, identity: string): Signature[] {
    const { signKey } = this.request;
    if (!signKey) return [];
    const signatures = [{ tag: signatureTag(topDigest, "sig"), extra: imageSignature(this.store, signKey, identity, topDigest) }];
    if (this.pushed?.statements.length) signatures.push({ tag: signatureTag(this.pushed.digest, "att"), extra: signedAttestations(this.store, signKey, this.pushed.statements) });
    return signatures;
  }

  /**
   * A multi-platform image's signatures once its index `indexDigest` is exported (each attester's
   * registryExtras having run): every platform's manifest signed as a single-platform image's is
   * (so it verifies when pulled alone, by digest), its attestations signed, then the index.
   * `identity` is the repository pushed to; a layout's is the build's first name. Called on any
   * one of `platforms` (they share the key).
   */
  indexSignatures(platforms: Attester[], indexDigest: string, identity?: string): Signature[] {
    const { signKey } = this.request;
    const named = identity ?? this.request.identity;
    if (!signKey || !named) return [];
    const signed = platforms.flatMap((a) => (a.pushed ? a.registrySignatures(a.pushed.digest, named) : []));
    return [...signed, { tag: signatureTag(indexDigest, "sig"), extra: imageSignature(this.store, signKey, named, indexDigest) }];
  }
}

/** A signature manifest and the cosign tag it goes under. */
export interface Signature {
  tag: string;
  extra: Extra;
}
