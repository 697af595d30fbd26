/**
 * Where the remote cache is and how far to trust it: flags beat the environment
 * (MEMOBUILD_REMOTE_URL, MEMOBUILD_TOKEN, MEMOBUILD_REMOTE_SIGN_KEY, MEMOBUILD_REMOTE_TRUST:
 * public keys separated by commas, MEMOBUILD_REMOTE_CACERT, _CERT, _KEY), which beats the config file ($XDG_CONFIG_HOME/memobuild/
 * config.json, else ~/.config/memobuild/config.json:
 * `{ "remote": { "url": "...", "token": "...", "signKey": "FILE", "trust": ["ed25519:…"],
 * "cacert": "FILE", "cert": "FILE", "key": "FILE" } }`).
 */
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { UserError } from "../errors.ts";

export interface RemoteSettings {
  url?: string;
  token?: string;
  /** A file holding the Ed25519 private key that signs uploaded results. */
  signKey?: string;
  /** Public keys whose signed results this client accepts (none: any result). */
  trust?: string[];
  /** PEM files: the CA that signed the server's certificate, and a client certificate and key (mutual TLS). */
  cacert?: string;
  cert?: string;
  key?: string;
}

export function configFile(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CONFIG_HOME ?? join(homedir(), ".config"), "memobuild", "config.json");
}

function fromFile(path: string): RemoteSettings {
  if (!existsSync(path)) return {};
  let remote: Record<string, unknown> | undefined;
  try {
    remote = (JSON.parse(readFileSync(path, "utf8")) as { remote?: Record<string, unknown> }).remote;
  } catch (error) {
    throw new UserError(`cannot read ${path}: ${(error as Error).message}`);
  }
  const text = (name: string) => {
    const value = remote?.[name];
    if (value !== undefined && typeof value !== "string") throw new UserError(`${path}: remote.${name} must be a string`);
    return value as string | undefined;
  };
  const trust = remote?.trust;
  if (trust !== undefined && !(Array.isArray(trust) && trust.every((k) => typeof k === "string"))) {
    throw new UserError(`${path}: remote.trust must be a list of public keys ("ed25519:…")`);
  }
  return { url: text("url"), token: text("token"), signKey: text("signKey"), trust: trust as string[] | undefined, cacert: text("cacert"), cert: text("cert"), key: text("key") };
}

export function resolveRemote(flags: RemoteSettings, env: NodeJS.ProcessEnv = process.env): RemoteSettings {
  const file = fromFile(configFile(env));
  const url = flags.url ?? env.MEMOBUILD_REMOTE_URL ?? file.url;
  const token = flags.token ?? env.MEMOBUILD_TOKEN ?? file.token;
  const signKey = flags.signKey ?? env.MEMOBUILD_REMOTE_SIGN_KEY ?? file.signKey;
  const envTrust = env.MEMOBUILD_REMOTE_TRUST?.split(",").map((k) => k.trim()).filter(Boolean);
  const trust = flags.trust?.length ? flags.trust : envTrust?.length ? envTrust : file.trust;
  if (url !== undefined && !/^https?:\/\/[^/]+/.test(url)) throw new UserError(`remote cache URL "${url}" must start with http:// or https://`);
  const cacert = flags.cacert ?? env.MEMOBUILD_REMOTE_CACERT ?? file.cacert;
  const cert = flags.cert ?? env.MEMOBUILD_REMOTE_CERT ?? file.cert;
  const key = flags.key ?? env.MEMOBUILD_REMOTE_KEY ?? file.key;
  if ((cert === undefined) !== (key === undefined)) throw new UserError("a client certificate and its key go together (--remote-cert and --remote-key)");
  return { url, token, signKey, trust, cacert, cert, key };
}
