/**
 * The cache server's storage in process: uploads verified and bounded, actions validated field by
 * field and write-once, eviction by access time that never breaks a kept action, and nothing
 * served from memory after it is gone.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { blake3Hex } from "../hash/blake3.ts";
import { Storage, UploadRejected, type StorageOptions } from "./storage.ts";
import { BACKENDS } from "../../test/support/backends.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-storage-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let n = 0;
const stream = (...chunks: (string | Uint8Array)[]) =>
  new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(typeof chunk === "string" ? new TextEncoder().encode(chunk) : chunk);
      controller.close();
    },
  });
const put = (s: Storage, body: string) => s.putBlob(blake3Hex(body), stream(body), body.length);
const rejection = async (promise: Promise<unknown>) => {
  try {
    await promise;
  } catch (error) {
    if (error instanceof UploadRejected) return { status: error.status, reason: error.reason, message: error.message };
    throw error;
  }
  throw new Error("not rejected");
};
const KEY = "a".repeat(64);
const DIFF = `sha256:${"b".repeat(64)}`;

for (const backend of BACKENDS) describe(`storage on ${backend.name}`, () => {
  const open = async (options: StorageOptions) => new Storage(options, await backend.index(options.dataDir), await backend.blobStore(options.dataDir));
  const storage = (options: { maxSize?: number; maxBlob?: number; pendingGraceMs?: number } = {}) => open({ dataDir: join(work, `d${++n}`), ...options });

  describe("blob uploads", () => {
    test("stored once, verified; a body that is not its name is refused and nothing is left", async () => {
      const s = await storage();
      expect(await put(s, "hello")).toEqual({ size: 5, existed: false });
      expect(await put(s, "hello")).toEqual({ size: 5, existed: true });
      expect(await rejection(s.putBlob(blake3Hex("hello"), stream("HELLO")))).toMatchObject({ status: 400, reason: "mismatch" });
      expect(await rejection(s.putBlob(blake3Hex("other"), stream("not other")))).toMatchObject({ status: 400, reason: "mismatch" });
      expect(await s.hasBlob(blake3Hex("other"))).toBe(false);
      expect(await s.strayFiles()).toEqual([]);
      expect(await s.counts()).toEqual({ blobs: 1, actions: 0, bytes: 5 });
      await s.close();
    });

    test("over --max-blob: refused by its declared length before reading, or as soon as it streams past", async () => {
      const s = await storage({ maxBlob: 10 });
      expect(await put(s, "0123456789")).toMatchObject({ size: 10 });
      expect(await rejection(s.putBlob(blake3Hex("01234567890"), stream("01234567890"), 11))).toEqual({ status: 413, reason: "too-large", message: "blob of 11 bytes is over the limit of 10" });
      expect(await rejection(s.putBlob(blake3Hex("01234567890"), stream("012345", "67890")))).toEqual({ status: 413, reason: "too-large", message: "blob is over the limit of 10 bytes" });
      expect(await s.strayFiles()).toEqual([]);
      await s.close();
    });

    test("an upload that breaks off is refused as aborted and leaves no file", async () => {
      const s = await storage();
      const broken = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode("part"));
          controller.error(new Error("connection reset"));
        },
      });
      expect(await rejection(s.putBlob(blake3Hex("partial"), broken))).toEqual({ status: 400, reason: "aborted", message: "upload did not complete: connection reset" });
      expect(await s.strayFiles()).toEqual([]);
      await s.close();
    });

    test("a blob of several upload parts is stored whole; a wrong one of that size leaves nothing anyone can read", async () => {
      const s = await storage();
      const part = new Uint8Array(5 * 1024 * 1024).fill(1);
      const big = new Uint8Array(12 * 1024 * 1024).fill(1);
      big[big.length - 1] = 2;
      const hash = blake3Hex(big);
      expect(await s.putBlob(hash, stream(part, part, big.subarray(2 * part.length)), big.length)).toEqual({ size: big.length, existed: false });
      const back = new Uint8Array(await new Response(s.blobs.body(hash)).arrayBuffer());
      expect([back.length, blake3Hex(back)]).toEqual([big.length, hash]);
      const wrong = blake3Hex("twelve MiB of something else");
      expect(await rejection(s.putBlob(wrong, stream(part, part, big.subarray(2 * part.length)), big.length))).toMatchObject({ status: 400, reason: "mismatch" });
      expect(await s.blobs.names()).toEqual([hash]);
      expect(await s.strayFiles()).toEqual([]);
      await s.close();
    });

    test("small blobs are served from memory, only while they exist", async () => {
      const s = await storage({ maxSize: 1, pendingGraceMs: -1000 });
      await put(s, "small");
      expect(await (await s.smallBlob(blake3Hex("small")))?.text()).toBe("small");
      expect(await s.smallBlob(blake3Hex("never stored"))).toBeUndefined();
      const large = "x".repeat(Storage.SMALL_BLOB + 1);
      await put(s, large);
      expect(await s.smallBlob(blake3Hex(large))).toBeUndefined();
      expect(await s.evict()).toBe(2);
      expect(await s.smallBlob(blake3Hex("small"))).toBeUndefined();
      await s.close();
    });
  });

  describe("actions", () => {
    const valid = { diffId: DIFF, created: 1, duration_ms: 5, blobs: [] as string[] };
    const cases: [string, unknown, string][] = [
      ["not JSON", "{", "the action is not JSON"],
      ["not an object", "[1]", "the action must be a JSON object"],
      ["null", "null", "the action must be a JSON object"],
      ["a number", "42", "the action must be a JSON object"],
      ["a string", '"text"', "the action must be a JSON object"],
      ["a diffId with junk before the digest", { ...valid, diffId: `x${DIFF}` }, 'the action\'s "diffId"'],
      ["a diffId with junk after the digest", { ...valid, diffId: `${DIFF}x` }, 'the action\'s "diffId"'],
      ["blobs not a list", { ...valid, blobs: "x" }, 'the action\'s "blobs"'],
      ["a blob name that is not a hash", { ...valid, blobs: ["xyz"] }, 'the action\'s "blobs"'],
      ["a blob name that is not a string", { ...valid, blobs: [1] }, 'the action\'s "blobs"'],
      ["a diffId that is not a digest", { ...valid, diffId: "sha256:1234" }, 'the action\'s "diffId"'],
      ["a diffId that is a number", { ...valid, diffId: 7 }, 'the action\'s "diffId"'],
      ["a layer without blake3", { ...valid, layer: { digest: DIFF, size: 1, mediaType: "application/vnd.oci.image.layer.v1.tar" } }, 'the action\'s "layer" must have blake3, digest, size and mediaType'],
      ["a layer with a bad digest", { ...valid, blobs: ["c".repeat(64)], layer: { blake3: "c".repeat(64), digest: "md5:x", size: 1, mediaType: "application/vnd.oci.image.layer.v1.tar" } }, 'the action\'s "layer" must have'],
      ["a layer with a negative size", { ...valid, blobs: ["c".repeat(64)], layer: { blake3: "c".repeat(64), digest: DIFF, size: -1, mediaType: "application/vnd.oci.image.layer.v1.tar" } }, 'the action\'s "layer" must have'],
      ["a layer with no media type", { ...valid, blobs: ["c".repeat(64)], layer: { blake3: "c".repeat(64), digest: DIFF, size: 1 } }, 'the action\'s "layer" must have'],
      ["a layer that is null", { ...valid, layer: null }, 'the action\'s "layer"'],
      ["a layer whose blob it does not name", { ...valid, layer: { blake3: "c".repeat(64), digest: DIFF, size: 1, mediaType: "application/vnd.oci.image.layer.v1.tar" } }, 'the action\'s "layer" blob must be among its "blobs"'],
      ["a layer without a diffId", { ...valid, diffId: null, blobs: ["c".repeat(64)], layer: { blake3: "c".repeat(64), digest: DIFF, size: 1, mediaType: "application/vnd.oci.image.layer.v1.tar" } }, 'an action with a "layer" needs its "diffId"'],
      ["created not whole", { ...valid, created: 1.5 }, 'the action\'s "created" must be a whole number of milliseconds'],
      ["a negative duration", { ...valid, duration_ms: -1 }, 'the action\'s "duration_ms"'],
      ["a duration that is not a number", { ...valid, duration_ms: "5" }, 'the action\'s "duration_ms"'],
    ];
    for (const [name, action, message] of cases) {
      test(`refused: ${name}`, async () => {
        const s = await storage();
        const body = typeof action === "string" ? action : JSON.stringify(action);
        let error: unknown;
        try {
          await s.putAction(KEY, body, "author");
        } catch (e) {
          error = e;
        }
        expect(error).toBeInstanceOf(UploadRejected);
        expect((error as UploadRejected).reason).toBe("invalid");
        expect((error as Error).message).toContain(message);
        expect(await s.hasAction(KEY)).toBe(false);
        await s.close();
      });
    }

    test("accepted: config-only, with a layer, without created or duration; a blob it names must be stored", async () => {
      const s = await storage();
      expect(await s.putAction(KEY, JSON.stringify({ diffId: null, blobs: [] }), "a")).toBe("stored");
      await put(s, "layer");
      const layer = { blake3: blake3Hex("layer"), digest: DIFF, size: 5, mediaType: "application/vnd.oci.image.layer.v1.tar" };
      expect(await s.putAction("b".repeat(64), JSON.stringify({ diffId: DIFF, layer, blobs: [blake3Hex("layer")], created: 3, duration_ms: 0 }), "a")).toBe("stored");
      await expect(s.putAction("c".repeat(64), JSON.stringify({ diffId: DIFF, blobs: [blake3Hex("absent")] }), "a")).rejects.toThrow(`the action names blobs that are not stored: ${blake3Hex("absent")}`);
      expect(JSON.parse((await s.getAction("b".repeat(64)))!)).toMatchObject({ diffId: DIFF, layer });
      await s.close();
    });

    test("write-once: the same result is 'same'; another is a 409 conflict, recorded with both sides", async () => {
      const s = await storage();
      expect(await s.putAction(KEY, JSON.stringify({ diffId: null, blobs: [], created: 1 }), "first-author")).toBe("stored");
      expect(await s.putAction(KEY, JSON.stringify({ diffId: null, blobs: [], created: 2 }), "first-author")).toBe("same");
      let conflict: UploadRejected | undefined;
      try {
        await s.putAction(KEY, JSON.stringify({ diffId: DIFF, blobs: [] }), "second-author");
      } catch (error) {
        conflict = error as UploadRejected;
      }
      expect(conflict?.status).toBe(409);
      expect(conflict?.message).toStartWith(`step ${KEY} already has a different result (`);
      expect(JSON.parse((await s.getAction(KEY))!).diffId).toBeNull();
      const [recorded] = await s.conflicts();
      expect(recorded).toMatchObject({ key: KEY, first: { author: "first-author", signer: null }, second: { author: "second-author", signer: null } });
      expect(recorded!.first.result).not.toBe(recorded!.second.result);
      expect(await s.conflictCount()).toBe(1);
      await s.close();
    });
  });

  describe("eviction and bookkeeping", () => {
    test("a blob two actions share stays when the older action goes, and goes with the last one", async () => {
      const s = await storage({ maxSize: 5, pendingGraceMs: -1000 });
      await put(s, "share");
      await put(s, "extra");
      const action = (blobs: string[]) => JSON.stringify({ diffId: DIFF, blobs: blobs.map(blake3Hex), layer: { blake3: blake3Hex(blobs[0]!), digest: DIFF, size: 5, mediaType: "application/vnd.oci.image.layer.v1.tar" } });
      await s.putAction("1".repeat(64), action(["share", "extra"]), "x");
      await s.putAction("2".repeat(64), action(["share"]), "x");
      await backend.exec(s, "UPDATE actions SET last_access = CASE key WHEN $1 THEN 1 ELSE 2 END", ["1".repeat(64)]);
      expect(await s.evict()).toBe(2); // action 1 and "extra", which only it needed
      expect(await s.hasAction("1".repeat(64))).toBe(false);
      expect(await s.hasBlob(blake3Hex("extra"))).toBe(false);
      expect(await s.hasBlob(blake3Hex("share"))).toBe(true); // action 2 still needs it
      expect(await s.hasAction("2".repeat(64))).toBe(true);
      await s.close();
    });

    test("exactly at the budget nothing goes; a blob still within its upload grace is never taken, even with no action left to evict", async () => {
      const s = await storage({ maxSize: 5, pendingGraceMs: 60_000 });
      await put(s, "12345");
      expect(await s.evict()).toBe(0);
      await put(s, "67890"); // over the budget, but uploaded a moment ago: its action may be on the way
      expect(await s.evict()).toBe(0);
      expect(await s.hasBlob(blake3Hex("67890"))).toBe(true);
      await s.close();
    });

    test("refusals carry the reason a client sees: missing blobs, a bad signature", async () => {
      const s = await storage();
      const missing = await (async () => {
        try {
          await s.putAction(KEY, JSON.stringify({ diffId: null, blobs: ["d".repeat(64)] }), "x");
        } catch (error) {
          return error as UploadRejected;
        }
      })();
      expect([missing?.status, missing?.reason]).toEqual([400, "missing-blobs"]);
      const forged = await (async () => {
        try {
          await s.putAction(KEY, JSON.stringify({ diffId: null, blobs: [], signature: { signer: `ed25519:${"A".repeat(43)}`, value: "AAAA" } }), "x");
        } catch (error) {
          return error as UploadRejected;
        }
      })();
      expect([forged?.status, forged?.reason]).toEqual([400, "bad-signature"]);
      // A signature that names no signer is no signature: malformed, like any other field.
      const shapeless = await (async () => {
        try {
          await s.putAction(KEY, JSON.stringify({ diffId: null, blobs: [], signature: { key: "ed25519:AAAA", value: "AAAA" } }), "x");
        } catch (error) {
          return error as UploadRejected;
        }
      })();
      expect([shapeless?.status, shapeless?.reason]).toEqual([400, "invalid"]);
      await s.close();
    });

    test("unreferenced blobs go first, least recently used first; a blob a kept action needs stays", async () => {
      const s = await storage({ maxSize: 10, pendingGraceMs: -1000 });
      await put(s, "aaaaa"); // referenced by an action below
      await put(s, "bbbbb");
      await put(s, "ccccc");
      await s.putAction(KEY, JSON.stringify({ diffId: DIFF, blobs: [blake3Hex("aaaaa")], layer: { blake3: blake3Hex("aaaaa"), digest: DIFF, size: 5, mediaType: "application/vnd.oci.image.layer.v1.tar" } }), "x");
      await backend.exec(s, "UPDATE blobs SET last_access = CASE hash WHEN $1 THEN 0 ELSE 1 END", [blake3Hex("bbbbb")]);
      s.touchBlob(blake3Hex("bbbbb")); // b, the oldest, was used just now: c goes first
      expect(await s.evict()).toBe(1);
      expect(await s.hasBlob(blake3Hex("ccccc"))).toBe(false);
      expect(await s.hasBlob(blake3Hex("bbbbb"))).toBe(true);
      expect(await s.hasBlob(blake3Hex("aaaaa"))).toBe(true);
      expect(await s.storageBytes()).toBe(10);
      await s.close();
    });

    test("past that, the least recently used action goes with the blobs only it needed", async () => {
      const s = await storage({ maxSize: 5, pendingGraceMs: -1000 });
      await put(s, "old-1");
      await put(s, "new-2");
      const action = (blob: string) => JSON.stringify({ diffId: DIFF, blobs: [blake3Hex(blob)], layer: { blake3: blake3Hex(blob), digest: DIFF, size: 5, mediaType: "application/vnd.oci.image.layer.v1.tar" } });
      await s.putAction("1".repeat(64), action("old-1"), "x");
      await s.putAction("2".repeat(64), action("new-2"), "x");
      await backend.exec(s, "UPDATE actions SET last_access = CASE key WHEN $1 THEN 1 ELSE 2 END", ["1".repeat(64)]);
      await s.getAction("2".repeat(64)); // read now: still the newer one
      expect(await s.evict()).toBe(2); // the action and its blob
      expect(await s.hasAction("1".repeat(64))).toBe(false);
      expect(await s.hasBlob(blake3Hex("old-1"))).toBe(false);
      expect(await s.hasAction("2".repeat(64))).toBe(true);
      expect(await s.hasBlob(blake3Hex("new-2"))).toBe(true);
      expect(await (await storage({})).evict()).toBe(0); // no budget: nothing to do
      await s.close();
    });

    test("access times and token use are written in batches and survive a reopen", async () => {
      const dir = join(work, `d${++n}`);
      const s = await open({ dataDir: dir });
      await put(s, "touched");
      s.recordTokenUse("token-a", 10, 0);
      s.recordTokenUse("token-a", 5, 7);
      s.touchBlob(blake3Hex("touched"));
      expect(await s.getAction("9".repeat(64))).toBeUndefined();
      await s.close();
      const again = await open({ dataDir: dir });
      expect(await again.tokenStats()).toEqual([{ token: "token-a", requests: 2, bytesIn: 15, bytesOut: 7 }]);
      expect(await again.storageBytes()).toBe(7);
      await again.close();
    });

    test("a crash's leftover upload is discarded at start; a blob file the index does not know is reported", async () => {
      const dir = join(work, `d${++n}`);
      mkdirSync(join(dir, "tmp"), { recursive: true });
      writeFileSync(join(dir, "tmp", "half-an-upload"), "x");
      const s = await open({ dataDir: dir });
      expect(await s.strayFiles()).toEqual([]);
      // Bytes put in place without an entry (a replica killed between the two) are reported.
      const unknown = await s.blobs.begin(`ab${"0".repeat(62)}`);
      await unknown.write(new TextEncoder().encode("unknown"));
      await unknown.commit();
      expect(await s.strayFiles()).toEqual([`ab${"0".repeat(62)}`]);
      await s.close();
    });

    test("reading an action makes it recent: the other one goes first", async () => {
      const s = await storage({ maxSize: 5, pendingGraceMs: -1000 });
      await put(s, "one-1");
      await put(s, "two-2");
      const action = (blob: string) => JSON.stringify({ diffId: DIFF, blobs: [blake3Hex(blob)], layer: { blake3: blake3Hex(blob), digest: DIFF, size: 5, mediaType: "application/vnd.oci.image.layer.v1.tar" } });
      await s.putAction("1".repeat(64), action("one-1"), "x");
      await s.putAction("2".repeat(64), action("two-2"), "x");
      await backend.exec(s, "UPDATE actions SET last_access = CASE key WHEN $1 THEN 1 ELSE 2 END", ["1".repeat(64)]);
      expect(await s.getAction("1".repeat(64))).toBeDefined(); // the older one, read now
      await s.evict();
      expect([await s.hasAction("1".repeat(64)), await s.hasAction("2".repeat(64))]).toEqual([true, false]);
      await s.close();
    });

    // Replicas are processes of their own only on a shared back end.
    test.if(!backend.files)("two replicas evicting at once: one does the work, to the budget and no further, and every kept action keeps its blobs", async () => {
      const dataDir = join(work, `d${++n}`);
      const [one, two] = [await open({ dataDir, maxSize: 100, pendingGraceMs: -1000 }), await open({ dataDir, maxSize: 100, pendingGraceMs: -1000 })];
      const blob = (i: number) => `blob-${String(i).padStart(2, "0")}-${"x".repeat(12)}`; // 20 bytes
      for (let i = 0; i < 10; i++) {
        const s = i % 2 ? one : two;
        await put(s, blob(i));
        await s.putAction(blake3Hex(`key-${i}`), JSON.stringify({ diffId: null, blobs: [blake3Hex(blob(i))] }), "x");
        await backend.exec(s, "UPDATE actions SET last_access = $1 WHERE key = $2", [i, blake3Hex(`key-${i}`)]);
      }
      const evicted = await Promise.all([one.evict(), two.evict()]);
      expect(evicted.sort((a, b) => a - b)).toEqual([0, 10]); // the oldest five actions and their five blobs, by one of them
      expect(await one.storageBytes()).toBe(100);
      const names = await one.blobs.names();
      for (let i = 0; i < 10; i++) {
        const kept = await two.hasAction(blake3Hex(`key-${i}`));
        expect(kept).toBe(i >= 5);
        expect(await one.hasBlob(blake3Hex(blob(i)))).toBe(kept);
        expect(names.includes(blake3Hex(blob(i)))).toBe(kept);
      }
      await Promise.all([one.close(), two.close()]);
    });

    test("killed between an eviction's entries and its bytes: the bytes left are stray (never served), and the blob can be stored again", async () => {
      const s = await storage({ maxSize: 0, pendingGraceMs: -1000 });
      await put(s, "doomed");
      const killed = s.index.evict(0, Date.now() + 1000, async () => {
        throw new Error("killed before deleting the bytes");
      });
      await expect(killed).rejects.toThrow("killed before deleting the bytes");
      expect(await s.hasBlob(blake3Hex("doomed"))).toBe(false);
      expect(await s.strayFiles()).toEqual([blake3Hex("doomed")]);
      expect(await put(s, "doomed")).toEqual({ size: 6, existed: false });
      expect(new TextDecoder().decode(await s.blobs.read(blake3Hex("doomed")))).toBe("doomed");
      expect(await s.strayFiles()).toEqual([]);
      await s.close();
    });

    test("with no budget nothing is evicted, not even an unreferenced blob past its grace", async () => {
      const s = await storage({ pendingGraceMs: -1000 });
      await put(s, "loose");
      expect(await s.evict()).toBe(0);
      expect(await s.hasBlob(blake3Hex("loose"))).toBe(true);
      await s.close();
    });

    test("token use is counted once, and read without waiting for a flush", async () => {
      const s = await storage();
      s.recordTokenUse("t", 1, 2);
      expect(await s.tokenStats()).toEqual([{ token: "t", requests: 1, bytesIn: 1, bytesOut: 2 }]);
      expect(await s.tokenStats()).toEqual([{ token: "t", requests: 1, bytesIn: 1, bytesOut: 2 }]);
      await s.close();
      await expect(s.index.ping()).rejects.toThrow(); // closed
    });
  });

  describe("what the mutants of storage showed untested", () => {
    // Only the directory store has a directory to make.
    test.if(backend.files)("a data directory that does not exist yet is made, parents and all", async () => {
      const s = await open({ dataDir: join(work, `new${++n}`, "deeper", "data") });
      await put(s, "fine");
      expect(s.fileSize(blake3Hex("fine"))).toBe(4);
      await s.close();
    });

    test("the small-blob cache stays within its memory, keeps the most recently read, and lets evicted blobs go", async () => {
      const s = await open({ dataDir: join(work, `d${++n}`), smallBlobCacheBytes: 8, maxSize: 100, pendingGraceMs: -1000 });
      const text = async (body: string) => (await s.smallBlob(blake3Hex(body)))?.text();
      for (const body of ["aaaa", "bbbb", "cccc"]) await put(s, body);
      for (const body of ["aaaa", "bbbb", "cccc"]) await s.smallBlob(blake3Hex(body));
      expect(s.smallBlobCacheUsed).toBe(8); // exactly the limit: two of the three
      // With their files gone, the two most recent are still served from memory; the oldest is not.
      for (const body of ["aaaa", "bbbb", "cccc"]) await s.blobs.delete(blake3Hex(body));
      expect([await text("bbbb"), await text("cccc")]).toEqual(["bbbb", "cccc"]);
      await expect(s.smallBlob(blake3Hex("aaaa"))).rejects.toThrow(backend.files ? /ENOENT/ : /NoSuchKey|not found/i);
      // Reading "bbbb" makes it the most recent: the next blob read pushes "cccc" out, not it.
      expect(await text("bbbb")).toBe("bbbb");
      await put(s, "dddd");
      expect(await text("dddd")).toBe("dddd");
      expect(await text("bbbb")).toBe("bbbb");
      await expect(s.smallBlob(blake3Hex("cccc"))).rejects.toThrow(backend.files ? /ENOENT/ : /NoSuchKey|not found/i);
      expect(s.smallBlobCacheUsed).toBe(8);
      await s.close();
      // An evicted blob leaves the disk and the cache's memory.
      const tight = await open({ dataDir: join(work, `d${++n}`), maxSize: 0, pendingGraceMs: -1000 });
      await put(tight, "gone");
      await tight.smallBlob(blake3Hex("gone"));
      expect(tight.smallBlobCacheUsed).toBe(4);
      await tight.evict();
      expect(tight.smallBlobCacheUsed).toBe(0);
      expect(await tight.strayFiles()).toEqual([]);
      expect(await tight.blobs.names()).not.toContain(blake3Hex("gone"));
      await tight.close();
    });

    test("the same blob uploaded twice at once is stored once; the later upload leaves nothing behind", async () => {
      const s = await storage();
      const body = "concurrent";
      const slow = () => {
        let release!: () => void;
        const gate = new Promise<void>((resolve) => (release = resolve));
        const readable = new ReadableStream<Uint8Array>({
          async start(controller) {
            controller.enqueue(new TextEncoder().encode(body.slice(0, 5)));
            await gate;
            controller.enqueue(new TextEncoder().encode(body.slice(5)));
            controller.close();
          },
        });
        return { readable, release };
      };
      const first = slow();
      const second = slow();
      const uploads = [s.putBlob(blake3Hex(body), first.readable, body.length), s.putBlob(blake3Hex(body), second.readable, body.length)];
      await Bun.sleep(20);
      first.release();
      const one = await uploads[0];
      second.release();
      const two = await uploads[1];
      expect([one, two]).toEqual([{ size: 10, existed: false }, { size: 10, existed: true }]);
      expect(await s.strayFiles()).toEqual([]);
      await s.close();
    });

    test("refusals name every missing blob, and a conflict both results", async () => {
      const s = await storage();
      const [x, y] = [blake3Hex("x"), blake3Hex("y")];
      await expect(s.putAction(KEY, JSON.stringify({ diffId: null, blobs: [x, y] }), "a")).rejects.toThrow(`the action names blobs that are not stored: ${x}, ${y}`);
      await s.putAction(KEY, JSON.stringify({ diffId: null, created: 1 }), "a");
      let error: unknown;
      try {
        await s.putAction(KEY, JSON.stringify({ diffId: DIFF, created: 2 }), "b");
      } catch (caught) {
        error = caught;
      }
      const conflict = (error as { conflict: { first: { result: string }; second: { result: string } }; reason: string; message: string });
      expect(conflict.reason).toBe("conflict");
      expect(conflict.message).toBe(`step ${KEY} already has a different result (${conflict.conflict.first.result.slice(0, 12)}) from another writer; results are write-once, so this one (${conflict.conflict.second.result.slice(0, 12)}) was refused and recorded as a conflict`);
      await s.close();
    });

    // Only an old SQLite file has such rows: PostgreSQL's schema began with results.
    test.if(backend.name === "sqlite+directory")("an action stored before results were recorded (no result column) still compares as the same", async () => {
      const s = await storage();
      const body = JSON.stringify({ diffId: null, created: 5 });
      await s.putAction(KEY, body, "a");
      await backend.exec(s, "UPDATE actions SET result = NULL");
      expect(await s.putAction(KEY, body, "a")).toBe("same");
      await s.close();
    });

    test("fields that only look right as text are refused; an action without blobs and a layer of 0 bytes are fine", async () => {
      const s = await storage();
      const hash = blake3Hex("z");
      await s.putBlob(hash, stream("z"), 1); // stored: only the list's shape is wrong below
      for (const body of [{ diffId: null, blobs: [[hash]] }, { diffId: [DIFF] }]) {
        await expect(s.putAction(KEY, JSON.stringify(body), "a")).rejects.toThrow(expect.objectContaining({ reason: "invalid" }));
      }
      expect(await s.putAction(KEY, JSON.stringify({ diffId: null }), "a")).toBe("stored");
      await s.putBlob(blake3Hex(""), stream(), 0);
      expect(await s.putAction("e".repeat(64), JSON.stringify({ diffId: DIFF, blobs: [blake3Hex("")], layer: { blake3: blake3Hex(""), digest: DIFF, size: 0, mediaType: "application/vnd.oci.image.layer.v1.tar" } }), "a")).toBe("stored");
      await s.close();
    });
  });
});
