import type { Command } from "commander";
import { existsSync, writeFileSync } from "node:fs";
import { writeFileAtomic } from "../../util/host-file.ts";
import { SigningKey } from "../../remote/action.ts";
import { UsageError } from "../errors.ts";

export function registerKey(program: Command) {
  const key = program.command("key").summary("make signing keys for shared results");
  key
    .command("generate")
    .summary("make an Ed25519 key pair; print the public key as one line")
    .description(
      "Write a new Ed25519 private key to FILE (mode 0600) and its public key to FILE.pub, and print the public key. " +
        "Builds given --remote-sign-key FILE sign what they upload; clients given --remote-trust PUBKEY use only results signed by it.",
    )
    .option("--out <file>", "where to write the private key", "memobuild-signing.key")
    .action((flags: { out: string }) => {
      if (existsSync(flags.out)) throw new UsageError(`${flags.out} already exists; a key is never overwritten (choose another --out)`);
      const { key, pem } = SigningKey.generate();
      writeFileSync(flags.out, pem, { mode: 0o600, flag: "wx" });
      writeFileAtomic(`${flags.out}.pub`, `${key.publicKey}\n`); // a link planted at FILE.pub is replaced, not written through
      process.stdout.write(`${key.publicKey}\n`);
    });
}
