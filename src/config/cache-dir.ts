/**
 * Where MemoBuild keeps its caches: `--cache-dir`, else MEMOBUILD_CACHE_DIR, else the user
 * config's cacheDir, else `$XDG_CACHE_HOME/memobuild`, else `~/.cache/memobuild`. A project file
 * may not choose it (settings.ts).
 */
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { blake3Hex } from "../hash/blake3.ts";
import { resolveSettings, userLayer } from "./settings.ts";

export function resolveCacheDir(flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  const configured = resolveSettings({ cacheDir: flag ? resolve(flag) : undefined }, { env, user: userLayer(env) }).cacheDir.value;
  if (typeof configured === "string") return configured;
  if (env.XDG_CACHE_HOME) return join(resolve(env.XDG_CACHE_HOME), "memobuild");
  return join(homedir(), ".cache", "memobuild");
}

/** The stat cache of one context directory (keyed by its absolute path). */
export function statCacheFile(cacheDir: string, contextDir: string): string {
  return join(cacheDir, "context-stat", `${blake3Hex(resolve(contextDir)).slice(0, 32)}.db`);
}
