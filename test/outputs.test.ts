/**
 * `--output` as buildx takes it, end to end: `-o -` and `dest=-` stream through a pipe to a
 * reader slower than the build, `-o DIR`, `type=docker` archives, `type=image,name=`, and the
 * errors for what is not supported.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { memobuildBinary, REPO_ROOT, runMemobuild } from "./support/binary.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-outputs-"));
const cacheDir = join(work, "cache");
let dir: string;

beforeAll(() => {
  const prepare = Bun.spawnSync(["bash", join(REPO_ROOT, "scripts/prepare-base-rootfs.sh")], { stderr: "pipe" });
  if (prepare.exitCode !== 0) throw new Error(prepare.stderr.toString());
  const base = runMemobuild(["build", join(REPO_ROOT, "examples/base"), "--cache-dir", cacheDir, "-t", "memobuild/busybox:latest", "--progress", "quiet"]);
  if (base.exitCode !== 0) throw new Error(base.stderr);
  dir = join(work, "project");
  mkdirSync(dir);
  writeFileSync(join(dir, "Dockerfile"), "FROM memobuild/busybox\nRUN echo streamed > /marker\n");
}, 120_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The build's stdout through a pipe, read slowly (the build must wait for it, not fail). */
async function buildToPipe(...flags: string[]): Promise<{ exitCode: number; stdout: Buffer; stderr: string }> {
  const child = Bun.spawn([memobuildBinary(), "build", dir, "--cache-dir", cacheDir, "--progress", "plain", ...flags], { stdout: "pipe", stderr: "pipe" });
  const chunks: Uint8Array[] = [];
  const stderr = new Response(child.stderr).text();
  for await (const chunk of child.stdout) {
    chunks.push(chunk);
    await Bun.sleep(2);
  }
  return { exitCode: await child.exited, stdout: Buffer.concat(chunks), stderr: await stderr };
}

/** The names in a tar given as bytes, and one member's content. */
function tarOf(bytes: Buffer, member?: string): { names: string[]; content?: string } {
  const file = join(work, `t-${Math.random().toString(36).slice(2)}.tar`);
  writeFileSync(file, bytes);
  const names = Bun.spawnSync(["tar", "-tf", file]).stdout.toString().trim().split("\n");
  const content = member ? Bun.spawnSync(["tar", "-xOf", file, member]).stdout.toString() : undefined;
  rmSync(file);
  return { names, content };
}

test("-o - and type=tar,dest=- stream the file system as a tar on stdout, through a slow pipe", async () => {
  for (const flag of ["-", "type=tar,dest=-"]) {
    const result = await buildToPipe("-o", flag);
    expect({ flag, exitCode: result.exitCode }).toEqual({ flag, exitCode: 0 });
    const tar = tarOf(result.stdout, "marker");
    expect(tar.names).toContain("bin/busybox");
    expect(tar.content).toBe("streamed\n");
    expect(result.stderr).toContain("output tar -\n");
  }
}, 60_000);

test("type=oci,dest=- is an OCI archive and type=docker,dest=- a docker archive on stdout, with their manifest digests reported", async () => {
  const oci = await buildToPipe("-o", "type=oci,dest=-,name=app:1");
  const index = JSON.parse(tarOf(oci.stdout, "index.json").content!);
  expect(index.manifests[0].annotations["org.opencontainers.image.ref.name"]).toBe("app:1");
  expect(oci.stderr).toContain(`output oci - manifest ${index.manifests[0].digest}\n`);
  const docker = await buildToPipe("-o", "type=docker,dest=-");
  const manifest = JSON.parse(tarOf(docker.stdout, "manifest.json").content!);
  expect(manifest[0].Config).toMatch(/^[0-9a-f]{64}\.json$/);
  expect(tarOf(docker.stdout).names).toEqual(expect.arrayContaining(["manifest.json", manifest[0].Config, ...manifest[0].Layers]));
}, 60_000);

test("-o DIR writes the file system into DIR; type=docker,dest=FILE a docker archive; type=image,name= names the image", () => {
  const out = join(work, "out-dir");
  const archive = join(work, "docker.tar");
  const result = runMemobuild(["build", dir, "--cache-dir", cacheDir, "--progress", "plain", "-o", out, "-o", `type=docker,dest=${archive},name=loaded:2`, "-o", "type=image,name=named:3"]);
  expect(result.exitCode).toBe(0);
  expect(readFileSync(join(out, "marker"), "utf8")).toBe("streamed\n");
  const manifest = JSON.parse(Bun.spawnSync(["tar", "-xOf", archive, "manifest.json"]).stdout.toString());
  expect(manifest[0].RepoTags).toEqual(["loaded:2"]);
  expect(result.stderr).toContain("naming to docker.io/library/named:3\n");
  expect(runMemobuild(["run", "named:3", "--cache-dir", cacheDir, "--", "cat", "/marker"]).stdout).toBe("streamed\n");
  expect(readdirSync(work).filter((n) => n.startsWith("t-"))).toEqual([]);
}, 60_000);

test("what cannot be done is refused before the build, listing what can", () => {
  const refused = (spec: string, ...more: string[]) => runMemobuild(["build", dir, "--cache-dir", cacheDir, "-o", spec, ...more]);
  const unknown = refused("type=s3,dest=x");
  expect(unknown.exitCode).toBe(2);
  expect(unknown.stderr).toContain("--output type=s3 is not supported: use oci, oci-archive, docker, docker-archive, image, registry, local, tar");
  expect(refused("type=docker,dest=x,compression=zstd").stderr).toContain('type=docker takes no "compression" (it takes dest, name)');
  expect(refused("-", "-q").stderr).toContain("writes the image to stdout, where --progress quiet (or -q) prints too");
});
