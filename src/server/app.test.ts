import { afterAll, beforeEach, describe, expect, spyOn, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { blake3Hex } from "../hash/blake3.ts";
import { BloomFilter } from "../util/bloom.ts";
import { createApp } from "./app.ts";
import { createLogger } from "../util/log.ts";
import { createParts, type ServerParts } from "./parts.ts";
import { Storage } from "./storage.ts";
import { BACKENDS } from "../../test/support/backends.ts";
import { RemoteCache } from "../remote/client.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-server-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const RW = "read-write-token";
const RO = "read-only-token";
const OTHER_RW = "another-read-write-token";
let n = 0;
for (const backend of BACKENDS) describe(`the cache server on ${backend.name}`, () => {
  let storage: Storage;
  let parts: ServerParts | undefined;
  let app: ReturnType<typeof createApp>;
  const open = async (options: { dataDir: string }) => new Storage(options, await backend.index(options.dataDir), await backend.blobStore(options.dataDir));

  async function setup(options: { maxSize?: number; maxBlob?: number; blobsRedirect?: boolean } = {}) {
    await parts?.close();
    const tokens = [{ token: RW, role: "rw" as const }, { token: RO, role: "ro" as const }, { token: OTHER_RW, role: "rw" as const, name: "other-team" }];
    const dataDir = join(work, `data${++n}`);
    parts = await createParts({ dataDir, ...options, tokens, log: createLogger({ MEMOBUILD_LOG: "error" }), ...(await backend.options(dataDir)) });
    storage = parts.storage;
    app = createApp(parts);
  }
  beforeEach(() => setup());
  afterAll(() => parts?.close());

  const call = (method: string, path: string, options: { token?: string; body?: string | Uint8Array; headers?: Record<string, string> } = {}) =>
    app.fetch(
      new Request(`http://cache${path}`, {
        method,
        body: options.body,
        headers: { ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }), ...options.headers },
      }),
    );
  const json = async (response: Response) => (await response.json()) as Record<string, unknown>;
  const put = (body: string, token = RW) => call("PUT", `/v1/blobs/${blake3Hex(body)}`, { token, body });

  describe("blobs", () => {
    test("PUT then HEAD and GET; a second PUT is 200", async () => {
      expect((await put("hello")).status).toBe(201);
      expect((await put("hello")).status).toBe(200);
      const head = await call("HEAD", `/v1/blobs/${blake3Hex("hello")}`, { token: RO });
      expect([head.status, head.headers.get("content-length")]).toEqual([200, "5"]);
      expect(await (await call("GET", `/v1/blobs/${blake3Hex("hello")}`, { token: RO })).text()).toBe("hello");
      expect((await call("GET", `/v1/blobs/${blake3Hex("other")}`, { token: RO })).status).toBe(404);
    });

    test("a blob already stored is drained and checked, not written again; a wrong body for it changes nothing", async () => {
      expect((await put("kept")).status).toBe(201);
      const begin = spyOn(storage.blobs, "begin");
      if (backend.files) {
        const path = storage.blobPath(blake3Hex("kept"));
        const before = statSync(path);
        // With no staging directory at all, a second upload still succeeds: it touches no disk.
        const tmp = join(storage.options.dataDir, "tmp");
        rmSync(tmp, { recursive: true });
        writeFileSync(tmp, "not a directory");
        expect((await put("kept")).status).toBe(200);
        rmSync(tmp);
        mkdirSync(tmp);
        expect(statSync(path).ino).toBe(before.ino); // the same file: not replaced by a rename
        expect(statSync(path).mtimeMs).toBe(before.mtimeMs);
      } else expect((await put("kept")).status).toBe(200);
      expect(begin).not.toHaveBeenCalled(); // no write of any kind was started
      begin.mockRestore();
      const wrong = await call("PUT", `/v1/blobs/${blake3Hex("kept")}`, { token: RW, body: "not kept" });
      expect(wrong.status).toBe(400);
      expect(await (await call("GET", `/v1/blobs/${blake3Hex("kept")}`, { token: RO })).text()).toBe("kept");
      expect(await storage.strayFiles()).toEqual([]);
    });

    test("a body that does not hash to its name is refused with 400 and nothing is stored", async () => {
      const response = await call("PUT", `/v1/blobs/${blake3Hex("expected")}`, { token: RW, body: "something else" });
      expect(response.status).toBe(400);
      expect(String((await json(response)).error)).toContain("nothing stored");
      expect((await call("HEAD", `/v1/blobs/${blake3Hex("expected")}`, { token: RO })).status).toBe(404);
      expect(await storage.strayFiles()).toEqual([]);
    });

    test("401 without a valid token, 403 for a read-only token writing", async () => {
      expect((await call("PUT", `/v1/blobs/${blake3Hex("x")}`, { body: "x" })).status).toBe(401);
      expect((await call("GET", `/v1/blobs/${blake3Hex("x")}`)).status).toBe(401);
      expect((await call("GET", `/v1/blobs/${blake3Hex("x")}`, { token: "wrong-token" })).status).toBe(401);
      const readOnly = await put("x", RO);
      expect(readOnly.status).toBe(403);
      expect(await json(readOnly)).toEqual({ error: "this token is read-only" });
    });

    test("blob reads answered before Hono (blob-reads.ts) check, count and record as every request: 401 words, metrics, token use, access times", async () => {
      const large = "L".repeat(Storage.SMALL_BLOB + 1);
      for (const body of ["small", large]) await put(body);
      const [small, big] = [`/v1/blobs/${blake3Hex("small")}`, `/v1/blobs/${blake3Hex(large)}`];
      // Stored blobs, asked for without a valid token.
      expect(await json(await call("GET", small))).toEqual({ error: "a bearer token is required (Authorization: Bearer TOKEN)" });
      expect((await call("HEAD", big, { token: "wrong-token" })).status).toBe(401);
      expect(await json(await call("GET", small, { token: "wrong-token" }))).toEqual({ error: "the token is not valid" });
      const touched = spyOn(storage, "touchBlob");
      // From the store, then from memory; a large one from the store; a query goes the Hono way.
      for (const path of [small, small, big, `${small}?x=1`]) {
        const response = await call("GET", path, { token: RO });
        expect([response.status, response.headers.get("content-type")]).toEqual([200, "application/octet-stream"]);
        expect(await response.text()).toBe(path === big ? large : "small");
      }
      const head = await call("HEAD", big, { token: RO });
      expect([head.status, head.headers.get("content-length")]).toEqual([200, String(large.length)]);
      const text = await (await call("GET", "/metrics", { token: RO })).text();
      for (const line of [
        'memobuild_requests_total{method="GET",route="blobs",status="200"} 4',
        'memobuild_requests_total{method="HEAD",route="blobs",status="200"} 1',
        'memobuild_requests_total{method="GET",route="blobs",status="401"} 2',
        'memobuild_http_request_duration_seconds_count{method="GET",route="blobs"} 6',
        'memobuild_cache_hits_total{kind="blob"} 5',
        `memobuild_bytes_out_total ${3 * "small".length + large.length}`,
      ]) {
        expect(text).toContain(line);
      }
      expect(touched.mock.calls.map(([hash]) => hash)).toEqual([...[small, small, big, small, big].map((path) => path.slice("/v1/blobs/".length))]);
      await storage.flush();
      const ro = (await storage.tokenStats()).find((stat) => stat.token === blake3Hex(RO).slice(0, 12));
      expect(ro).toMatchObject({ requests: 5, bytesIn: 0, bytesOut: 3 * "small".length + large.length });
    });

    test("blob reads answered before Hono: only /v1/blobs/{hash} is one (a look-alike path is Hono's 404), and each counts once in the traffic and HEAD timings", async () => {
      await put("x");
      const hash = blake3Hex("x");
      for (const path of [`/v1/blobx/${hash}`, `/v2/blobs/${hash}`, `/x/v1/blobs/${hash}`]) expect([path, (await call("GET", path, { token: RO })).status]).toEqual([path, 404]);
      const before = parts!.metrics.traffic.requests;
      expect((await call("GET", `/v1/blobs/${hash}`, { token: RO })).status).toBe(200);
      expect((await call("HEAD", `/v1/blobs/${hash}`, { token: RO })).status).toBe(200);
      expect(parts!.metrics.traffic.requests - before).toBe(2);
      expect(await (await call("GET", "/metrics", { token: RO })).text()).toContain('memobuild_http_request_duration_seconds_count{method="HEAD",route="blobs"} 1');
    });

    test("413 over --max-blob, and nothing kept", async () => {
      await setup({ maxBlob: 10 });
      const response = await put("this body is longer than ten bytes");
      expect(response.status).toBe(413);
      expect(await storage.strayFiles()).toEqual([]);
    });

    test("names that are not hashes (path-like, traversal, wrong case) are rejected", async () => {
      for (const name of ["..%2f..%2fetc%2fpasswd", "%2e%2e", "../x", blake3Hex("a").toUpperCase(), "abc"]) {
        const response = await call("GET", `/v1/blobs/${name}`, { token: RO });
        expect([400, 404]).toContain(response.status);
        expect(response.headers.get("content-type")).toContain("application/json");
      }
      expect((await call("PUT", "/v1/actions/..%2f..%2fx", { token: RW, body: "{}" })).status).toBe(400);
      // A hash with anything before or after it is no name either (the pattern is anchored).
      for (const name of [`${blake3Hex("a")}x`, `x${blake3Hex("a")}`, `${blake3Hex("a")}0`]) {
        expect((await call("GET", `/v1/blobs/${name}`, { token: RO })).status).toBe(400);
        expect((await call("GET", `/v1/actions/${name}`, { token: RO })).status).toBe(400);
      }
    });
  });

  describe("actions", () => {
    const key = blake3Hex("step key");

    test("accepted only when every blob they name is stored", async () => {
      const action = JSON.stringify({ blobs: [blake3Hex("layer")], diffId: `sha256:${"1".repeat(64)}` });
      const early = await call("PUT", `/v1/actions/${key}`, { token: RW, body: action });
      expect(early.status).toBe(400);
      expect(String((await json(early)).error)).toContain("not stored");
      await put("layer");
      expect((await call("PUT", `/v1/actions/${key}`, { token: RW, body: action })).status).toBe(201);
      // What is served is the copy the server checked: every field, defaults filled in.
      expect(await (await call("GET", `/v1/actions/${key}`, { token: RO })).json()).toEqual({ ...JSON.parse(action), created: 0 });
      expect((await call("HEAD", `/v1/actions/${key}`, { token: RO })).status).toBe(200);
      expect((await call("PUT", `/v1/actions/${key}`, { token: RW, body: "not json" })).status).toBe(400);
    });

    test("a read-only token cannot store an action", async () => {
      await put("layer");
      const response = await call("PUT", `/v1/actions/${key}`, { token: RO, body: JSON.stringify({ blobs: [blake3Hex("layer")] }) });
      expect(response.status).toBe(403);
      expect((await call("HEAD", `/v1/actions/${key}`, { token: RO })).status).toBe(404);
    });

    test("write-once: the same result again is 200, another writer's different one is 409, kept, listed and counted", async () => {
      await put("honest");
      await put("evil");
      await put("rebuilt");
      const honest = JSON.stringify({ blobs: [blake3Hex("honest")], diffId: null, created: 1 });
      expect((await call("PUT", `/v1/actions/${key}`, { token: RW, body: honest })).status).toBe(201);
      // The same result made at another time is the same result.
      const again = JSON.stringify({ blobs: [blake3Hex("honest")], diffId: null, created: 2 });
      expect((await call("PUT", `/v1/actions/${key}`, { token: RW, body: again })).status).toBe(200);
      // Its own writer with another result: not reproducible, neither a conflict nor a replacement.
      const rebuilt = JSON.stringify({ blobs: [blake3Hex("rebuilt")], diffId: null, created: 3 });
      const unreproducible = await call("PUT", `/v1/actions/${key}`, { token: RW, body: rebuilt, headers: { "memobuild-step": encodeURIComponent("[app 2/2] RUN date > /d") } });
      expect(unreproducible.status).toBe(200);
      expect(await json(unreproducible)).toMatchObject({ outcome: "not-reproducible", step: "[app 2/2] RUN date > /d", differences: { files: [], note: "neither result has a layer (the image config differs)" } });
      const evil = JSON.stringify({ blobs: [blake3Hex("evil")], diffId: null, created: 3 });
      const refused = await call("PUT", `/v1/actions/${key}`, { token: OTHER_RW, body: evil });
      expect(refused.status).toBe(409);
      expect(String((await json(refused)).error)).toContain("already has a different result");
      expect(await (await call("GET", `/v1/actions/${key}`, { token: RO })).text()).toBe(honest);
      const listed = (await json(await call("GET", "/v1/conflicts", { token: RO }))).conflicts as { key: string; first: { author: string }; second: { author: string } }[];
      expect(listed).toHaveLength(1);
      expect(listed[0].key).toBe(key);
      expect(listed[0].first.author).toBe(blake3Hex(RW).slice(0, 12));
      // A named token is shown by its name (the id stays: two tokens may share a name).
      expect(listed[0].second).toMatchObject({ author: blake3Hex(OTHER_RW).slice(0, 12), authorName: "other-team" });
      expect(listed[0].first).not.toHaveProperty("authorName");
      expect((await json(await call("GET", "/v1/stats", { token: RO }))).conflicts).toMatchObject([{ second: { authorName: "other-team" } }]);
      expect(await json(await call("GET", `/v1/conflicts?key=${blake3Hex("other")}`, { token: RO }))).toEqual({ conflicts: [] });
      const metrics = await (await call("GET", "/metrics", { token: RO })).text();
      expect(metrics).toContain("memobuild_action_conflicts_total 1");
      expect(metrics).toContain("memobuild_unreproducible_steps_total 1");
      const { unreproducible: recorded } = (await json(await call("GET", "/v1/unreproducible", { token: RO }))) as { unreproducible: { key: string; author: string; step: string }[] };
      expect(recorded).toMatchObject([{ key, author: blake3Hex(RW).slice(0, 12), step: "[app 2/2] RUN date > /d" }]);
    });

    test("a signature that does not verify is refused; a good one is stored with its signer", async () => {
      const { SigningKey } = await import("../remote/action.ts");
      const ci = SigningKey.generate().key;
      await put("layer");
      const action = { blobs: [blake3Hex("layer")], diffId: null, created: 5 };
      const signed = ci.sign(key, action);
      const forged = { ...signed, blobs: [blake3Hex("layer")], created: 6 }; // the signature covers created
      const refused = await call("PUT", `/v1/actions/${key}`, { token: RW, body: JSON.stringify(forged) });
      expect(refused.status).toBe(400);
      expect(String((await json(refused)).error)).toBe(`the signature by ${ci.publicKey} does not verify`);
      expect((await call("PUT", `/v1/actions/${key}`, { token: RW, body: JSON.stringify(signed) })).status).toBe(201);
      expect(await storage.signerOf(key)).toBe(ci.publicKey);
    });

    test("eviction never deletes a blob that a kept action still needs", async () => {
      await setup({ maxSize: 60 });
      const shared = `shared-${"s".repeat(30)}`;
      const own = `own-${"o".repeat(30)}`;
      await put(shared);
      await put(own);
      // The older action needs both blobs; the newer one needs only the shared blob.
      await call("PUT", `/v1/actions/${blake3Hex("old")}`, { token: RW, body: JSON.stringify({ blobs: [blake3Hex(shared), blake3Hex(own)] }) });
      await Bun.sleep(5);
      await call("PUT", `/v1/actions/${blake3Hex("new")}`, { token: RW, body: JSON.stringify({ blobs: [blake3Hex(shared)] }) });
      await storage.evict();
      expect((await call("HEAD", `/v1/actions/${blake3Hex("old")}`, { token: RO })).status).toBe(404);
      expect((await call("HEAD", `/v1/blobs/${blake3Hex(own)}`, { token: RO })).status).toBe(404);
      expect((await call("HEAD", `/v1/actions/${blake3Hex("new")}`, { token: RO })).status).toBe(200);
      expect((await call("HEAD", `/v1/blobs/${blake3Hex(shared)}`, { token: RO })).status).toBe(200);
      expect(await storage.blobs.names()).toContain(blake3Hex(shared));
    });

    test("eviction keeps storage under --max-size and never strands a kept action", async () => {
      await setup({ maxSize: 100 });
      // (Evicting after each blob upload, before its action arrives, must not lose the blob.)
      const blob = (i: number) => `blob-${i}-${"x".repeat(30)}`; // 37+ bytes each
      for (let i = 0; i < 6; i++) {
        await put(blob(i));
        await call("PUT", `/v1/actions/${blake3Hex(`key-${i}`)}`, { token: RW, body: JSON.stringify({ blobs: [blake3Hex(blob(i))] }) });
        await storage.evict();
      }
      expect(await storage.storageBytes()).toBeLessThanOrEqual(100);
      // Every action still stored has its blobs.
      const kept: number[] = [];
      for (const i of [0, 1, 2, 3, 4, 5]) if (await storage.hasAction(blake3Hex(`key-${i}`))) kept.push(i);
      expect(kept.length).toBeGreaterThan(0);
      for (const i of kept) expect((await call("HEAD", `/v1/blobs/${blake3Hex(blob(i))}`, { token: RO })).status).toBe(200);
      // The newest survived; the oldest went.
      expect((await call("HEAD", `/v1/actions/${blake3Hex("key-5")}`, { token: RO })).status).toBe(200);
      expect((await call("HEAD", `/v1/actions/${blake3Hex("key-0")}`, { token: RO })).status).toBe(404);
      expect(storage.evictions).toBeGreaterThan(0);
    });
  });

  test("blobs no action names are evicted first, once their grace period is over", async () => {
    await setup({ maxSize: 50 });
    storage.options.pendingGraceMs = 0;
    const orphan = "orphan-" + "o".repeat(40);
    await put(orphan);
    const kept = "kept-" + "k".repeat(20);
    await put(kept);
    await call("PUT", `/v1/actions/${blake3Hex("k")}`, { token: RW, body: JSON.stringify({ blobs: [blake3Hex(kept)] }) });
    await storage.evict();
    expect((await call("HEAD", `/v1/blobs/${blake3Hex(orphan)}`, { token: RO })).status).toBe(404);
    expect((await call("HEAD", `/v1/blobs/${blake3Hex(kept)}`, { token: RO })).status).toBe(200);
  });

  describe("readiness and redirects", () => {
    test("/readyz is 200 while the database and the blob store answer, 503 once one does not", async () => {
      expect(await json(await call("GET", "/readyz"))).toEqual({ status: "ready" });
      await parts!.close(); // its stores are closed: they no longer answer
      const down = await call("GET", "/readyz");
      expect(down.status).toBe(503);
      expect(await json(down)).toEqual({ error: "the database or the blob store does not answer" });
      parts = undefined;
      await setup();
    });

    test.if(backend.files)("a replica that is not ready logs which store does not answer, and why", async () => {
      const lines: string[] = [];
      const dir = join(work, `not-ready-${Math.random().toString(36).slice(2)}`);
      const down = await createParts({ dataDir: dir, tokens: [], log: createLogger({ MEMOBUILD_LOG: "warn" }, (line) => lines.push(line)) });
      const app = createApp(down);
      await down.close(); // the SQLite file is closed: the metadata store no longer answers
      expect((await app.fetch(new Request("http://127.0.0.1/readyz"))).status).toBe(503);
      expect(lines).toEqual([expect.stringMatching(/^warn not ready error=Error: the metadata store does not answer: \S/)]);
    });

    // Only an object store can hand out URLs (the directory store refuses the flag: parts.ts).
    test.if(!backend.files)("--blobs-redirect: a large blob is a 307 to a presigned URL the client follows and verifies; small ones are served", async () => {
      await setup({ blobsRedirect: true });
      const large = "L".repeat(Storage.SMALL_BLOB + 1);
      await put(large);
      await put("small");
      const redirect = await call("GET", `/v1/blobs/${blake3Hex(large)}`, { token: RO });
      expect(redirect.status).toBe(307);
      expect(redirect.headers.get("location")).toContain("X-Amz-Signature=");
      expect(await (await call("GET", `/v1/blobs/${blake3Hex("small")}`, { token: RO })).text()).toBe("small");
      const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: (request) => app.fetch(request) });
      try {
        const remote = new RemoteCache({ url: `http://127.0.0.1:${server.port}`, token: RO, warn: (m) => expect(m).toBe(""), attempts: 1 });
        const file = join(work, `fetched-${++n}`);
        expect(await remote.fetchBlob(blake3Hex(large), file, large.length)).toBe(true);
        expect(readFileSync(file, "utf8")).toBe(large);
      } finally {
        server.stop(true);
      }
    });
  });

  // Only a shared store has another replica to evict what this one holds in memory.
  test.if(!backend.files)("a blob another replica evicted: a GET may still get its bytes from memory, a HEAD (which an uploader trusts) says 404", async () => {
    await put("held in memory");
    expect(await (await call("GET", `/v1/blobs/${blake3Hex("held in memory")}`, { token: RO })).text()).toBe("held in memory");
    const dataDir = storage.options.dataDir;
    const other = await createParts({ dataDir, maxSize: 0, pendingGraceMs: -1000, tokens: [], log: createLogger({ MEMOBUILD_LOG: "error" }), ...(await backend.options(dataDir)) });
    try {
      expect(await other.storage.evict()).toBe(1);
    } finally {
      await other.close();
    }
    expect((await call("HEAD", `/v1/blobs/${blake3Hex("held in memory")}`, { token: RO })).status).toBe(404);
    expect(await (await call("GET", `/v1/blobs/${blake3Hex("held in memory")}`, { token: RO })).text()).toBe("held in memory");
    expect((await put("held in memory")).status).toBe(201); // stored again, not taken for present
  });

  describe("health and metrics", () => {
    test("memobuild_workers counts the workers heard from within the lease time, as the Workers page's idle and busy", async () => {
      const now = Date.now();
      const claimant = (name: string) => ({ name, labels: {}, holds: BloomFilter.of([]) });
      // Two ask for work now; one stopped 45 s ago (within the old one-minute window, past the 30 s lease).
      for (const name of ["w1", "w2"]) await parts!.jobs!.claim(claimant(name), now);
      await parts!.jobs!.claim(claimant("stopped"), now - 45_000);
      const text = await (await call("GET", "/metrics", { token: RO })).text();
      expect(text).toMatch(/^memobuild_workers 2$/m);
      const { workers } = (await json(await call("GET", "/v1/workers", { token: RO }))) as { workers: { name: string; state: string }[] };
      expect(workers.map((w) => [w.name, w.state])).toEqual([["stopped", "gone"], ["w1", "idle"], ["w2", "idle"]]);
    });

    test("/healthz is open; /metrics needs a token and uses memobuild_ names", async () => {
      expect(await json(await call("GET", "/healthz"))).toEqual({ status: "ok" });
      expect((await call("GET", "/metrics")).status).toBe(401);
      await put("counted");
      await call("GET", `/v1/blobs/${blake3Hex("counted")}`, { token: RO });
      await call("GET", `/v1/blobs/${blake3Hex("missing")}`, { token: RO });
      await call("PUT", `/v1/blobs/${blake3Hex("a")}`, { token: RW, body: "b" });
      const text = await (await call("GET", "/metrics", { token: RO })).text();
      for (const line of [
        'memobuild_cache_hits_total{kind="blob"} 1',
        'memobuild_cache_misses_total{kind="blob"} 1',
        "memobuild_bytes_in_total 7",
        "memobuild_bytes_out_total 7",
        'memobuild_upload_rejections_total{reason="mismatch"} 1',
        "memobuild_storage_bytes 7",
        "memobuild_evictions_total 0",
        "# TYPE memobuild_requests_total counter",
      ]) {
        expect(text).toContain(line);
      }
      for (const line of text.split("\n").filter((l) => l && !l.startsWith("#"))) expect(line).toMatch(/^memobuild_/);
    });
  });

  test("uploads cut off by a crash leave nothing visible after a restart", async () => {
    const dir = join(work, `crash${++n}`);
    const first = await open({ dataDir: dir });
    // What a killed upload leaves: bytes written, never committed (a process killed stops there).
    const upload = await first.blobs.begin(blake3Hex("half a blob"));
    await upload.write(new TextEncoder().encode("half a"));
    await first.close();
    const second = await open({ dataDir: dir });
    expect(await second.strayFiles()).toEqual([]);
    expect(await second.blobs.names()).toEqual([]);
    expect(await second.counts()).toEqual({ blobs: 0, actions: 0, bytes: 0 });
    await second.close();
    // The default keeps its index beside the blobs; PostgreSQL keeps it in the database.
    expect(existsSync(join(dir, "cache.db"))).toBe(backend.name === "sqlite+directory");
    await upload.abandon(); // this process was not killed: its handle is let go
  });
});
