/**
 * The smaller stumbles of a docker user's first day (issue 29): a mistyped base image or
 * --target gets a "did you mean", and --load without a Docker Engine fails before the build.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT, runMemobuild } from "./support/binary.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-first-day-"));
const cacheDir = join(work, "cache");

beforeAll(() => {
  const prepare = Bun.spawnSync(["bash", join(REPO_ROOT, "scripts/prepare-base-rootfs.sh")], { stderr: "pipe" });
  if (prepare.exitCode !== 0) throw new Error(prepare.stderr.toString());
  // The base under a second name, on a registry nothing listens on (port 9): a pull fails at once.
  const base = runMemobuild(["build", join(REPO_ROOT, "examples/base"), "--cache-dir", cacheDir, "-t", "memobuild/busybox:latest", "-t", "127.0.0.1:9/team/app:1", "--progress", "quiet"]);
  if (base.exitCode !== 0) throw new Error(base.stderr);
}, 120_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

function project(name: string, dockerfile: string): string {
  const dir = join(work, name);
  mkdirSync(dir);
  writeFileSync(join(dir, "Dockerfile"), dockerfile);
  return dir;
}

test("a base image that is a typo of a local one: file:line, and the local image it may have meant", () => {
  const dir = project("typo", "FROM memobuild/busybox AS tools\nRUN true\nFROM 127.0.0.1:9/team/ap:1\nCOPY --from=tools /bin/busybox /b\n");
  const result = runMemobuild(["build", dir, "--cache-dir", cacheDir, "--progress", "plain"]);
  expect(result.exitCode).toBe(1);
  const error = result.stderr.split("\n").find((l) => l.startsWith("memobuild: "))!;
  expect(error).toStartWith(`memobuild: ${join(dir, "Dockerfile")}:3:1: FROM 127.0.0.1:9/team/ap:1: `);
  expect(error).toEndWith("(did you mean 127.0.0.1:9/team/app:1 (local)?)");
  // explain pulls nothing: it says the same where it stops.
  const explained = runMemobuild(["explain", dir, "--cache-dir", cacheDir]);
  expect(explained.stderr).toBe(`memobuild: ${join(dir, "Dockerfile")}:3:1: FROM 127.0.0.1:9/team/ap:1: image 127.0.0.1:9/team/ap:1 is not in the local image store (did you mean 127.0.0.1:9/team/app:1 (local)? Else pull it with: memobuild image pull 127.0.0.1:9/team/ap:1, or import it)\n`);
  // Far from every local name: no guess.
  const far = project("far", "FROM 127.0.0.1:9/something/else:1\n");
  expect(runMemobuild(["build", far, "--cache-dir", cacheDir]).stderr).not.toContain("did you mean");
});

test("a mistyped --target suggests the closest stage", () => {
  const dir = project("target", "FROM memobuild/busybox AS build\nRUN true\nFROM build AS final\n");
  const result = runMemobuild(["build", dir, "--cache-dir", cacheDir, "--target", "biuld"]);
  expect(result.exitCode).toBe(2);
  expect(result.stderr).toBe(`memobuild: --target biuld: ${join(dir, "Dockerfile")} has no such stage (did you mean build?) (stages: build, final)\n`);
});

test("--load and -o type=docker without a Docker Engine fail before the build, saying what to do", () => {
  const dir = project("load", "FROM memobuild/busybox\nRUN echo never > /ran\n");
  const socket = join(work, "no-docker.sock");
  for (const flag of ["--load", "--output=type=docker"]) {
    const result = runMemobuild(["build", dir, "--cache-dir", cacheDir, "--progress", "plain", flag], { env: { DOCKER_HOST: `unix://${socket}` } });
    expect({ flag, exitCode: result.exitCode }).toEqual({ flag, exitCode: 1 });
    expect(result.stderr).toBe(`memobuild: --load: no Docker Engine at unix://${socket} (${socket} does not exist): start one, set DOCKER_HOST, or write an archive with -o type=docker,dest=FILE\n`);
  }
});
