/**
 * The local store in process: every read checked against its digest, results write-once,
 * corrupt data removed rather than used, and gc keeping exactly what kept steps and named
 * images need.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TarWriter } from "../sys/tar.ts";
import { storeImage } from "../image/layout.ts";
import { BlobVerificationError, changedTooRecently, LocalStore, unmountBelow } from "./store.ts";
import { collectGarbage, directorySize, prune, usage } from "./gc.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-store-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let n = 0;
const fresh = () => LocalStore.open(join(work, `store${++n}`));
const MEDIA_TAR = "application/vnd.oci.image.layer.v1.tar";

/** A tar holding one file. */
function tarOf(name: string, content: string): Buffer {
  const chunks: Uint8Array[] = [];
  const writer = new TarWriter((c) => chunks.push(c));
  writer.add({ type: "file", name, mode: 0o644, uid: 0, gid: 0, size: content.length, mtime: 1 });
  writer.content(Buffer.from(content));
  writer.pad(content.length);
  writer.finish();
  return Buffer.concat(chunks);
}

/** A one-file layer tar in the store's blobs, recorded as a layer (uncompressed: digest = diff ID). */
function layer(store: LocalStore, name: string, content: string) {
  const blob = store.putBlob(tarOf(name, content));
  const record = { diffId: blob.digest, digest: blob.digest, size: blob.size, uncompressedSize: blob.size, mediaType: MEDIA_TAR };
  store.recordLayer(record);
  return record;
}

describe("blobs are checked whenever they are read", () => {
  test("readBlob: a changed or missing blob is an error naming the digest", () => {
    const store = fresh();
    const { digest } = store.putBlob("config bytes");
    expect(store.readBlob(digest).toString()).toBe("config bytes");
    writeFileSync(store.blobPath(digest), "config BYTES");
    expect(() => store.readBlob(digest)).toThrow(new RegExp(`^blob ${digest} is corrupt in the cache \\(its content hashes to sha256:[0-9a-f]{64}\\)$`));
    rmSync(store.blobPath(digest));
    expect(() => store.readBlob(digest)).toThrow(`blob ${digest} is missing from the cache`);
    store.close();
  });

  test("checkBlob: a corrupt layer blob is removed with its layer rows, so its steps run again", async () => {
    const store = fresh();
    const good = layer(store, "a", "a content");
    await store.checkBlob(good.digest);
    const bad = layer(store, "b", "b content");
    store.recordStep("k".repeat(64), bad.diffId, 5, "RUN make");
    expect(store.lookupStep("k".repeat(64))?.diffId).toBe(bad.diffId);
    writeFileSync(store.blobPath(bad.digest), "not the layer");
    await expect(store.checkBlob(bad.digest)).rejects.toThrow(BlobVerificationError);
    expect(store.hasBlob(bad.digest)).toBe(false);
    expect(store.layer(bad.diffId)).toBeUndefined();
    expect(store.lookupStep("k".repeat(64))).toBeUndefined(); // its result is no longer usable
    expect(store.layer(good.diffId)).toBeDefined();
    store.close();
  });

  test("adoptLayer: a blob that is not the tar its diff ID names is refused, and a known diff ID keeps its blob", async () => {
    const store = fresh();
    const real = layer(store, "f", "real");
    const other = store.putBlob("something else entirely");
    await expect(store.adoptLayer({ ...real, digest: other.digest, size: other.size })).rejects.toThrow(BlobVerificationError);
    expect(store.layer(real.diffId)?.digest).toBe(real.digest);
    const lying = store.putBlob("not a tar at all");
    await expect(store.adoptLayer({ diffId: `sha256:${"9".repeat(64)}`, digest: lying.digest, size: lying.size, uncompressedSize: lying.size, mediaType: MEDIA_TAR })).rejects.toThrow();
    expect(store.layer(`sha256:${"9".repeat(64)}`)).toBeUndefined();
    store.close();
  });
});

describe("step results are write-once", () => {
  test("a second record for a key keeps the first; the instruction is kept for cache ls", () => {
    const store = fresh();
    const first = store.recordStep("s".repeat(64), null, 7, "ENV A=1\nmore");
    const second = store.recordStep("s".repeat(64), null, 99, "ENV A=2");
    expect(second).toEqual(first);
    expect(store["db"].query("SELECT instruction, duration_ms FROM steps").get()).toEqual({ instruction: "ENV A=1", duration_ms: 7 });
    store.close();
  });

  test("a recorded layer keeps its blob; only a row whose blob is gone is replaced", () => {
    const store = fresh();
    const real = layer(store, "x", "x");
    const other = store.putBlob("other");
    store.recordLayer({ ...real, digest: other.digest });
    expect(store.layer(real.diffId)?.digest).toBe(real.digest);
    rmSync(store.blobPath(real.digest));
    store.recordLayer({ ...real, digest: other.digest });
    expect(store.layer(real.diffId)?.digest).toBe(other.digest);
    store.close();
  });
});

describe("gc keeps what kept steps and named images need", () => {
  test("an unreferenced layer goes; a layer a kept step or an image needs stays", async () => {
    const store = fresh();
    const kept = layer(store, "kept", "k");
    const imaged = layer(store, "imaged", "i");
    const loose = layer(store, "loose", "l");
    store.recordStep("1".repeat(64), kept.diffId, 1);
    const image = storeImage(store, { architecture: "amd64", os: "linux", config: {}, rootfs: { type: "layers", diff_ids: [imaged.diffId] } } as never, [{ mediaType: MEDIA_TAR, digest: imaged.digest, size: imaged.size }]);
    store.setImage("docker.io/library/kept:1", image.manifestDigest);
    const result = collectGarbage(store, Number.MAX_SAFE_INTEGER);
    expect(result.layersRemoved).toBe(1);
    expect(store.layer(loose.diffId)).toBeUndefined();
    expect(store.hasBlob(loose.digest)).toBe(false);
    expect(store.layer(kept.diffId)).toBeDefined();
    expect(store.layer(imaged.diffId)).toBeDefined();
    expect(store.hasBlob(image.manifestDigest)).toBe(true);
    expect(store.hasBlob(image.manifest.config.digest)).toBe(true);
    store.close();
  });

  test("to fit a size, the least recently used results go first, and a layer two steps share stays while one needs it", () => {
    const store = fresh();
    const shared = layer(store, "shared", "s".repeat(8192));
    const old = layer(store, "old", "o".repeat(8192));
    store.recordStep("a".repeat(64), old.diffId, 1);
    store.recordStep("b".repeat(64), shared.diffId, 1);
    store.recordStep("c".repeat(64), shared.diffId, 1);
    store["db"].query("UPDATE steps SET last_used = CASE key WHEN ? THEN 1 WHEN ? THEN 2 ELSE 3 END").run("a".repeat(64), "b".repeat(64));
    const total = () => Number(Bun.spawnSync(["du", "-sb", join(store.dir, "blobs"), join(store.dir, "snapshots")]).stdout.toString().split("\n").filter(Boolean).reduce((sum, line) => sum + Number(line.split("\t")[0]), 0));
    // Just under what the cache holds: the oldest result goes, and its layer with it; nothing more.
    const first = collectGarbage(store, total() - 1);
    expect(first).toMatchObject({ stepsRemoved: 1, layersRemoved: 1 });
    expect(store.lookupStep("a".repeat(64))).toBeUndefined();
    expect(store.layer(old.diffId)).toBeUndefined();
    // Room for nothing: b goes but its layer stays while c needs it, then c goes and the layer with it.
    store["db"].query("UPDATE steps SET last_used = CASE key WHEN ? THEN 1 ELSE 2 END").run("b".repeat(64));
    const all = collectGarbage(store, 0);
    expect(all).toMatchObject({ stepsRemoved: 2, layersRemoved: 1 });
    expect(store.layer(shared.diffId)).toBeUndefined();
    store.close();
  });

  test("prune removes every result but keeps named images", () => {
    const store = fresh();
    const a = layer(store, "a", "a");
    store.recordStep("d".repeat(64), a.diffId, 1);
    const result = prune(store, { mounts: false });
    expect(result).toMatchObject({ stepsRemoved: 1, layersRemoved: 1 });
    expect(store.counts().steps).toBe(0);
    store.close();
  });
});

describe("what a crashed process left", () => {
  test("staging directories of dead processes are removed when the store opens; live ones stay", () => {
    const dir = join(work, `store${++n}`);
    LocalStore.open(dir).close();
    const tmp = join(dir, "tmp");
    const dead = join(tmp, "999999999-abcdef-step");
    const live = join(tmp, `${process.ppid}-abcdef-step`);
    mkdirSync(join(dead, "rootfs"), { recursive: true });
    mkdirSync(live, { recursive: true });
    const store = LocalStore.open(dir);
    expect(existsSync(dead)).toBe(false);
    expect(existsSync(live)).toBe(true);
    expect(readdirSync(tmp).some((name) => name.startsWith(`${process.pid}-`))).toBe(false);
    store.close();
  });
});

describe("layers in the store", () => {
  const gzipLayer = (store: LocalStore, name: string, content: string) => {
    const tar = tarOf(name, content);
    const diffId = `sha256:${new Bun.CryptoHasher("sha256").update(tar).digest("hex")}`;
    const blob = store.putBlob(Bun.gzipSync(new Uint8Array(tar)));
    return { diffId, digest: blob.digest, size: blob.size, uncompressedSize: tar.length, mediaType: "application/vnd.oci.image.layer.v1.tar+gzip" };
  };

  test("a gzip layer from outside is unpacked once, checked against its digest and diff ID; its tar is handed out checked", async () => {
    const store = fresh();
    const layer = gzipLayer(store, "etc/hostname", "box\n");
    await store.adoptLayer(layer);
    const snapshot = await store.ensureSnapshot(layer.diffId);
    expect(readFileSync(join(snapshot, "etc/hostname"), "utf8")).toBe("box\n");
    await store.adoptLayer(layer); // again: nothing to do
    expect(await store.withLayerTar(layer.diffId, (tar) => readFileSync(tar).length)).toBe(layer.uncompressedSize);
    expect(readdirSync(join(store.dir, "tmp"))).toEqual([]);
    await expect(store.ensureSnapshot(`sha256:${"7".repeat(64)}`)).rejects.toThrow(`layer sha256:${"7".repeat(64)} is not in the cache`);
    await expect(store.withLayerTar(`sha256:${"7".repeat(64)}`, () => 0)).rejects.toThrow("is not in the cache");
    store.close();
  });

  test("a gzip blob that is not its digest, or unpacks to another diff ID, is refused, naming the layer", async () => {
    const store = fresh();
    const layer = gzipLayer(store, "f", "content");
    await expect(store.adoptLayer({ ...layer, diffId: `sha256:${"8".repeat(64)}` })).rejects.toThrow(`layer ${layer.digest} does not match its diff ID`);
    const other = gzipLayer(store, "g", "other");
    writeFileSync(store.blobPath(other.digest), Bun.gzipSync(Buffer.from("tampered")));
    await expect(store.adoptLayer(other)).rejects.toThrow(`layer blob ${other.digest} is corrupt`);
    expect(store.layer(other.diffId)).toBeUndefined();
    expect(readdirSync(join(store.dir, "tmp"))).toEqual([]);
    store.close();
  });

  test("a layer that unpacks past MEMOBUILD_MAX_UNPACKED_SIZE is refused", async () => {
    const store = fresh();
    const layer = gzipLayer(store, "big", "x".repeat(100_000));
    process.env.MEMOBUILD_MAX_UNPACKED_SIZE = "50000";
    try {
      await expect(store.adoptLayer(layer)).rejects.toThrow(`layer ${layer.digest} unpacks to more than 50000 bytes`);
    } finally {
      delete process.env.MEMOBUILD_MAX_UNPACKED_SIZE;
    }
    store.close();
  });

  test("compressed forms, sources and snapshots are recorded and removed as asked", async () => {
    const store = fresh();
    const layer = gzipLayer(store, "f", "x");
    await store.adoptLayer(layer);
    store.recordCompressedLayer(layer.diffId, "zstd", `sha256:${"c".repeat(64)}`, 3);
    expect(store.compressedLayer(layer.diffId, "zstd")).toEqual({ digest: `sha256:${"c".repeat(64)}`, size: 3 });
    expect(store.compressedLayer(layer.diffId, "gzip")).toBeUndefined();
    expect(store.isLayerBlob(layer.digest)).toBe(true);
    expect(store.isLayerBlob(`sha256:${"c".repeat(64)}`)).toBe(true);
    expect(store.isLayerBlob(`sha256:${"d".repeat(64)}`)).toBe(false);
    store.recordLayerSource(layer.digest, "registry.example", "team/app");
    store.recordLayerSource(layer.digest, "registry.example", "team/app");
    expect(store.layerSources(layer.digest)).toEqual([{ registry: "registry.example", repository: "team/app" }]);
    store.removeSnapshot(layer.diffId);
    expect(existsSync(store.snapshotPath(layer.diffId))).toBe(false);
    store.removeSnapshot(layer.diffId); // already gone: nothing to do
    expect(readdirSync(join(store.dir, "tmp"))).toEqual([]);
    expect(store.blobDigests()).toEqual([layer.digest]);
    store.close();
  });

  test("adoptBlob moves a file in, or drops it when the blob is already there; adoptSnapshot keeps the first", () => {
    const store = fresh();
    const file = join(work, `blob-${++n}`);
    writeFileSync(file, "adopted");
    const digest = `sha256:${new Bun.CryptoHasher("sha256").update("adopted").digest("hex")}`;
    store.adoptBlob(file, digest);
    expect(existsSync(file)).toBe(false);
    writeFileSync(file, "adopted");
    store.adoptBlob(file, digest);
    expect(existsSync(file)).toBe(false);
    expect(store.readBlob(digest).toString()).toBe("adopted");
    const first = store.tempDir("snap");
    writeFileSync(join(first, "one"), "1");
    store.adoptSnapshot(`sha256:${"5".repeat(64)}`, first);
    const second = store.tempDir("snap");
    writeFileSync(join(second, "two"), "2");
    store.adoptSnapshot(`sha256:${"5".repeat(64)}`, second);
    expect(readdirSync(store.snapshotPath(`sha256:${"5".repeat(64)}`))).toEqual(["one"]);
    expect(existsSync(second)).toBe(false);
    expect(() => store.blobPath("md5:abc")).toThrow("not a sha256 digest: md5:abc");
    store.close();
  });

  test("adoptBlobInBackground moves a file in once it is synced; a file that is not there fails it and stores nothing", async () => {
    const store = fresh();
    const file = join(work, `blob-${++n}`);
    writeFileSync(file, "in the background");
    const digest = `sha256:${new Bun.CryptoHasher("sha256").update("in the background").digest("hex")}`;
    await store.adoptBlobInBackground(file, digest);
    expect(existsSync(file)).toBe(false);
    expect(store.readBlob(digest).toString()).toBe("in the background");
    const other = `sha256:${"6".repeat(64)}`;
    await expect(store.adoptBlobInBackground(file, other)).rejects.toThrow("ENOENT");
    expect(store.hasBlob(other)).toBe(false);
    store.close();
  });
});

describe("records a command reads back", () => {
  test("image names, the last build's inputs, cache mount directories", () => {
    const store = fresh();
    store.setImage("docker.io/library/app:1", `sha256:${"a".repeat(64)}`);
    expect(store.image("docker.io/library/app:1")).toMatchObject({ ref: "docker.io/library/app:1", manifestDigest: `sha256:${"a".repeat(64)}` });
    expect(store.image("docker.io/library/app:2")).toBeUndefined();
    expect(store.removeImage("docker.io/library/app:1")).toBe(true);
    expect(store.removeImage("docker.io/library/app:1")).toBe(false);
    store.recordBuildInputs("/p/Dockerfile", "final", [{ id: "0/1", key: "k1", inputs: { a: 1 } }]);
    store.recordBuildInputs("/p/Dockerfile", "final", [{ id: "0/2", key: "k2", inputs: { b: 2 } }]);
    expect([...store.lastBuildInputs("/p/Dockerfile", "final")]).toEqual([["0/2", { key: "k2", inputs: { b: 2 } }]]);
    expect(store.lastBuildInputs("/p/Dockerfile", "other").size).toBe(0);
    // A build run on a worker keeps each step's worker beside its inputs, and gives them back apart.
    store.recordBuildInputs("/p/Dockerfile", "final", [{ id: "0/2", key: "k2", inputs: { b: 2 }, worker: "ci-1" }]);
    expect([...store.lastBuildInputs("/p/Dockerfile", "final")]).toEqual([["0/2", { key: "k2", inputs: { b: 2 }, worker: "ci-1" }]]);
    expect(store.mountDir("go-cache")).toBe(store.mountDir("go-cache"));
    expect(store.mountDir("go-cache")).not.toBe(store.mountDir("npm-cache"));
    expect(store.mountDir("../../etc")).toMatch(new RegExp(`^${join(store.dir, "mounts")}/[0-9a-f]{32}$`));
    store.close();
  });

  test("a last use under an hour old is left as it is (a rebuild right after writes nothing)", () => {
    const dir = join(work, `store${++n}`);
    const store = LocalStore.open(dir);
    store.recordStep("h".repeat(64), null, 1);
    const halfAnHourAgo = Date.now() - 30 * 60 * 1000;
    store["db"].query("UPDATE steps SET last_used = ?").run(halfAnHourAgo);
    store.close();
    const again = LocalStore.open(dir);
    expect(again.lookupStep("h".repeat(64))).toBeDefined();
    again.close();
    const third = LocalStore.open(dir);
    expect((third["db"].query("SELECT last_used FROM steps").get() as { last_used: number }).last_used).toBe(halfAnHourAgo);
    third["db"].query("UPDATE steps SET last_used = ?").run(Date.now() - 61 * 60 * 1000);
    third.close();
    const fourth = LocalStore.open(dir);
    fourth.lookupStep("h".repeat(64));
    fourth.close();
    const fifth = LocalStore.open(dir);
    expect((fifth["db"].query("SELECT last_used FROM steps").get() as { last_used: number }).last_used).toBeGreaterThan(Date.now() - 60_000);
    fifth.close();
  });

  test("a used result's last use is written when the store closes", () => {
    const dir = join(work, `store${++n}`);
    const store = LocalStore.open(dir);
    store.recordStep("u".repeat(64), null, 1);
    store["db"].query("UPDATE steps SET last_used = 5").run();
    store.close();
    const again = LocalStore.open(dir);
    expect(again.lookupStep("u".repeat(64))).toBeDefined();
    again.close();
    const third = LocalStore.open(dir);
    expect((third["db"].query("SELECT last_used FROM steps").get() as { last_used: number }).last_used).toBeGreaterThan(5);
    third.close();
  });

  test("a blob hashed by an earlier process is trusted while its file is unchanged; a rewrite, even with its times set back, is hashed again", async () => {
    const dir = join(work, `store${++n}`);
    const first = LocalStore.open(dir);
    const blob = first.putBlob("layer bytes");
    const path = first.blobPath(blob.digest);
    const old = new Date("2020-01-01T00:00:00Z");
    utimesSync(path, old, old);
    Bun.sleepSync(150); // past the racy window of its ctime
    await first.checkBlob(blob.digest);
    expect(first.verification).toEqual({ hashed: 1, trusted: 0 });
    first.close();

    const second = LocalStore.open(dir);
    await second.checkBlob(blob.digest);
    expect(second.verification).toEqual({ hashed: 0, trusted: 1 });
    second.close();

    // Same size, same mtime: only the ctime (and the content) moved.
    writeFileSync(path, "LAYER BYTES");
    utimesSync(path, old, old);
    const third = LocalStore.open(dir);
    await expect(third.checkBlob(blob.digest)).rejects.toThrow("is corrupt in the cache");
    expect(third.verification).toEqual({ hashed: 1, trusted: 0 });
    third.close();
  });

  test("a blob file changed within a timestamp tick of the check is not trusted later (by mtime or ctime; 2 s for whole-second times)", () => {
    const s = 1_700_000_000_000_000_000n;
    const ms = 1_000_000n;
    const fine = (mtimeNs: bigint, ctimeNs: bigint) => ({ mtimeNs: mtimeNs + 7n, ctimeNs: ctimeNs + 7n });
    expect(changedTooRecently(fine(s, s - 3600_000n * ms), s + 99n * ms)).toBe(true); // by mtime
    expect(changedTooRecently(fine(s - 3600_000n * ms, s), s + 99n * ms)).toBe(true); // by ctime
    expect(changedTooRecently(fine(s, s), s + 100n * ms + 7n)).toBe(false); // at the edge
    expect(changedTooRecently(fine(s, s), s + 100n * ms + 6n)).toBe(true);
    // Whole seconds: a 1- or 2-second file system.
    expect(changedTooRecently({ mtimeNs: s, ctimeNs: s }, s + 1_999n * ms)).toBe(true);
    expect(changedTooRecently({ mtimeNs: s, ctimeNs: s }, s + 2_000n * ms)).toBe(false);
    expect(changedTooRecently({ mtimeNs: s, ctimeNs: s + 7n }, s + 1_000n * ms)).toBe(false);
    expect(changedTooRecently({ mtimeNs: s + 7n, ctimeNs: s }, s + 1_000n * ms)).toBe(false);
  });

  test("a blob checked right after it was written (within the racy window) is hashed again next time", async () => {
    const dir = join(work, `store${++n}`);
    const first = LocalStore.open(dir);
    const blob = first.putBlob("fresh bytes");
    await first.checkBlob(blob.digest);
    first.close();
    const second = LocalStore.open(dir);
    await second.checkBlob(blob.digest);
    expect(second.verification).toEqual({ hashed: 1, trusted: 0 });
    second.close();
  });

  test("doing again what a build did (a no-op rebuild) writes nothing to the database", () => {
    const dir = join(work, `store${++n}`);
    const session = () => {
      const store = LocalStore.open(dir);
      const image = storeImage(store, { architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] }, config: {} } as never, []);
      store.recordStep("r".repeat(64), null, 1);
      store.recordBuildInputs("/p/Dockerfile", "stage", [{ id: "stage/1", key: "r".repeat(64), inputs: { files: ["a"], n: 1 } }]);
      store.recordImageId(image.manifest.config.digest, image.manifestDigest);
      store.setImage("example:latest", image.manifestDigest, "/p");
      store.close();
    };
    const database = () => Bun.hash(readFileSync(join(dir, "memobuild.db"))).toString();
    session();
    const before = database();
    Bun.sleepSync(5); // so that a row written again would carry another time
    session();
    expect(database()).toBe(before);
    // Not even a row written again the same: nothing changed in the second session.
    const store0 = LocalStore.open(dir);
    const image0 = storeImage(store0, { architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] }, config: {} } as never, []);
    const changesBefore = (store0["db"].query("SELECT total_changes() AS n").get() as { n: number }).n;
    store0.lookupStep("r".repeat(64));
    store0.recordBuildInputs("/p/Dockerfile", "stage", [{ id: "stage/1", key: "r".repeat(64), inputs: { files: ["a"], n: 1 } }]);
    store0.recordImageId(image0.manifest.config.digest, image0.manifestDigest);
    store0.setImage("example:latest", image0.manifestDigest, "/p");
    expect((store0["db"].query("SELECT total_changes() AS n").get() as { n: number }).n).toBe(changesBefore);
    store0.close();
    // Fewer steps than last time, or one of several changed, is written.
    const fewer = LocalStore.open(dir);
    const two = [{ id: "s/1", key: "k1", inputs: { n: 1 } }, { id: "s/2", key: "k2", inputs: { n: 2 } }];
    fewer.recordBuildInputs("/q/Dockerfile", "t", two);
    fewer.recordBuildInputs("/q/Dockerfile", "t", [two[0]]);
    expect([...fewer.lastBuildInputs("/q/Dockerfile", "t").keys()]).toEqual(["s/1"]);
    fewer.recordBuildInputs("/q/Dockerfile", "t", two);
    fewer.recordBuildInputs("/q/Dockerfile", "t", [two[0], { ...two[1], inputs: { n: 3 } }]);
    expect(fewer.lastBuildInputs("/q/Dockerfile", "t").get("s/2")!.inputs).toEqual({ n: 3 });
    // The same inputs run on another worker (a --builder build) are written: explain names it.
    fewer.recordBuildInputs("/q/Dockerfile", "t", [two[0], { ...two[1], inputs: { n: 3 }, worker: "w1" }]);
    expect(fewer.lastBuildInputs("/q/Dockerfile", "t").get("s/2")).toEqual({ key: "k2", inputs: { n: 3 }, worker: "w1" });
    fewer.close();
    // A different manifest for the name, or other inputs, is written.
    const store = LocalStore.open(dir);
    store.recordBuildInputs("/p/Dockerfile", "stage", [{ id: "stage/1", key: "r".repeat(64), inputs: { files: ["b"], n: 1 } }]);
    store.setImage("example:latest", "sha256:" + "0".repeat(64), "/p");
    expect(store.lastBuildInputs("/p/Dockerfile", "stage").get("stage/1")!.inputs).toEqual({ files: ["b"], n: 1 });
    expect(store.image("example:latest")!.manifestDigest).toBe("sha256:" + "0".repeat(64));
    expect(store.image("example:latest")!.project).toBe("/p");
    // The name of a stored manifest finds it by its image ID too.
    const named = storeImage(store, { architecture: "arm64", os: "linux", rootfs: { type: "layers", diff_ids: [] }, config: {} } as never, []);
    store.setImage("other:1", named.manifestDigest);
    expect(store.image("other:1")!.project).toBeUndefined();
    expect(store.imagesById(named.manifest.config.digest.slice(7, 19)).map((i) => i.manifestDigest)).toEqual([named.manifestDigest]);
    store.close();
    expect(database()).not.toBe(before);
  });

  test("gc waits for the builds that hold the store, and says so once", async () => {
    const dir = join(work, `store${++n}`);
    const build = LocalStore.open(dir);
    let waits = 0;
    setTimeout(() => build.close(), 300);
    const child = Bun.spawn([process.execPath, "-e", `const { LocalStore } = await import(${JSON.stringify(join(import.meta.dir, "store.ts"))}); let waits = 0; LocalStore.openExclusive(${JSON.stringify(dir)}, () => waits++).close(); console.log(waits);`], { stdout: "pipe" });
    const output = await new Response(child.stdout).text();
    expect(await child.exited).toBe(0);
    waits = Number(output.trim());
    expect(waits).toBe(1);
  });

  test("prune --mounts empties the cache mounts too; unnamed builds' config and manifest blobs go", () => {
    const store = fresh();
    mkdirSync(join(store.mountDir("m"), "sub"), { recursive: true });
    writeFileSync(join(store.mountDir("m"), "sub/file"), "cached");
    const orphan = store.putBlob('{"config":"of a build no image is named for"}');
    const kept = prune(store, { mounts: false });
    expect(kept.bytesFreed).toBeGreaterThan(0);
    expect(store.hasBlob(orphan.digest)).toBe(false);
    expect(existsSync(store.mountDir("m"))).toBe(true);
    prune(store, { mounts: true });
    expect(existsSync(store.mountDir("m"))).toBe(false);
    store.close();
  });
});

describe("more edges the store stands on", () => {
  test("unmountBelow takes the mounts below a path and nothing that only shares its prefix", () => {
    const base = mkdtempSync(join(work, "mounts-"));
    for (const dir of ["a/m", "ab"]) mkdirSync(join(base, dir), { recursive: true });
    for (const dir of ["a/m", "ab"]) expect(Bun.spawnSync(["mount", "-t", "tmpfs", "tmpfs", join(base, dir)]).exitCode).toBe(0);
    const mounted = () => readFileSync("/proc/self/mountinfo", "utf8").split("\n").map((l) => l.split(" ")[4]).filter((p) => p?.startsWith(base));
    try {
      unmountBelow(join(base, "a"));
      expect(mounted()).toEqual([join(base, "ab")]);
    } finally {
      Bun.spawnSync(["umount", join(base, "ab")]);
      Bun.spawnSync(["umount", join(base, "a/m")]);
    }
  });

  test("staging left by dead processes goes (with what is mounted in it), as do names that are no pid; a live process's stays", () => {
    const dir = join(work, `store${++n}`);
    LocalStore.open(dir).close();
    const tmp = join(dir, "tmp");
    const dead = join(tmp, "999999999-aa-step");
    // 1999999990 is no pid (above pid_max), though its first digit is init's.
    for (const name of ["999999999-aa-step/rootfs", "garbage", "0-zero", "1999999990-aa-step", `${process.ppid}-live`]) mkdirSync(join(tmp, name), { recursive: true });
    expect(Bun.spawnSync(["mount", "-t", "tmpfs", "tmpfs", join(dead, "rootfs")]).exitCode).toBe(0);
    const store = LocalStore.open(dir);
    expect(readdirSync(tmp).sort()).toEqual([`${process.ppid}-live`]);
    expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(dead);
    store.close();
  });

  test("a layer whose tar is unsafe is a verification error naming the layer; plain tars count toward the unpacked limit too", async () => {
    const store = fresh();
    const chunks: Uint8Array[] = [];
    const writer = new TarWriter((c) => chunks.push(c));
    writer.add({ type: "file", name: "../escape", mode: 0o644, uid: 0, gid: 0, size: 1, mtime: 1 });
    writer.content(Buffer.from("x"));
    writer.pad(1);
    writer.finish();
    const blob = store.putBlob(Buffer.concat(chunks));
    await expect(store.adoptLayer({ diffId: blob.digest, digest: blob.digest, size: blob.size, uncompressedSize: blob.size, mediaType: MEDIA_TAR })).rejects.toThrow(`layer ${blob.digest}: layer entry "../escape" escapes the layer root`);
    const big = store.putBlob(Buffer.alloc(100_000, 1));
    process.env.MEMOBUILD_MAX_UNPACKED_SIZE = "50000";
    try {
      await expect(store.adoptLayer({ diffId: big.digest, digest: big.digest, size: big.size, uncompressedSize: big.size, mediaType: MEDIA_TAR })).rejects.toThrow("unpacks to more than 50000 bytes");
    } finally {
      delete process.env.MEMOBUILD_MAX_UNPACKED_SIZE;
    }
    store.close();
  });

  test("blobDigests lists blobs only (not a stray temp file); a long instruction is kept to 200 characters", () => {
    const store = fresh();
    const blob = store.putBlob("b");
    writeFileSync(join(store.dir, "blobs/sha256", "partial.tmp"), "x");
    expect(store.blobDigests()).toEqual([blob.digest]);
    store.recordStep("i".repeat(64), null, 1, "RUN " + "x".repeat(500));
    expect((store["db"].query("SELECT instruction FROM steps").get() as { instruction: string }).instruction).toHaveLength(200);
    store.close();
  });

  test("gc reports what it freed", () => {
    const store = fresh();
    const loose = layer(store, "loose", "l".repeat(20_000));
    const blobBytes = store.blobSize(loose.digest);
    const result = collectGarbage(store, Number.MAX_SAFE_INTEGER);
    expect(result.layersRemoved).toBe(1);
    expect(result.bytesFreed).toBeGreaterThanOrEqual(blobBytes);
    store.close();
  });
});

describe("what the mutants of the store showed untested", () => {
  test("a new store has the layout DESIGN.md gives, and its snapshots are unpacked under snapshots/<hex>", async () => {
    const store = fresh();
    for (const sub of ["blobs/sha256", "snapshots", "mounts", "tmp"]) expect(existsSync(join(store.dir, sub))).toBe(true);
    const recorded = layer(store, "etc/motd", "hello");
    const snapshot = await store.ensureSnapshot(recorded.diffId); // unpacked on first use
    expect(snapshot).toBe(join(store.dir, "snapshots", recorded.diffId.slice("sha256:".length)));
    expect(readFileSync(join(snapshot, "etc/motd"), "utf8")).toBe("hello");
    // A snapshot that is there is used as it is, even once its row is gone.
    store.deleteLayer(recorded.diffId);
    expect(await store.ensureSnapshot(recorded.diffId)).toBe(snapshot);
    store.close();
  });

  test("a digest that is not exactly sha256:<64 hex> names no file (no path out of blobs/)", () => {
    const store = fresh();
    const hex = "a".repeat(64);
    for (const bad of [`sha256:${hex}/../../x`, `xsha256:${hex}`, `sha256:${hex}0`]) expect(() => store.blobPath(bad)).toThrow(`not a sha256 digest: ${bad}`);
    writeFileSync(join(store.dir, "blobs/sha256", `x${hex}`), "stray");
    writeFileSync(join(store.dir, "blobs/sha256", `${hex}.part`), "stray");
    expect(store.blobDigests()).toEqual([]);
    store.close();
  });

  test("a link planted as gc.lock is not followed: the store refuses to open", () => {
    const dir = join(work, `store${++n}`);
    mkdirSync(dir);
    const target = join(work, `lock-target-${n}`);
    symlinkSync(target, join(dir, "gc.lock"));
    expect(() => LocalStore.open(dir)).toThrow(/ELOOP/);
    expect(existsSync(target)).toBe(false);
  });

  test("closing releases the lock and the database", () => {
    const dir = join(work, `store${++n}`);
    const store = LocalStore.open(dir);
    store.close();
    expect(() => store["db"].query("SELECT 1").get()).toThrow();
    LocalStore.openExclusive(dir, () => {
      throw new Error("gc waited for a store that was closed");
    }).close();
  });

  test("gc's exclusive open removes what dead processes left too; a process's own staging survives its second open", () => {
    const dir = join(work, `store${++n}`);
    const first = LocalStore.open(dir);
    const own = first.tempDir("mine");
    LocalStore.open(dir).close();
    expect(existsSync(own)).toBe(true);
    first.close();
    const dead = join(dir, "tmp", "999999999-aa-step");
    mkdirSync(dead);
    LocalStore.openExclusive(dir, () => {}).close();
    expect(existsSync(dead)).toBe(false);
  });

  test("writing blobs leaves no descriptor open", () => {
    const store = fresh();
    const descriptors = () => readdirSync("/proc/self/fd").length;
    const before = descriptors();
    store.putBlob("leak check");
    const file = join(store.tmpRoot, `${process.pid}-adopt`);
    writeFileSync(file, "adopt check");
    store.adoptBlob(file, `sha256:${new Bun.CryptoHasher("sha256").update("adopt check").digest("hex")}`);
    expect(descriptors()).toBe(before);
    store.close();
  });

  test("a string blob is stored as its UTF-8 bytes and sized in bytes", () => {
    const store = fresh();
    const blob = store.putBlob("héllo ✓");
    expect(blob.size).toBe(Buffer.byteLength("héllo ✓"));
    expect(blob.digest).toBe(`sha256:${new Bun.CryptoHasher("sha256").update(Buffer.from("héllo ✓")).digest("hex")}`);
    expect(store.readBlob(blob.digest).toString()).toBe("héllo ✓");
    store.close();
  });

  test("checkBlob names a missing blob, and a corrupt one with what happens next", async () => {
    const store = fresh();
    const missing = `sha256:${"e".repeat(64)}`;
    await expect(store.checkBlob(missing)).rejects.toThrow(new BlobVerificationError(`blob ${missing} is missing from the cache`));
    const bad = layer(store, "c", "c");
    writeFileSync(store.blobPath(bad.digest), "changed");
    const hashed = `sha256:${new Bun.CryptoHasher("sha256").update("changed").digest("hex")}`;
    await expect(store.checkBlob(bad.digest)).rejects.toThrow(
      `blob ${bad.digest} is corrupt in the cache (its content hashes to ${hashed}); it was removed, and the steps that made it run again on the next build`,
    );
    store.removeBlob(bad.digest); // already gone: no error
    store.close();
  });

  test("adoptSnapshot: a source that is not there is an error, not a lost race", () => {
    const store = fresh();
    expect(() => store.adoptSnapshot(`sha256:${"6".repeat(64)}`, join(store.dir, "tmp", "no-such-dir"))).toThrow(/ENOENT/);
    store.close();
  });

  test("the unpacked-size limit is inclusive and counts the tar once (not the compressed bytes too)", async () => {
    const store = fresh();
    const tar = tarOf("f", "z".repeat(3000));
    const blob = store.putBlob(tar);
    const record = { diffId: blob.digest, digest: blob.digest, size: blob.size, uncompressedSize: blob.size, mediaType: MEDIA_TAR };
    process.env.MEMOBUILD_MAX_UNPACKED_SIZE = String(tar.length);
    try {
      await store.adoptLayer(record);
      expect(store.layer(record.diffId)).toBeDefined();
      const over = store.putBlob(tarOf("g", "z".repeat(3000 + 512)));
      await expect(store.adoptLayer({ diffId: over.digest, digest: over.digest, size: over.size, uncompressedSize: over.size, mediaType: MEDIA_TAR })).rejects.toThrow(`unpacks to more than ${tar.length} bytes`);
    } finally {
      delete process.env.MEMOBUILD_MAX_UNPACKED_SIZE;
    }
    store.close();
  });

  test("unmountBelow detaches a mount even while a file in it is held open", () => {
    const base = mkdtempSync(join(work, "busy-"));
    expect(Bun.spawnSync(["mount", "-t", "tmpfs", "tmpfs", base]).exitCode).toBe(0);
    const fd = openSync(join(base, "held"), "w");
    try {
      unmountBelow(base);
      expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(` ${base} `);
    } finally {
      closeSync(fd);
      Bun.spawnSync(["umount", "-l", base]);
    }
  });
});

describe("gc's accounting", () => {
  const usageTotal = (store: LocalStore) => usage(store).total;

  /** What removing a layer frees: its blob and its snapshot (directory sizes vary by file system, so not a total's difference). */
  const layerBytes = (store: LocalStore, record: { digest: string; diffId: string }) => store.blobSize(record.digest) + directorySize(store.snapshotPath(record.diffId));

  test("bytes freed are what the removed layers and loose blobs held", async () => {
    const store = fresh();
    const loose = layer(store, "loose", "l".repeat(20_000));
    await store.ensureSnapshot(loose.diffId);
    const config = store.putBlob('{"config":"of a build no image is named for"}');
    const kept = layer(store, "kept", "k");
    store.recordStep("1".repeat(64), kept.diffId, 1);
    const expected = layerBytes(store, loose) + config.size;
    const result = collectGarbage(store, Number.MAX_SAFE_INTEGER);
    expect(result).toEqual({ stepsRemoved: 0, layersRemoved: 1, bytesFreed: expected });
    expect(existsSync(store.snapshotPath(loose.diffId))).toBe(false);
    expect(store.hasBlob(config.digest)).toBe(false);
    store.close();
  });

  test("what the first sweep frees counts toward the size: a cache that then fits loses no result", async () => {
    const store = fresh();
    const loose = layer(store, "loose", "l".repeat(20_000));
    await store.ensureSnapshot(loose.diffId);
    const used = layer(store, "used", "u".repeat(20_000));
    store.recordStep("2".repeat(64), used.diffId, 1);
    const looseBytes = layerBytes(store, loose);
    // Exactly the size left after the loose layer goes: it fits, so the step stays.
    const result = collectGarbage(store, usageTotal(store) - looseBytes);
    expect(result).toEqual({ stepsRemoved: 0, layersRemoved: 1, bytesFreed: looseBytes });
    expect(store.lookupStep("2".repeat(64))).toBeDefined();
    // One byte less than what is left and the step goes, its layer's bytes counted.
    const usedBytes = layerBytes(store, used);
    expect(collectGarbage(store, usageTotal(store) - 1)).toEqual({ stepsRemoved: 1, layersRemoved: 1, bytesFreed: usedBytes });
    store.close();
  });

  test("prune --mounts counts the cache mounts it empties", () => {
    const store = fresh();
    mkdirSync(store.mountDir("m"), { recursive: true });
    writeFileSync(join(store.mountDir("m"), "file"), "x".repeat(10_000));
    const mounts = directorySize(join(store.dir, "mounts"));
    expect(prune(store, { mounts: true }).bytesFreed).toBe(mounts);
    expect(directorySize(join(store.dir, "mounts"))).toBe(0);
    expect(existsSync(join(store.dir, "memobuild.db"))).toBe(true); // the mounts went, not the store
    for (const sub of ["blobs/sha256", "snapshots", "tmp"]) expect(existsSync(join(store.dir, sub))).toBe(true);
    store.close();
  });

  test("a named image's layer blob stays even with no layer row for it", () => {
    const store = fresh();
    const blob = store.putBlob(tarOf("f", "image only"));
    const image = storeImage(store, { architecture: "amd64", os: "linux", config: {}, rootfs: { type: "layers", diff_ids: [blob.digest] } } as never, [{ mediaType: MEDIA_TAR, digest: blob.digest, size: blob.size }]);
    store.setImage("docker.io/library/only:1", image.manifestDigest);
    collectGarbage(store, 0);
    expect(store.hasBlob(blob.digest)).toBe(true);
    store.close();
  });
});
