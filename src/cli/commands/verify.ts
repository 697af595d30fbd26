import type { Command } from "commander";
import { loadPublicKey } from "../../attest/sign.ts";
import { layoutSource, registrySource } from "../../attest/sources.ts";
import { describeProvenance, verifyImage, type VerifiedPlatform } from "../../attest/verify.ts";
import { insecureRegistries } from "../../registry/client.ts";
import { usage } from "../build-flags.ts";
import { collect } from "../collect.ts";
import { rebuild, RebuildError } from "../rebuild.ts";

export function registerVerify(program: Command) {
  program
    .command("verify")
    .argument("<image>", "a registry reference (NAME:TAG or NAME@DIGEST) or oci:DIR[:NAME]")
    .summary("check an image's signature (and provenance) with a public key")
    .description(
      "Check the cosign-format signature (sha256-<hex>.sig) of IMAGE against the digest IMAGE points to, with the ECDSA P-256 public key --key. " +
        "With --provenance, also check that the SLSA provenance attached to the image names it and matches the signed copy, and print what it says.",
    )
    .requiredOption("--key <file>", "the public key (PEM), e.g. FILE.pub from memobuild key generate --type ecdsa-p256")
    .option("--provenance", "also check the provenance attestation and print it")
    .option("--rebuild <context>", "rebuild from the recorded inputs (this directory holds the context; checked against the provenance) with the recorded SOURCE_DATE_EPOCH and no cache, and say whether the digest is the same; of an index, each platform's image, naming those that differ (implies --provenance)")
    .option("--secret <spec>", "a secret the rebuild needs, as build --secret (repeatable)", collect)
    .option("--cache-dir <dir>", "the cache directory the rebuild uses (for its base images)")
    .option("--insecure-registry <host>", "use plain HTTP for this registry (repeatable; also $MEMOBUILD_INSECURE_REGISTRIES)", collect)
    .action(async (image: string, flags: { key: string; provenance?: boolean; rebuild?: string; secret?: string[]; cacheDir?: string; insecureRegistry?: string[] }) => {
      const key = usage(() => loadPublicKey(flags.key));
      const source = image.startsWith("oci:") ? layoutSource(image) : registrySource(image, { insecure: insecureRegistries(flags.insecureRegistry ?? []) });
      const verified = await verifyImage(source, key, { provenance: !!flags.provenance || flags.rebuild !== undefined });
      const lines = [`${image}: signature verified: ${verified.digest} of ${verified.identity || "(no repository)"}`];
      for (const { platform, digest } of verified.platforms) lines.push(`  ${platform}: signature verified: ${digest}`);
      if (verified.provenance) lines.push(`provenance verified for ${verified.imageDigest}:`, ...describeProvenance(verified.provenance).map((l) => `  ${l}`));
      for (const { platform, digest, provenance } of verified.platforms) {
        if (provenance) lines.push(`provenance verified for ${digest} (${platform}):`, ...describeProvenance(provenance).map((l) => `  ${l}`));
      }
      process.stdout.write(lines.join("\n") + "\n");
      if (flags.rebuild === undefined) return;
      const extra = [...(flags.secret ?? []).flatMap((s) => ["--secret", s]), ...(flags.cacheDir ? ["--cache-dir", flags.cacheDir] : [])];
      if (verified.platforms.length) return rebuildPlatforms(verified.platforms, flags.rebuild, extra);
      if (!verified.provenance) return;
      const rebuilt = await rebuild(verified.provenance, flags.rebuild, extra);
      if (rebuilt !== verified.imageDigest) throw new RebuildError(`rebuilt ${rebuilt}, not ${verified.imageDigest}: the build did not reproduce`);
      process.stdout.write(`rebuilt ${rebuilt}: the same image, reproduced\n`);
    });
}

/**
 * `--rebuild` of an index: each platform's image is rebuilt from its own provenance (for its
 * platform, under QEMU for another architecture, as it was built) and compared with that
 * platform's manifest. Every platform is tried, so the error names all that differ.
 */
async function rebuildPlatforms(platforms: VerifiedPlatform[], contextDir: string, extra: string[]) {
  const differing: string[] = [];
  for (const { platform, digest, provenance } of platforms) {
    if (!provenance) throw new RebuildError(`--rebuild: the ${platform} image ${digest} has no provenance to rebuild it from`);
    const rebuilt = await rebuild(provenance, contextDir, extra);
    if (rebuilt === digest) process.stdout.write(`${platform}: rebuilt ${rebuilt}: the same image, reproduced\n`);
    else {
      process.stdout.write(`${platform}: rebuilt ${rebuilt}, not ${digest}\n`);
      differing.push(`${platform} (rebuilt ${rebuilt}, not ${digest})`);
    }
  }
  if (differing.length) throw new RebuildError(`the build did not reproduce for ${differing.join("; ")}`);
}
