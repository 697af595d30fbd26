/**
 * Real-world Dockerfiles (test/corpus, each with its origin in origins.json: repository, path,
 * commit) from official images, build tools and multi-stage projects that build them with
 * BuildKit: every one must plan with `memobuild graph`, as BuildKit accepts it. Refresh with
 * the repositories' newer commits by copying the files again and updating origins.json.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runMemobuild } from "./support/binary.ts";

const corpus = join(import.meta.dir, "corpus");
const origins: { file: string; repository: string; path: string; commit: string; buildArgs?: Record<string, string> }[] = JSON.parse(readFileSync(join(corpus, "origins.json"), "utf8"));
const emptyContext = mkdtempSync(join(tmpdir(), "memobuild-corpus-"));
afterAll(() => rmSync(emptyContext, { recursive: true, force: true }));

describe("real-world Dockerfiles plan", () => {
  test("the corpus has at least 50 files, each with its origin", () => {
    const files = readdirSync(corpus).filter((f) => f !== "origins.json").sort();
    expect(origins.map((o) => o.file).sort()).toEqual(files);
    expect(files.length).toBeGreaterThanOrEqual(50);
  });

  for (const origin of origins) {
    test(`${origin.repository.replace("https://github.com/", "")}: ${origin.path}`, () => {
      const args = Object.entries(origin.buildArgs ?? {}).flatMap(([k, v]) => ["--build-arg", `${k}=${v}`]);
      const result = runMemobuild(["graph", "-f", join(corpus, origin.file), "--format", "json", ...args, emptyContext]);
      // Only the note that a base image this machine lacks may set a variable the file reads.
      expect(result.stderr.split("\n").filter((l) => l && !/^warning: .*: \$\w+ may come from the base image /.test(l))).toEqual([]);
      expect(result.exitCode).toBe(0);
      expect(JSON.parse(result.stdout).nodes.length).toBeGreaterThan(0);
    });
  }
});
