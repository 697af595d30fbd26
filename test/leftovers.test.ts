/**
 * Tests leave nothing behind in the temporary directory. Each file below runs in its own
 * `bun test` with a private TMPDIR (so other runs on the machine, which share /tmp, cannot blur
 * the answer), and that directory must be empty afterwards. The list holds the files that once
 * left `memobuild-*` directories and a few others that make temporary trees; to check any file:
 *   LEFTOVER_FILES="src/x/y.test.ts test/z.test.ts" bun test test/leftovers.test.ts
 */
import { expect, test } from "bun:test";
import { chmodSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { REPO_ROOT } from "./support/binary.ts";

const FILES = process.env.LEFTOVER_FILES?.split(/\s+/).filter(Boolean) ?? [
  "src/config/settings.test.ts",
  "src/config/cache-dir.test.ts",
  "src/server/auth.test.ts",
  "test/corpus.test.ts",
  "src/sys/tar.test.ts",
  "src/context/context.test.ts",
  "src/executor/download.test.ts",
];

/** What `bun test file` leaves in a TMPDIR of its own. */
function leftoversOf(file: string): string[] {
  // Short: tests put Unix sockets below it, and their paths are limited to 108 bytes.
  const tmp = mkdtempSync("/tmp/mbt-");
  // Traversable, as /tmp is: some tests hand directories below it to other users (postgres).
  chmodSync(tmp, 0o755);
  try {
    const run = Bun.spawnSync([process.execPath, "test", file], { cwd: REPO_ROOT, env: { ...process.env, TMPDIR: tmp }, stdout: "pipe", stderr: "pipe" });
    if (run.exitCode !== 0) throw new Error(`bun test ${file} failed:\n${run.stderr.toString().slice(-2000)}`);
    // Bun's compiled executables (the memobuild binary) unpack their native addon there as
    // `.bun-UID-HASH.node`, one file per content that every later run reuses: not a test's.
    return readdirSync(tmp).filter((name) => !/^\.bun-\d+-[0-9a-f]+\.node$/.test(name));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

for (const file of FILES) {
  test(`${file} leaves nothing in the temporary directory`, () => {
    expect(leftoversOf(file)).toEqual([]);
  }, 120_000);
}
