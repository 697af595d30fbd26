/** The remote-cache flags `build` and `explain` share, and the client they configure. */
import type { Command } from "commander";
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
}

export function remoteOptions(command: Command): Command {
  return command
    .option("--remote <url>", "shared remote cache (default: $MEMOBUILD_REMOTE_URL or the config file)")
    .option("--remote-token <token>", "token for the remote cache (default: $MEMOBUILD_TOKEN or the config file)")
    .option("--remote-required", "fail the build when the remote cache does not answer, instead of going local-only")
    .option("--remote-sign-key <file>", "sign every result uploaded with this Ed25519 key (from `memobuild key generate`; also $MEMOBUILD_REMOTE_SIGN_KEY)")
    .option("--remote-trust <pubkey>", "use only remote results signed by this public key (repeatable; also $MEMOBUILD_REMOTE_TRUST, config remote.trust)", collect);
}

/** The remote cache the flags, environment and config name; undefined when none is set. */
export function openRemote(flags: RemoteFlags, warn: (message: string) => void): RemoteCache | undefined {
  const settings = resolveRemote({ url: flags.remote, token: flags.remoteToken, signKey: flags.remoteSignKey, trust: flags.remoteTrust });
  if (!settings.url) return undefined;
  return new RemoteCache({
    url: settings.url,
    token: settings.token,
    required: flags.remoteRequired,
    signer: settings.signKey ? SigningKey.load(settings.signKey) : undefined,
    trust: settings.trust,
    warn,
  });
}
