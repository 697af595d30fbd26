/**
 * Contexts as buildx takes them besides a directory: `-` (a Dockerfile or a tar on stdin) and a
 * git URL served by a `git daemon` the test starts on 127.0.0.1, at a branch and a subdirectory.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { memobuildBinary } from "./support/binary.ts";
import { buildBaseImage, machineWithBase } from "./support/base-image.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-context-sources-"));
const baseOci = join(work, "base-oci");
let cache = "";
let daemon: ReturnType<typeof Bun.spawn>;
const port = 19000 + (process.pid % 500);

beforeAll(async () => {
  buildBaseImage(work, baseOci);
  cache = machineWithBase(join(work, "cache"), baseOci);
  const repo = join(work, "git", "repo");
  mkdirSync(join(repo, "app"), { recursive: true });
  writeFileSync(join(repo, "app", "Dockerfile"), "FROM memobuild/busybox\nCOPY greeting /greeting\n");
  writeFileSync(join(repo, "app", "greeting"), "from main\n");
  const git = (...args: string[]) => expect(Bun.spawnSync(["git", "-C", repo, "-c", "user.name=t", "-c", "user.email=t@example.com", ...args], { stderr: "pipe" }).exitCode).toBe(0);
  git("init", "-q", "-b", "main");
  git("add", "-A");
  git("commit", "-qm", "one");
  git("checkout", "-q", "-b", "feature");
  writeFileSync(join(repo, "app", "greeting"), "from feature\n");
  git("commit", "-qam", "two");
  daemon = Bun.spawn(["git", "daemon", `--base-path=${join(work, "git")}`, "--export-all", "--reuseaddr", "--listen=127.0.0.1", `--port=${port}`, join(work, "git")], { stdout: "ignore", stderr: "ignore" });
  await Bun.sleep(500);
}, 120_000);

afterAll(async () => {
  daemon?.kill();
  await daemon?.exited;
  rmSync(work, { recursive: true, force: true });
});

function build(args: string[], stdin?: Uint8Array) {
  const result = Bun.spawnSync([memobuildBinary(), "build", ...args, "--cache-dir", cache, "--progress", "plain"], { stdin: stdin ?? "ignore", stdout: "pipe", stderr: "pipe" });
  return { exitCode: result.exitCode, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
}

describe("build -", () => {
  test("a Dockerfile on stdin builds with an empty context", () => {
    const out = join(work, "stdin-dockerfile");
    const result = build(["-", "-o", `type=local,dest=${out}`], Buffer.from("FROM memobuild/busybox\nRUN echo piped > /piped\n"));
    expect(result.stderr).toContain("image ");
    expect(result.exitCode).toBe(0);
    expect(readFileSync(join(out, "piped"), "utf8")).toBe("piped\n");
  });

  test("a gzip tar on stdin is the context (its Dockerfile included)", () => {
    const dir = join(work, "tarred");
    mkdirSync(dir);
    writeFileSync(join(dir, "Dockerfile"), "FROM memobuild/busybox\nCOPY data /data\n");
    writeFileSync(join(dir, "data"), "in the tar\n");
    const tar = Bun.spawnSync(["tar", "-C", dir, "-czf", "-", "."]).stdout;
    const out = join(work, "stdin-tar");
    const result = build(["-", "-o", `type=local,dest=${out}`], tar);
    expect(result.exitCode).toBe(0);
    expect(readFileSync(join(out, "data"), "utf8")).toBe("in the tar\n");
  });

  test("a tar whose entries climb out is refused, and nothing lands outside", () => {
    const marker = join(work, "escaped");
    const evil = join(work, "evil");
    mkdirSync(join(evil, "a"), { recursive: true });
    writeFileSync(join(evil, "a", "x"), "x");
    // tar's --transform writes the hostile name into the archive itself.
    const tar = Bun.spawnSync(["tar", "-C", evil, "--transform", `s|a/x|../../${marker.slice(1)}|`, "-cf", "-", "a/x"]).stdout;
    const result = build(["-"], tar);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain("escapes the layer root");
    expect(existsSync(marker)).toBe(false);
  });

  test("-f - with a context, and both from stdin refused", () => {
    const dir = join(work, "with-context");
    mkdirSync(dir);
    writeFileSync(join(dir, "f"), "file\n");
    expect(build([dir, "-f", "-", "-q"], Buffer.from("FROM memobuild/busybox\nCOPY f /f\n")).exitCode).toBe(0);
    const both = build(["-", "-f", "-"], Buffer.from("FROM scratch\n"));
    expect(both.exitCode).toBe(2);
    expect(both.stderr).toContain("the context and the Dockerfile cannot both come from stdin");
  });
});

describe("git contexts", () => {
  test("URL#branch:subdir: the branch's commit is fetched and named; the subdirectory is the context", () => {
    const out = join(work, "git-out");
    const result = build([`git://127.0.0.1:${port}/repo#feature:app`, "-o", `type=local,dest=${out}`]);
    expect(result.stderr).toMatch(/git context git:\/\/127\.0\.0\.1:\d+\/repo#feature:app at commit [0-9a-f]{40}/);
    expect(result.exitCode).toBe(0);
    expect(readFileSync(join(out, "greeting"), "utf8")).toBe("from feature\n");
    expect(existsSync(join(out, ".git"))).toBe(false);
  });

  test("--build-context NAME=GIT-URL#ref:subdir: COPY --from=NAME reads the fetched commit, and its steps are keyed by it", () => {
    const dir = join(work, "named-git");
    mkdirSync(dir);
    writeFileSync(join(dir, "Dockerfile"), "FROM memobuild/busybox\nCOPY --from=src greeting /from-git\n");
    const named = (ref: string, n: number) => {
      const out = join(work, `named-git-out-${n}`);
      const meta = join(work, `named-git-meta-${n}.json`);
      const result = build([dir, "--build-context", `src=git://127.0.0.1:${port}/repo#${ref}:app`, "-o", `type=local,dest=${out}`, "--metadata-file", meta]);
      expect(result.exitCode).toBe(0);
      expect(result.stderr).toMatch(new RegExp(`--build-context src: git git://127\\.0\\.0\\.1:\\d+/repo#${ref}:app at commit [0-9a-f]{40}`));
      const copy = JSON.parse(readFileSync(meta, "utf8")).steps.find((s: { instruction: string }) => s.instruction.startsWith("COPY"));
      return { text: readFileSync(join(out, "from-git"), "utf8"), key: copy.key as string, status: copy.status as string };
    };
    const feature = named("feature", 1);
    expect(feature.text).toBe("from feature\n");
    const main = named("main", 2);
    expect(main.text).toBe("from main\n");
    expect(main.key).not.toBe(feature.key);
    const again = named("feature", 3);
    expect(again).toEqual({ ...feature, status: "cached-local" });
    expect(build([dir, "--build-context", `src=git://127.0.0.1:${port}/repo#nope`]).stderr).toContain("--build-context src git://");
  });

  test("a ref that is not there, or a subdirectory that climbs out, is an error naming it", () => {
    expect(build([`git://127.0.0.1:${port}/repo#nope:app`]).stderr).toContain("couldn't find remote ref nope");
    expect(build([`git://127.0.0.1:${port}/repo#main:../..`]).stderr).toContain("../.. is not a directory of the repository");
  });
});
