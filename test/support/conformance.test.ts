/**
 * What `bun test` says about the conformance suites with the data there, absent, and absent
 * where it is required: run on two small test files that use describeConformance, in a child
 * `bun test` with the repository's preload, so the output is what a user sees.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const work = mkdtempSync(join(tmpdir(), "memobuild-conformance-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const helper = JSON.stringify(join(import.meta.dir, "conformance.ts"));
const suite = (name: string, subpath: string) => `
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { describeConformance } from ${helper};
describeConformance(${JSON.stringify(name)}, ${JSON.stringify(subpath)}, (file) => {
  for (const line of readFileSync(file, "utf8").trim().split("\\n")) test(line, () => expect(line).toStartWith("case"));
});
test("a test of its own", () => {});
`;
writeFileSync(join(work, "a.test.ts"), suite("suite A", "a/cases"));
writeFileSync(join(work, "b.test.ts"), suite("suite B", "b.txt"));
const data = join(work, "data");
mkdirSync(join(data, "a"), { recursive: true });
writeFileSync(join(data, "a/cases"), "case 1\ncase 2\n");
writeFileSync(join(data, "b.txt"), "case 3\n");

function bunTest(env: Record<string, string>) {
  const { MEMOBUILD_REQUIRE_CONFORMANCE: _, ...inherited } = process.env;
  const result = Bun.spawnSync(
    [process.execPath, "test", "--preload", join(import.meta.dir, "require-conformance.ts"), "--reporter=junit", "--reporter-outfile", join(work, "junit.xml"), "a.test.ts", "b.test.ts"],
    { cwd: work, env: { ...inherited, ...env }, stdout: "pipe", stderr: "pipe" },
  );
  return { exitCode: result.exitCode, output: result.stdout.toString() + result.stderr.toString() };
}

const reasonLines = (output: string) => output.split("\n").filter((line) => line.includes("conformance data not found"));

describe("suites that need the conformance data", () => {
  test("run every case when it is there", () => {
    const { exitCode, output } = bunTest({ MEMOBUILD_CONFORMANCE_DIR: data });
    expect(exitCode).toBe(0);
    expect(output).toContain("(pass) suite A > case 2");
    expect(output).toContain("(pass) suite B > case 3");
    expect(output).toMatch(/ 5 pass\n 0 fail/);
    expect(reasonLines(output)).toEqual([]);
  });

  test("are skipped by name when it is absent, with one line saying where it was looked for and how to provide it", () => {
    const missing = join(work, "nowhere");
    const { exitCode, output } = bunTest({ MEMOBUILD_CONFORMANCE_DIR: missing });
    expect(exitCode).toBe(0);
    expect(output).toContain("(skip) suite A > every case in conformance/a/cases");
    expect(output).toContain("(skip) suite B > every case in conformance/b.txt");
    expect(output).toContain("(pass) a test of its own");
    expect(output).toMatch(/ 2 pass\n 2 skip\n 0 fail/);
    // .ci/run's closing line counts them from here.
    expect(readFileSync(join(work, "junit.xml"), "utf8")).toMatch(/<testsuites [^>]*tests="4"[^>]*failures="0" skipped="2"/);
    expect(reasonLines(output)).toEqual([
      `conformance data not found at ${missing}: the suites that need it are skipped (set MEMOBUILD_CONFORMANCE_DIR to a copy of shared/conformance; see "Conformance data" in the README)`,
    ]);
  });

  test("fail the run before any test, in one line, when MEMOBUILD_REQUIRE_CONFORMANCE=1 and it is absent", () => {
    const missing = join(work, "nowhere");
    const { exitCode, output } = bunTest({ MEMOBUILD_CONFORMANCE_DIR: missing, MEMOBUILD_REQUIRE_CONFORMANCE: "1" });
    expect(exitCode).toBe(1);
    expect(output).not.toContain("(pass)");
    expect(reasonLines(output)).toEqual([
      `error: conformance data not found at ${missing}, and MEMOBUILD_REQUIRE_CONFORMANCE=1 requires it (set MEMOBUILD_CONFORMANCE_DIR to a copy of shared/conformance; see "Conformance data" in the README)`,
    ]);
  });
});
