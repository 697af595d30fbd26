/** The whole project type-checks (strict, no unused code): a type error fails CI like a test. */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { REPO_ROOT } from "./support/binary.ts";

// The dashboard's browser code has its own project (DOM types, no Bun).
test.each([REPO_ROOT, join(REPO_ROOT, "src/dashboard/ui")])("tsc --noEmit -p %s finds no errors", (project) => {
  const result = Bun.spawnSync([join(REPO_ROOT, "node_modules/.bin/tsc"), "--noEmit", "-p", project], { stdout: "pipe", stderr: "pipe" });
  expect(result.stdout.toString() + result.stderr.toString()).toBe("");
  expect(result.exitCode).toBe(0);
}, 120_000);
