/**
 * zstd layers, as buildx writes them (`compression=zstd[,compression-level=N][,force-compression=true]`):
 * an OCI output whose layers are tar+zstd, that skopeo reads and that MemoBuild imports, unpacks
 * (checking each layer's diff ID) and builds FROM; a gzip base stays gzip unless forced.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT, runMemobuild } from "./support/binary.ts";
import { buildBaseImage, machineWithBase, writeProject } from "./support/base-image.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-zstd-"));
const baseOci = join(work, "base-oci");
beforeAll(() => buildBaseImage(work, baseOci), 120_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The layers of the one image in an OCI layout: media type and digest. */
function layers(dir: string): { mediaType: string; digest: string }[] {
  const index = JSON.parse(readFileSync(join(dir, "index.json"), "utf8"));
  const manifest = JSON.parse(readFileSync(join(dir, "blobs/sha256", index.manifests[0].digest.slice(7)), "utf8"));
  return manifest.layers;
}

test("compression=zstd writes tar+zstd layers that skopeo reads and MemoBuild imports and builds on", () => {
  const cache = machineWithBase(join(work, "a"), baseOci);
  const out = join(work, "z");
  const built = runMemobuild(["build", join(REPO_ROOT, "examples/hello"), "--cache-dir", cache, "-o", `type=oci,dest=${out},compression=zstd,force-compression=true`, "-q"]);
  expect(built.stderr).toBe("");
  expect(layers(out).map((l) => l.mediaType)).toEqual(Array(layers(out).length).fill("application/vnd.oci.image.layer.v1.tar+zstd"));
  const skopeo = Bun.spawnSync(["skopeo", "inspect", `oci:${out}`], { stdout: "pipe", stderr: "pipe" });
  expect(skopeo.exitCode).toBe(0);
  // Another machine imports it (each zstd layer unpacked and checked against its diff ID) and builds FROM it.
  const other = join(work, "b");
  expect(runMemobuild(["image", "import", `oci:${out}`, "--cache-dir", other, "-t", "zhello:1"]).exitCode).toBe(0);
  const project = writeProject(join(work, "on-zstd"), { Dockerfile: "FROM zhello:1\nUSER root\nRUN ls /usr/local/bin/greet > /found\n" });
  const local = join(work, "on-zstd-out");
  expect(runMemobuild(["build", project, "--cache-dir", other, "-o", `type=local,dest=${local}`]).exitCode).toBe(0);
  expect(readFileSync(join(local, "found"), "utf8")).toBe("/usr/local/bin/greet\n");
}, 120_000);

test("a compressed base keeps its compression unless forced; the level changes the blobs", () => {
  const cache = machineWithBase(join(work, "c"), baseOci);
  // A base whose layers are gzip: the busybox image exported and imported again.
  const gz = join(work, "gz");
  expect(runMemobuild(["image", "export", "memobuild/busybox:latest", "--cache-dir", cache, "--output", `type=oci,dest=${gz}`]).exitCode).toBe(0);
  const mixed = join(work, "mixed-cache");
  expect(runMemobuild(["image", "import", `oci:${gz}`, "--cache-dir", mixed, "-t", "gzbase:1"]).exitCode).toBe(0);
  const project = writeProject(join(work, "on-gz"), { Dockerfile: "FROM gzbase:1\nRUN echo x > /x\n" });
  const kept = join(work, "kept");
  expect(runMemobuild(["build", project, "--cache-dir", mixed, "-o", `type=oci,dest=${kept},compression=zstd`]).exitCode).toBe(0);
  const kinds = (dir: string) => layers(dir).map((l) => l.mediaType.split("+")[1]);
  expect(kinds(kept)).toEqual([...Array(layers(gz).length).fill("gzip"), "zstd"]); // the base's layers as they came
  const forced = join(work, "forced");
  expect(runMemobuild(["build", project, "--cache-dir", mixed, "-o", `type=oci,dest=${forced},compression=zstd,force-compression=true`]).exitCode).toBe(0);
  expect(kinds(forced)).toEqual(Array(layers(gz).length + 1).fill("zstd"));
  const stronger = join(work, "stronger");
  expect(runMemobuild(["build", project, "--cache-dir", mixed, "-o", `type=oci,dest=${stronger},compression=zstd,compression-level=19`]).exitCode).toBe(0);
  expect(layers(stronger).at(-1)!.digest).not.toBe(layers(kept).at(-1)!.digest);
  const bad = runMemobuild(["build", project, "--cache-dir", mixed, "-o", `type=oci,dest=${join(work, "bad")},compression=zstd,compression-level=23`]);
  expect(bad.exitCode).toBe(2);
  expect(bad.stderr).toContain("compression-level must be a whole number from 1 to 22 for zstd");
}, 120_000);
