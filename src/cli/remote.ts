/** The remote-cache flags `build` and `explain` share, and the client they configure. */
import type { Command } from "commander";
import { readFileSync } from "node:fs";
import { UserError } from "../errors.ts";
import { remoteSettings } from "../config/remote.ts";
import { value, type Settings } from "../config/settings.ts";
import type { RemoteCache } from "../remote/client.ts";
import { collect } from "./inputs.ts";

export function remoteOptions(command: Command): Command {
  return command
    .option("--remote <url>", "shared remote cache (default: $MEMOBUILD_REMOTE_URL or the config file)")
    .option("--remote-token <token>", "token for the remote cache (default: $MEMOBUILD_TOKEN or the config file)")
    .option("--remote-required", "fail the build when the remote cache does not answer, instead of going local-only")
    .option("--remote-sign-key <file>", "sign every result uploaded with this Ed25519 key (from `memobuild key generate`; also $MEMOBUILD_REMOTE_SIGN_KEY)")
    .option("--remote-trust <pubkey>", "use only remote results signed by this public key (repeatable; also $MEMOBUILD_REMOTE_TRUST, config remote.trust)", collect)
    .option("--remote-cacert <file>", "trust this CA (PEM) for the remote cache's HTTPS certificate")
    .option("--remote-cert <file>", "client certificate (PEM) for a remote cache that requires mutual TLS")
    .option("--remote-key <file>", "the client certificate's key (PEM)")
    .option("--remote-upload <mode>", "wait (upload during the build, wait at its end) | background (report first) | off (default: wait)")
    .option("--remote-report <mode>", "on: report the build (steps, misses and why, result) to the remote cache's build hub | off (default: on)");
}

/**
 * The remote cache the settings name (flags, environment, config files); undefined when none is
 * set. The client loads only then: `graph` declares these flags without needing it.
 */
export async function openRemote(settings: Settings, warn: (message: string) => void): Promise<RemoteCache | undefined> {
  const remote = remoteSettings(settings, warn);
  if (!remote.url) return undefined;
  const [{ RemoteCache }, { SigningKey }] = await Promise.all([import("../remote/client.ts"), import("../remote/action.ts")]);
  return new RemoteCache({
    url: remote.url,
    token: remote.token,
    required: value<boolean>(settings, "remote.required"),
    signer: remote.signKey ? SigningKey.load(remote.signKey) : undefined,
    trust: remote.trust,
    readOnly: remote.readOnly,
    tls: { ca: readPem(remote.cacert), cert: readPem(remote.cert), key: readPem(remote.key) },
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
