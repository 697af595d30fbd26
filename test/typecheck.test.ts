/** The whole project type-checks (strict, no unused code): a type error fails CI like a test. */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { REPO_ROOT } from "./support/binary.ts";

test("tsc --noEmit finds no errors", () => {
  const result = Bun.spawnSync([join(REPO_ROOT, "node_modules/.bin/tsc"), "--noEmit", "-p", REPO_ROOT], { stdout: "pipe", stderr: "pipe" });
  expect(result.stdout.toString() + result.stderr.toString()).toBe("");
  expect(result.exitCode).toBe(0);
}, 120_000);
