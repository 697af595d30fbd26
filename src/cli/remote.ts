/** The remote-cache flags `build` and `explain` share, and the client they configure. */
import type { Command } from "commander";
import { readFileSync } from "node:fs";
import { UserError } from "../errors.ts";
import { remoteSettings } from "../config/remote.ts";
import { value, type Settings } from "../config/settings.ts";
import type { RemoteCache } from "../remote/client.ts";
import type { RemoteCacheMounts } from "../remote/mount-sync.ts";
import type { LocalStore } from "../cache/store.ts";
import { collect } from "./collect.ts";
import { limit } from "../util/limits.ts";
import { SCOPE_NAME } from "../remote/mount-manifest.ts";

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

/** --remote-cache-mounts and --cache-mount-scope: the RUN --mount=type=cache directories shared through `remote`, unless off. */
export function cacheMountOptions(command: Command): Command {
  return command
    .option("--remote-cache-mounts <mode>", "share RUN --mount=type=cache directories through the remote: on (fetch; publish after a build that succeeded) | read (fetch only) | off (default: read; also $MEMOBUILD_REMOTE_CACHE_MOUNTS, config remote.cacheMounts)")
    .option("--cache-mount-scope <name>", "keep shared cache mounts apart under this name (a branch, say)");
}

export interface CacheMountChoice {
  mode: "on" | "read" | "off";
  scopeName?: string;
}

/**
 * The cache-mount settings, checked before any work. `on` publishes into caches every later
 * build of the team starts from, so it never comes from a project file (a pull request could
 * turn it on and have CI's token and key publish what its RUN planted): there it may only be
 * read or off.
 */
export function cacheMountChoice(settings: Settings, scopeName: string | undefined): CacheMountChoice {
  if (scopeName !== undefined && !SCOPE_NAME.test(scopeName)) {
    throw new UserError(`--cache-mount-scope "${scopeName}": use up to 128 letters, digits and . _ / -, starting with a letter or digit`);
  }
  const mode = value<"on" | "read" | "off">(settings, "remote.cacheMounts");
  const { source, origin } = settings["remote.cacheMounts"];
  if (mode === "on" && source === "project") {
    throw new UserError(`${origin}: remote.cacheMounts: a project file may say read or off, not on (it comes with the repository, and on publishes to the team's caches); say on with --remote-cache-mounts, $MEMOBUILD_REMOTE_CACHE_MOUNTS or your user config`);
  }
  return { mode, scopeName };
}

/** The cache mounts shared through `remote` (loaded only when there is one and mounts are not off). */
export async function openCacheMounts(choice: CacheMountChoice, settings: Settings, remote: RemoteCache | undefined, store: LocalStore, warn: (message: string) => void): Promise<RemoteCacheMounts | undefined> {
  const { mode, scopeName } = choice;
  if (!remote || mode === "off") return undefined;
  const { signKey, trust } = remoteSettings(settings, () => {});
  const [{ RemoteCacheMounts }, { SigningKey }] = await Promise.all([import("../remote/mount-sync.ts"), import("../remote/action.ts")]);
  const signer = signKey ? SigningKey.load(signKey) : undefined;
  return new RemoteCacheMounts({ remote, mode, scopeName, trust, signer, warn, staging: () => store.tempDir("cache-mount"), timeoutMs: limit("cacheMountFetchSeconds") * 1000 });
}

function readPem(file: string | undefined): string | undefined {
  if (file === undefined) return undefined;
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    throw new UserError(`cannot read ${file}: ${(error as Error).message}`);
  }
}
