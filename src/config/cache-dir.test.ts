import { expect, test } from "bun:test";
import { homedir } from "node:os";
import { resolveCacheDir, statCacheFile } from "./cache-dir.ts";

test("flag, then MEMOBUILD_CACHE_DIR, then XDG_CACHE_HOME, then ~/.cache", () => {
  expect(resolveCacheDir("/flag", { MEMOBUILD_CACHE_DIR: "/env", XDG_CACHE_HOME: "/xdg" })).toBe("/flag");
  expect(resolveCacheDir(undefined, { MEMOBUILD_CACHE_DIR: "/env", XDG_CACHE_HOME: "/xdg" })).toBe("/env");
  expect(resolveCacheDir(undefined, { XDG_CACHE_HOME: "/xdg" })).toBe("/xdg/memobuild");
  expect(resolveCacheDir(undefined, {})).toBe(`${homedir()}/.cache/memobuild`);
});

test("each context directory has its own stat cache file", () => {
  expect(statCacheFile("/c", "/a")).not.toBe(statCacheFile("/c", "/b"));
  expect(statCacheFile("/c", "/a")).toMatch(/^\/c\/context-stat\/[0-9a-f]{32}\.db$/);
});
