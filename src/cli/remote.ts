/** The remote-cache flags `build` and `explain` share, and the client they configure. */
import type { Command } from "commander";
import { readFileSync } from "node:fs";
import { UserError } from "../errors.ts";
import { resolveRemote } from "../config/remote.ts";
import { SigningKey } from "../remote/action.ts";
import { RemoteCache } from "../remote/client.ts";
import { collect } from "./inputs.ts";

export interface RemoteFlags {
  remote?: string;
  remoteToken?: string;
  remoteRequired?: boolean;
  remoteSignKey?: string;
  remoteTrust: string[];
  remoteCacert?: string;
  remoteCert?: string;
  remoteKey?: string;
}

export function remoteOptions(command: Command): Command {
  return command
    .option("--remote <url>", "shared remote cache (default: $MEMOBUILD_REMOTE_URL or the config file)")
    .option("--remote-token <token>", "token for the remote cache (default: $MEMOBUILD_TOKEN or the config file)")
    .option("--remote-required", "fail the build when the remote cache does not answer, instead of going local-only")
    .option("--remote-sign-key <file>", "sign every result uploaded with this Ed25519 key (from `memobuild key generate`; also $MEMOBUILD_REMOTE_SIGN_KEY)")
    .option("--remote-trust <pubkey>", "use only remote results signed by this public key (repeatable; also $MEMOBUILD_REMOTE_TRUST, config remote.trust)", collect)
    .option("--remote-cacert <file>", "trust this CA (PEM) for the remote cache's HTTPS certificate")
    .option("--remote-cert <file>", "client certificate (PEM) for a remote cache that requires mutual TLS")
    .option("--remote-key <file>", "the client certificate's key (PEM)");
}

/** The remote cache the flags, environment and config name; undefined when none is set. */
export function openRemote(flags: RemoteFlags, warn: (message: string) => void): RemoteCache | undefined {
  const settings = resolveRemote({
    url: flags.remote,
    token: flags.remoteToken,
    signKey: flags.remoteSignKey,
    trust: flags.remoteTrust,
    cacert: flags.remoteCacert,
    cert: flags.remoteCert,
    key: flags.remoteKey,
  });
  if (!settings.url) return undefined;
  return new RemoteCache({
    url: settings.url,
    token: settings.token,
    required: flags.remoteRequired,
    signer: settings.signKey ? SigningKey.load(settings.signKey) : undefined,
    trust: settings.trust,
    tls: { ca: readPem(settings.cacert), cert: readPem(settings.cert), key: readPem(settings.key) },
    warn,
  });
}

function readPem(file: string | undefined): string | undefined {
  if (file === undefined) return undefined;
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    throw new UserError(`cannot read ${file}: ${(error as Error).message}`);
  }
}
