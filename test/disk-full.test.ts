/**
 * A full disk (issue 12): RUN packing, COPY, ADD and image import each end with one clear
 * message and exit 1 (never "internal error" and a stack), leave no staging behind, and the
 * cache works again once there is room. The cache lives on a small tmpfs mounted by the test.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statfsSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { memobuildBinary, REPO_ROOT, runMemobuild } from "./support/binary.ts";
import { tarBytes } from "./support/tar.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-disk-full-"));
const disk = join(work, "disk");
const cache = join(disk, "cache");
const filler = join(disk, "filler");
const FULL = "no space left on the device: free some space, or shrink the cache with `memobuild cache gc --max-size SIZE`";

const memobuild = (...args: string[]) => runMemobuild([...args, "--cache-dir", cache]);

function project(name: string, files: Record<string, string | Buffer>): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  for (const [file, content] of Object.entries(files)) writeFileSync(join(dir, file), content);
  return dir;
}

/** Fills the disk until about `free` bytes are left. */
function fillLeaving(free: number) {
  const stats = statfsSync(disk);
  const available = stats.bavail * stats.bsize;
  writeFileSync(filler, Buffer.alloc(Math.max(0, available - free)));
}

beforeAll(() => {
  const prepare = Bun.spawnSync(["bash", join(REPO_ROOT, "scripts/prepare-base-rootfs.sh")], { stderr: "pipe" });
  if (prepare.exitCode !== 0) throw new Error(prepare.stderr.toString());
  memobuildBinary();
  mkdirSync(disk);
  const mount = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", disk], { stderr: "pipe" });
  if (mount.exitCode !== 0) throw new Error(mount.stderr.toString());
  const base = memobuild("build", join(REPO_ROOT, "examples/base"), "-t", "memobuild/busybox:latest");
  if (base.exitCode !== 0) throw new Error(base.stderr);
}, 120_000);

afterAll(() => {
  Bun.spawnSync(["umount", disk]);
  rmSync(work, { recursive: true, force: true });
});

const random = (bytes: number) => Buffer.from(crypto.getRandomValues(new Uint8Array(bytes)));

const tarOf = (name: string, content: Buffer) => tarBytes([[{ name }, content]]);

describe("a full disk", () => {
  // [case, room left, command]: the RUN itself fits, packing its layer does not.
  const cases: [string, number, () => string[]][] = [
    ["RUN (its upper layer packed)", 1_300_000, () => ["build", project("run", { Dockerfile: "FROM memobuild/busybox\nRUN head -c 1000000 /dev/urandom > /f\n" })]],
    ["COPY", 300_000, () => ["build", project("copy", { Dockerfile: "FROM memobuild/busybox\nCOPY big /big\n", big: random(1_000_000) })]],
    ["ADD of an archive", 300_000, () => ["build", project("add", { Dockerfile: "FROM memobuild/busybox\nADD big.tar /x/\n", "big.tar": tarOf("big", random(1_000_000)) })]],
  ];
  for (const [name, room, args] of cases) {
    test(`${name}: one clear message, exit 1, nothing left in tmp/`, () => {
      const command = args();
      fillLeaving(room);
      try {
        const result = memobuild(...command, "--progress", "plain");
        expect(result.stderr).toContain(FULL);
        expect(result.stderr).not.toContain("internal error");
        expect(result.exitCode).toBe(1);
        expect(readdirSync(join(cache, "tmp"))).toEqual([]);
      } finally {
        rmSync(filler, { force: true });
      }
      // With room again, the same build works.
      expect(memobuild(...command).exitCode).toBe(0);
    }, 60_000);
  }

  test("image import: one clear message, exit 1, and it works with room", () => {
    const archive = join(work, "image.tar");
    const layer = tarOf("big", random(1_000_000));
    const layerDigest = `sha256:${new Bun.CryptoHasher("sha256").update(layer).digest("hex")}`;
    const config = JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [layerDigest] } });
    const manifest = JSON.stringify([{ Config: "config.json", RepoTags: ["full:1"], Layers: ["layer.tar"] }]);
    writeFileSync(archive, tarBytes([[{ name: "manifest.json" }, manifest], [{ name: "config.json" }, config], [{ name: "layer.tar" }, layer]]));
    fillLeaving(300_000);
    try {
      const result = memobuild("image", "import", `docker-archive:${archive}`);
      expect(result.stderr).toBe(`memobuild: ${FULL}\n`);
      expect(result.exitCode).toBe(1);
      expect(readdirSync(join(cache, "tmp"))).toEqual([]);
    } finally {
      rmSync(filler, { force: true });
    }
    expect(memobuild("image", "import", `docker-archive:${archive}`).exitCode).toBe(0);
  }, 60_000);
});

describe("decompression bombs stop at MEMOBUILD_MAX_UNPACKED_SIZE", () => {
  const LIMIT = { MEMOBUILD_MAX_UNPACKED_SIZE: "1M" };
  const bomb = Buffer.from(Bun.gzipSync(new Uint8Array(tarOf("zeros", Buffer.alloc(4 * 1024 * 1024)))));

  test("ADD of a gzip archive", () => {
    const dir = project("bomb-add", { Dockerfile: "FROM memobuild/busybox\nADD bomb.tar.gz /x/\n", "bomb.tar.gz": bomb });
    const result = runMemobuild(["build", dir, "--cache-dir", cache], { env: LIMIT });
    expect(result.stderr).toContain("ADD bomb.tar.gz /x/: ADD bomb.tar.gz: the gzip archive unpacks to more than 1048576 bytes (the limit is MEMOBUILD_MAX_UNPACKED_SIZE=1048576)");
    expect(result.exitCode).toBe(1);
    expect(readdirSync(join(cache, "tmp"))).toEqual([]);
  });

  test("a gzip layer of an imported image", () => {
    const layout = join(work, "bomb-layout");
    mkdirSync(join(layout, "blobs/sha256"), { recursive: true });
    const put = (bytes: Buffer | string) => {
      const digest = `sha256:${new Bun.CryptoHasher("sha256").update(bytes).digest("hex")}`;
      writeFileSync(join(layout, "blobs", digest.replace(":", "/")), bytes);
      return { digest, size: Buffer.byteLength(bytes) };
    };
    const diffId = `sha256:${new Bun.CryptoHasher("sha256").update(Bun.gunzipSync(new Uint8Array(bomb))).digest("hex")}`;
    const config = put(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [diffId] } }));
    const layer = put(bomb);
    const manifest = put(JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config }, layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", ...layer }] }));
    writeFileSync(join(layout, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
    writeFileSync(join(layout, "index.json"), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", ...manifest }] }));
    const result = runMemobuild(["image", "import", `oci:${layout}`, "-t", "bomb:1", "--cache-dir", cache], { env: LIMIT });
    expect(result.stderr).toContain(`layer ${layer.digest} unpacks to more than 1048576 bytes (the limit is MEMOBUILD_MAX_UNPACKED_SIZE=1048576)`);
    expect(result.exitCode).toBe(1);
    expect(readdirSync(join(cache, "tmp"))).toEqual([]); // staging of the failed import is gone
    // Within the limit it imports.
    expect(runMemobuild(["image", "import", `oci:${layout}`, "-t", "bomb:1", "--cache-dir", cache]).exitCode).toBe(0);
  });
});
