/**
 * `build --load` into a real Docker Engine (Debian's dockerd on a private socket, as the parity
 * suite starts it): the engine names the image by the ID `-q` prints and runs it.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildBaseImage, machineWithBase, writeProject } from "./support/base-image.ts";
import { runMemobuild } from "./support/binary.ts";
import { BuildKit } from "./parity/buildkit.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-load-"));
let engine: BuildKit;
let cache = "";
beforeAll(async () => {
  buildBaseImage(work, join(work, "base-oci"));
  cache = machineWithBase(join(work, "cache"), join(work, "base-oci"));
  engine = await BuildKit.start(join(work, "docker"));
}, 120_000);
afterAll(async () => {
  await engine?.stop();
  rmSync(work, { recursive: true, force: true });
});

test("--load puts the image and its names into the engine at DOCKER_HOST, which runs it", () => {
  const dir = writeProject(join(work, "app"), { Dockerfile: "FROM memobuild/busybox\nRUN echo loaded > /msg\nCMD [\"cat\", \"/msg\"]\n" });
  const built = runMemobuild(["build", dir, "--cache-dir", cache, "-t", "app:1", "-t", "team/app:2", "--load", "-q"], { env: { DOCKER_HOST: engine.env.DOCKER_HOST! } });
  expect(built.stderr).toBe("");
  const imageId = built.stdout.trim();
  expect(engine.docker("image", "inspect", "app:1", "--format", "{{.Id}} {{.RepoTags}}").stdout.trim()).toBe(`${imageId} [app:1 team/app:2]`);
  expect(engine.docker("run", "--rm", "--network", "none", "app:1").stdout).toBe("loaded\n");
}, 60_000); // a build, a load and a container start: past bun's 5 s default on a busy machine

test("with no engine answering, --load is a clear error naming where it looked", () => {
  const dir = writeProject(join(work, "none"), { Dockerfile: "FROM memobuild/busybox\n" });
  const socket = join(work, "no-engine.sock");
  const result = runMemobuild(["build", dir, "--cache-dir", cache, "--load", "--progress", "plain"], { env: { DOCKER_HOST: `unix://${socket}` } });
  expect(result.exitCode).toBe(1);
  // Asked before the build: no step ran.
  expect(result.stderr).toBe(`memobuild: --load: no Docker Engine at unix://${socket} (${socket} does not exist): start one, set DOCKER_HOST, or write an archive with -o type=docker,dest=FILE\n`);
  const bad = runMemobuild(["build", dir, "--cache-dir", cache, "--load", "--progress", "plain"], { env: { DOCKER_HOST: "ssh://user@host" } });
  expect(bad.stderr).toBe("memobuild: DOCKER_HOST=ssh://user@host: use unix:///path/to/docker.sock or tcp://HOST:PORT (TLS and ssh:// are not supported)\n");
  expect(bad.exitCode).toBe(2);
});
