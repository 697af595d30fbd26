import { expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { resolveCacheDir, statCacheFile } from "./cache-dir.ts";

test("flag, then MEMOBUILD_CACHE_DIR, then the user config, then XDG_CACHE_HOME, then ~/.cache", () => {
  const none = { XDG_CONFIG_HOME: "/nonexistent" };
  expect(resolveCacheDir("/flag", { ...none, MEMOBUILD_CACHE_DIR: "/env", XDG_CACHE_HOME: "/xdg" })).toBe("/flag");
  expect(resolveCacheDir(undefined, { ...none, MEMOBUILD_CACHE_DIR: "/env", XDG_CACHE_HOME: "/xdg" })).toBe("/env");
  expect(resolveCacheDir(undefined, { ...none, XDG_CACHE_HOME: "/xdg" })).toBe("/xdg/memobuild");
  expect(resolveCacheDir(undefined, none)).toBe(`${homedir()}/.cache/memobuild`);
  const config = mkdtempSync(join(tmpdir(), "memobuild-config-"));
  try {
    mkdirSync(join(config, "memobuild"));
    writeFileSync(join(config, "memobuild/config.json"), JSON.stringify({ cacheDir: "/configured" }));
    expect(resolveCacheDir(undefined, { XDG_CONFIG_HOME: config, XDG_CACHE_HOME: "/xdg" })).toBe("/configured");
    expect(resolveCacheDir(undefined, { XDG_CONFIG_HOME: config, MEMOBUILD_CACHE_DIR: "/env" })).toBe("/env");
  } finally {
    rmSync(config, { recursive: true, force: true });
  }
});

test("each context directory has its own stat cache file", () => {
  expect(statCacheFile("/c", "/a")).not.toBe(statCacheFile("/c", "/b"));
  expect(statCacheFile("/c", "/a")).toMatch(/^\/c\/context-stat\/[0-9a-f]{32}\.db$/);
});
