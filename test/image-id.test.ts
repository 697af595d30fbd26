/**
 * One image ID everywhere (issue 29): the config digest `-q`, `--iidfile`, the summary and
 * `image ls` show is what `run`, `image export`, `image rm`, `image push` and a later `FROM`
 * take, in full, `sha256:`-prefixed or as a unique prefix; an untagged build can be used.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT, runMemobuild } from "./support/binary.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-image-id-"));
const cacheDir = join(work, "cache");
/** The binary on this test's cache (the flag goes before a command given after `--`). */
function memobuild(...args: string[]) {
  const end = args.includes("--") ? args.indexOf("--") : args.length;
  return runMemobuild([...args.slice(0, end), "--cache-dir", cacheDir, ...args.slice(end)]);
}

beforeAll(() => {
  const prepare = Bun.spawnSync(["bash", join(REPO_ROOT, "scripts/prepare-base-rootfs.sh")], { stderr: "pipe" });
  if (prepare.exitCode !== 0) throw new Error(prepare.stderr.toString());
  const base = memobuild("build", join(REPO_ROOT, "examples/base"), "-t", "memobuild/busybox:latest", "--progress", "quiet");
  if (base.exitCode !== 0) throw new Error(base.stderr);
}, 120_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

function project(name: string, dockerfile: string): string {
  const dir = join(work, name);
  mkdirSync(dir);
  writeFileSync(join(dir, "Dockerfile"), dockerfile);
  return dir;
}

test("an untagged build runs, exports and is built on by the ID -q prints, in every spelling", () => {
  const dir = project("untagged", "FROM memobuild/busybox\nRUN echo untagged > /marker\n");
  const iidfile = join(work, "iid");
  const quiet = memobuild("build", dir, "-q", "--iidfile", iidfile);
  expect(quiet.exitCode).toBe(0);
  const id = quiet.stdout.trim();
  expect(id).toMatch(/^sha256:[0-9a-f]{64}$/);
  expect(readFileSync(iidfile, "utf8")).toBe(id);
  // The summary names the same ID, with and without an output.
  const archive = join(work, "untagged.tar");
  const plain = memobuild("build", dir, "--progress", "plain", "-o", `type=oci-archive,dest=${archive}`);
  expect(plain.stderr).toContain(`\nimage ${id} (`);
  expect(plain.stderr).toMatch(new RegExp(`\\noutput oci-archive ${archive} manifest sha256:[0-9a-f]{64}\\n`));
  for (const spelling of [id, id.slice(7), `sha256:${id.slice(7, 19)}`, id.slice(7, 19)]) {
    const run = memobuild("run", spelling, "--", "cat", "/marker");
    expect({ spelling, stdout: run.stdout, stderr: run.stderr }).toEqual({ spelling, stdout: "untagged\n", stderr: "" });
  }
  expect(memobuild("image", "ls").stdout).toMatch(new RegExp(`^<none> +${id.slice(7, 19)} +sha256:`, "m"));
  const exported = join(work, "by-id.tar");
  expect(memobuild("image", "export", id.slice(7, 19), "--output", `type=docker-archive,dest=${exported}`).exitCode).toBe(0);
  expect(existsSync(exported)).toBe(true);
  // A later build starts FROM it, by ID.
  const child = project("child", `FROM ${id}\nRUN cat /marker > /copied\n`);
  const childId = memobuild("build", child, "-q").stdout.trim();
  expect(memobuild("run", childId, "--", "cat", "/copied").stdout).toBe("untagged\n");
  const short = project("child-short", `FROM sha256:${id.slice(7, 19)}\nRUN cat /marker > /copied\n`);
  expect(memobuild("build", short, "-q").stdout.trim()).toBe(childId); // the same base: the same keys
  // explain reads the base by its ID as the build did: every step hits.
  const explained = memobuild("explain", short);
  expect({ exitCode: explained.exitCode, stdout: explained.stdout }).toEqual({ exitCode: 0, stdout: expect.stringContaining("1 of 1 step(s) would come from the cache; 0 would run") });
}, 60_000);

test("an ID the store lacks is an error, never a pull; image push of an ID needs a destination", () => {
  const missing = project("missing", `FROM sha256:${"0".repeat(64)}\nRUN true\n`);
  const result = memobuild("build", missing, "--progress", "plain");
  expect(result.exitCode).toBe(1);
  expect(result.stderr).toContain(`no image with ID sha256:${"0".repeat(64)} in the local store`);
  expect(result.stderr).not.toContain("pulling");
  const id = memobuild("build", project("push", "FROM memobuild/busybox\nRUN echo p > /p\n"), "-q").stdout.trim();
  const push = memobuild("image", "push", id);
  expect(push.exitCode).toBe(2);
  expect(push.stderr).toContain(`${id} is an image ID, which names no repository: say where it goes`);
}, 60_000);

test("image rm by ID removes the image and all its names; by its last name too", () => {
  const dir = project("named", "FROM memobuild/busybox\nRUN echo named > /n\n");
  const id = memobuild("build", dir, "-q", "-t", "one:1", "-t", "two:1").stdout.trim();
  const removed = memobuild("image", "rm", id.slice(7, 20));
  expect(removed.stdout).toBe(`untagged one:1\nuntagged two:1\ndeleted ${id}\n`);
  expect(memobuild("run", id, "--", "true").stderr).toContain(`no image ${id} in the local store`);
  expect(memobuild("image", "ls").stdout).not.toContain(id.slice(7, 19));
  memobuild("build", dir, "-q", "-t", "three:1");
  expect(memobuild("image", "rm", "three:1").stdout).toBe(`untagged three:1\ndeleted ${id}\n`);
}, 60_000);
