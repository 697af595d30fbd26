import type { Command } from "commander";
import { existsSync, writeFileSync } from "node:fs";
import { writeFileAtomic } from "../../util/host-file.ts";
import { SigningKey } from "../../remote/action.ts";
import { UsageError } from "../errors.ts";
import { generateEcdsaKey } from "../../attest/sign.ts";

export function registerKey(program: Command) {
  const key = program.command("key").summary("make signing keys for shared results");
  key
    .command("generate")
    .summary("make a key pair: Ed25519 (cache results) or ECDSA P-256 (image signatures); print the public key")
    .description(
      "Write a new Ed25519 private key to FILE (mode 0600) and its public key to FILE.pub, and print the public key. " +
        "Builds given --remote-sign-key FILE sign what they upload; clients given --remote-trust PUBKEY use only results signed by it. " +
        "With --type ecdsa-p256: a PKCS#8 PEM private key and an SPKI PEM public key (FILE.pub), for build --sign-key and verify --key (cosign reads them too).",
    )
    .option("--out <file>", "where to write the private key", "memobuild-signing.key")
    .option("--type <type>", "ed25519 (signs cache results) or ecdsa-p256 (signs images, as cosign)", "ed25519")
    .action((flags: { out: string; type: string }) => {
      if (!["ed25519", "ecdsa-p256"].includes(flags.type)) throw new UsageError(`--type must be ed25519 or ecdsa-p256, not "${flags.type}"`);
      if (existsSync(flags.out)) throw new UsageError(`${flags.out} already exists; a key is never overwritten (choose another --out)`);
      const { pem, publicText } = flags.type === "ecdsa-p256" ? ecdsaKey() : ed25519Key();
      writeFileSync(flags.out, pem, { mode: 0o600, flag: "wx" });
      writeFileAtomic(`${flags.out}.pub`, publicText); // a link planted at FILE.pub is replaced, not written through
      process.stdout.write(publicText);
    });
}

function ed25519Key(): { pem: string; publicText: string } {
  const { key, pem } = SigningKey.generate();
  return { pem, publicText: `${key.publicKey}\n` };
}

/** PKCS#8 and SPKI PEM, as cosign and openssl read them. */
function ecdsaKey(): { pem: string; publicText: string } {
  const { privatePem, publicPem } = generateEcdsaKey();
  return { pem: privatePem, publicText: publicPem };
}
