/** What every command that opens the cache does first: clear what a killed build left of the executor. */
import { expect, test } from "bun:test";
import { existsSync, mkdirSync } from "node:fs";
import { reapAbandoned } from "./reap.ts";

test("unmounts and removes the secrets tmpfs of a build that was killed (its pid is gone)", () => {
  const dead = "/run/memobuild/999999997-cafe00000000";
  mkdirSync(dead, { recursive: true });
  Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dead]);
  reapAbandoned();
  expect(existsSync(dead)).toBe(false);
});
