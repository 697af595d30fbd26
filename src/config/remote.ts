/**
 * Where the remote cache is: flags beat the environment (MEMOBUILD_REMOTE_URL, MEMOBUILD_TOKEN),
 * which beats the config file ($XDG_CONFIG_HOME/memobuild/config.json, else
 * ~/.config/memobuild/config.json: `{ "remote": { "url": "...", "token": "..." } }`).
 */
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { UserError } from "../errors.ts";

export interface RemoteSettings {
  url?: string;
  token?: string;
}

export function configFile(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CONFIG_HOME ?? join(homedir(), ".config"), "memobuild", "config.json");
}

function fromFile(path: string): RemoteSettings {
  if (!existsSync(path)) return {};
  try {
    const parsed = JSON.parse(readFileSync(path, "utf8")) as { remote?: RemoteSettings };
    return { url: parsed.remote?.url, token: parsed.remote?.token };
  } catch (error) {
    throw new UserError(`cannot read ${path}: ${(error as Error).message}`);
  }
}

export function resolveRemote(flags: RemoteSettings, env: NodeJS.ProcessEnv = process.env): RemoteSettings {
  const file = fromFile(configFile(env));
  const url = flags.url ?? env.MEMOBUILD_REMOTE_URL ?? file.url;
  const token = flags.token ?? env.MEMOBUILD_TOKEN ?? file.token;
  if (url !== undefined && !/^https?:\/\/[^/]+/.test(url)) throw new UserError(`remote cache URL "${url}" must start with http:// or https://`);
  return { url, token };
}
