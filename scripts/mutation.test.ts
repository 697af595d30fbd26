/** The mutation-testing table points at files, functions and tests that exist. */
import { expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { MODULES } from "./mutation.ts";

const ROOT = join(import.meta.dir, "..");

test("every module's files, line spans and test files exist", () => {
  for (const module of MODULES) {
    for (const entry of module.mutate) {
      const [file, span] = entry.split(":");
      expect(existsSync(join(ROOT, file))).toBe(true);
      if (!span) continue;
      const [start, end] = span.split("-").map(Number);
      const lines = readFileSync(join(ROOT, file), "utf8").split("\n");
      // One line: a check inside a longer function (line() found it by its text).
      if (start === end) continue;
      // A span is one whole function: it opens a block on its first line and closes it on its last.
      expect(lines[start - 1]).toMatch(/[{(]$/);
      expect(lines[end - 1]).toMatch(/^\s*};?$/);
      expect(end).toBeGreaterThan(start);
    }
    for (const testFile of module.tests.split(" ")) expect(existsSync(join(ROOT, testFile))).toBe(true);
  }
});
