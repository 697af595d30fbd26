/**
 * The remote-cache client against the real server app, in process (Bun.serve on a free
 * loopback port): what it accepts, what it refuses and says why, and how it behaves when the
 * server lies, refuses, or is gone.
 */
import { afterAll, afterEach, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { blake3Hex } from "../hash/blake3.ts";
import { createApp } from "../server/app.ts";
import { createParts, type ServerParts } from "../server/parts.ts";
import type { SqliteCacheIndex } from "../server/cache-index.ts";
import { createLogger } from "../util/log.ts";
import { SigningKey } from "./action.ts";
import { RemoteCache, RemoteCacheError } from "./client.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-client-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const RW = "client-test-rw-token";
const RO = "client-test-ro-token";
const OTHER_RW = "client-test-other-rw-token";
const KEY = "a".repeat(64);
let parts: ServerParts;
let server: ReturnType<typeof Bun.serve>;
let url: string;
let n = 0;
let warnings: string[];
/** Every request the server saw, and a hook that may answer one in the app's place (a flaky or lying server). */
let seen: string[];
let hook: ((request: Request) => Response | undefined) | undefined;

beforeEach(async () => {
  parts = await createParts({ dataDir: join(work, `data${++n}`), tokens: [{ token: RW, role: "rw" }, { token: RO, role: "ro" }, { token: OTHER_RW, role: "rw" }], log: createLogger({ MEMOBUILD_LOG: "error" }), maxBlob: 1000 });
  const app = createApp(parts);
  seen = [];
  hook = undefined;
  server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch: (request) => {
      seen.push(`${request.method} ${new URL(request.url).pathname}`);
      return hook?.(request) ?? app.fetch(request);
    },
  });
  url = `http://127.0.0.1:${server.port}`;
  warnings = [];
});
afterEach(async () => {
  server.stop(true);
  await parts.close();
});

const client = (options: Partial<ConstructorParameters<typeof RemoteCache>[0]> = {}) => new RemoteCache({ url, token: RW, warn: (m) => warnings.push(m), attempts: 1, ...options });
function layerFile(content: string) {
  const file = join(work, `layer-${++n}`);
  writeFileSync(file, content);
  return { file, digest: `sha256:${"1".repeat(64)}`, size: content.length, mediaType: "application/vnd.oci.image.layer.v1.tar" };
}

describe("results round trip", () => {
  test("an uploaded layer and action come back; the blob is checked against its name", async () => {
    const remote = client();
    await remote.upload(KEY, { diffId: `sha256:${"2".repeat(64)}`, created: 1000, duration_ms: 42 }, layerFile("layer bytes"));
    expect(warnings).toEqual([]);
    expect(await remote.hasAction(KEY)).toBe(true);
    expect(await remote.hasAction("b".repeat(64))).toBe(false);
    const action = (await client({ token: RO }).getAction(KEY))!;
    expect(action).toMatchObject({ diffId: `sha256:${"2".repeat(64)}`, created: 1000, duration_ms: 42, layer: { blake3: blake3Hex("layer bytes"), size: 11 } });
    const file = join(work, "fetched");
    expect(await remote.fetchBlob(action.layer!.blake3, file, action.layer!.size)).toBe(true);
    expect(readFileSync(file, "utf8")).toBe("layer bytes");
    expect(await remote.fetchBlob(blake3Hex("absent"), join(work, "absent"), 10)).toBe(false);
    expect(await remote.getAction("c".repeat(64))).toBeUndefined();
  });

  test("a stored blob that was changed underneath is refused, and nothing is kept", async () => {
    const remote = client();
    await remote.upload(KEY, { diffId: `sha256:${"2".repeat(64)}`, created: 1 }, layerFile("the real layer"));
    const hash = blake3Hex("the real layer");
    writeFileSync(parts.storage.blobPath(hash), "the evil layer"); // same length, other bytes
    const file = join(work, "corrupt");
    await expect(remote.fetchBlob(hash, file, 14)).rejects.toThrow(`blob ${hash} from the remote cache hashes to ${blake3Hex("the evil layer")}; nothing was kept`);
    expect(existsSync(file)).toBe(false);
  });

  test("a blob longer than its action declares is cut off and not kept", async () => {
    const remote = client();
    await remote.upload(KEY, { diffId: `sha256:${"2".repeat(64)}`, created: 1 }, layerFile("0123456789"));
    const file = join(work, "long");
    expect(await remote.fetchBlob(blake3Hex("0123456789"), file, 5)).toBe(false);
    expect(existsSync(file)).toBe(false);
    expect(warnings.join("\n")).toContain("the remote cache sent more than the 5 bytes its result declares");
  });

  test("another writer's different result for a key is refused and the client names the step and the first build; its own writer's is not reproducible", async () => {
    const remote = client();
    remote.buildId = "build-first-0001";
    await remote.upload(KEY, { diffId: null, created: 1 }, undefined, "[app 2/2] RUN make");
    await remote.upload(KEY, { diffId: null, created: 2 }, undefined, "[app 2/2] RUN make"); // the same result, another time: no conflict
    expect(warnings).toEqual([]);
    await remote.upload(KEY, { diffId: `sha256:${"3".repeat(64)}`, created: 3 }, undefined, "[app 2/2] RUN make");
    expect(warnings).toEqual(["[app 2/2] RUN make is not reproducible: it made another result than build build-first-0001; differs: neither result has a layer (the image config differs) (the remote keeps the first)"]);
    expect(await remote.conflicts()).toEqual([]);
    const other = client({ token: OTHER_RW });
    await other.upload(KEY, { diffId: `sha256:${"4".repeat(64)}`, created: 4 }, undefined, "[app 2/2] RUN make");
    expect(warnings[1]).toBe(`[app 2/2] RUN make: the remote cache holds another writer's result for this step, from build build-first-0001; yours was refused and recorded as a conflict (${url}/#/cache)`);
    const conflicts = await remote.conflicts();
    expect(conflicts.map((c) => c.key)).toEqual([KEY]);
  });

  test("a read-only token cannot upload: the refusal is reported, nothing is stored", async () => {
    const remote = client({ token: RO });
    await expect(remote.upload(KEY, { diffId: null, created: 1 })).rejects.toThrow(RemoteCacheError);
    expect(await client().hasAction(KEY)).toBe(false);
  });
});

describe("trust", () => {
  test("with a trust list, only results signed by a trusted key are used; the reason for each refusal is kept", async () => {
    const ci = SigningKey.generate().key;
    const other = SigningKey.generate().key;
    await client({ signer: ci }).upload(KEY, { diffId: null, created: 1 });
    await client({ signer: other }).upload("b".repeat(64), { diffId: null, created: 1 });
    await client().upload("c".repeat(64), { diffId: null, created: 1 });
    const trusting = client({ trust: [ci.publicKey] });
    expect(await trusting.getAction(KEY)).toBeDefined();
    expect(await trusting.getAction("b".repeat(64))).toBeUndefined();
    expect(await trusting.getAction("c".repeat(64))).toBeUndefined();
    expect(trusting.refused.get("b".repeat(64))).toBe(`remote result from an untrusted signer (${other.publicKey})`);
    expect(trusting.refused.get("c".repeat(64))).toBe("remote result is not signed, and --remote-trust asks for a trusted signer");
    expect(trusting.refused.has(KEY)).toBe(false);
    // Without a trust list every result is used.
    expect(await client().getAction("c".repeat(64))).toBeDefined();
  });

  test("a signed result changed on the server no longer verifies", async () => {
    const ci = SigningKey.generate().key;
    await client({ signer: ci }).upload(KEY, { diffId: null, created: 1 });
    const { body } = (parts.storage.index as SqliteCacheIndex).db.query("SELECT body FROM actions WHERE key = ?").get(KEY) as { body: string };
    const changed = body.replace('"diffId":null', `"diffId":"sha256:${"4".repeat(64)}"`);
    expect(changed).not.toBe(body);
    (parts.storage.index as SqliteCacheIndex).db.query("UPDATE actions SET body = ? WHERE key = ?").run(changed, KEY);
    const trusting = client({ trust: [ci.publicKey] });
    expect(await trusting.getAction(KEY)).toBeUndefined();
    expect(trusting.refused.get(KEY)).toStartWith("remote result has a bad signature");
  });
});

describe("malformed results: a miss and one warning, never a crash", () => {
  test("a signed result uploaded without blobs is stored as the server checked it: a trusting reader uses it", async () => {
    const ci = SigningKey.generate().key;
    const { blobs: _blobs, ...withoutBlobs } = ci.sign(KEY, { blobs: [], diffId: null, created: 1 });
    const put = await fetch(`${url}/v1/actions/${KEY}`, { method: "PUT", headers: { authorization: `Bearer ${RW}`, "content-type": "application/json" }, body: JSON.stringify(withoutBlobs) });
    expect(put.status).toBe(201);
    const trusting = client({ trust: [ci.publicKey] });
    expect(await trusting.getAction(KEY)).toMatchObject({ blobs: [], diffId: null, created: 1, signature: { signer: ci.publicKey } });
    expect(warnings).toEqual([]);
  });

  test("whatever a lying server sends for a result, a reader (trusting or not) gets a miss, the reason, and one warning", async () => {
    const ci = SigningKey.generate().key;
    const lies: unknown[] = [
      null,
      [],
      "text",
      { blobs: "x", diffId: null },
      { blobs: [1], diffId: null },
      { blobs: [], diffId: "sha256:zz" },
      { blobs: [], diffId: `sha256:${"1".repeat(64)}`, layer: { blake3: "b".repeat(64), digest: `sha256:${"1".repeat(64)}`, size: 1, mediaType: "application/vnd.oci.image.layer.v1.tar" } },
      { blobs: ["b".repeat(64)], diffId: `sha256:${"1".repeat(64)}`, layer: { blake3: "b".repeat(64), digest: "x", size: -1 } },
      { blobs: [], diffId: null, created: "yesterday" },
      { blobs: [], diffId: null, created: 9e15 }, // past what a Date holds: dating the image would throw
      { blobs: [], diffId: null, duration_ms: -5 },
      { blobs: [], diffId: null, signature: 5 },
      { blobs: [], diffId: null, signature: { signer: 1, value: [] } },
    ];
    let lie: unknown;
    hook = (request) => (request.method === "GET" && request.url.includes("/v1/actions/") ? Response.json(lie) : undefined);
    for (const options of [{ trust: [ci.publicKey] }, {}]) {
      warnings = [];
      const reader = client(options);
      for (const [i, body] of lies.entries()) {
        lie = body;
        const key = i.toString(16).padStart(64, "0");
        expect(await reader.getAction(key)).toBeUndefined();
        expect(reader.refused.get(key)).toStartWith("remote result is malformed: ");
      }
      expect(reader.available).toBe(true);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toContain("sent a result that is not one");
    }
  });

  test("a conflict list is read entry by entry: malformed entries are dropped, text is made safe to print", async () => {
    const side = (author: unknown) => ({ author, signer: null, result: "c".repeat(64) });
    hook = (request) =>
      request.url.includes("/v1/conflicts")
        ? Response.json({ conflicts: [{ key: KEY, time: 5, first: side("\x1b]0;pwned\x07tok\x1b[2J"), second: side(null) }, { key: "../x", time: 1, first: side(null), second: side(null) }, { key: KEY, time: 1, first: side(7), second: side(null) }, { key: KEY, time: 9e15, first: side(null), second: side(null) }, null] })
        : undefined;
    expect(await client().conflicts()).toEqual([{ key: KEY, time: 5, first: { author: "tok", signer: null, result: "c".repeat(64) }, second: { author: null, signer: null, result: "c".repeat(64) } }]);
    hook = (request) => (request.url.includes("/v1/conflicts") ? Response.json({ conflicts: "none" }) : undefined);
    expect(await client().conflicts()).toEqual([]);
  });
});

describe("build reports", () => {
  test("nothing that looks like a credential is sent; a report over the token's budget (429) is one warning, not an outage", async () => {
    let sent = "";
    hook = (request) => {
      if (!request.url.includes("/events")) return undefined;
      return (async () => {
        sent = await request.text();
        return Response.json({ error: "this token may report at most 8 bytes a minute" }, { status: 429 });
      })() as unknown as Response;
    };
    const remote = client({ attempts: 3 });
    const took = await remote.report("build-0001", [{ type: "build.started", ci: { repository: "https://ci:tok3n-tok3n@git.example/r.git" }, steps: [{ name: "RUN curl https://x/?access_token=abc123" }] }]);
    expect(took).toBe(false);
    expect(sent).not.toContain("tok3n-tok3n");
    expect(sent).not.toContain("abc123");
    expect(seen.filter((r) => r.includes("/events"))).toHaveLength(1);
    expect(remote.available).toBe(true);
    expect(warnings).toEqual(["the remote cache did not take this build's report (HTTP 429: this token may report at most 8 bytes a minute); the build goes on without it"]);
  });
});

describe("write-once, and a signed upload that meets an earlier copy", () => {
  test("the same result, signed, replaces an unsigned copy: readers who trust the signer then hit it", async () => {
    const ci = SigningKey.generate().key;
    await client().upload(KEY, { diffId: null, created: 1 });
    await client({ signer: ci }).upload(KEY, { diffId: null, created: 1 });
    expect(await client({ trust: [ci.publicKey] }).getAction(KEY)).toMatchObject({ signature: { signer: ci.publicKey } });
    expect(warnings).toEqual([]);
    // Never the other way: an unsigned copy later does not replace the signed one.
    await client().upload(KEY, { diffId: null, created: 1 });
    expect(await client({ trust: [ci.publicKey] }).getAction(KEY)).toBeDefined();
  });

  test("a copy signed by another key is kept, and the uploader is told that readers who trust it will not hit", async () => {
    const ci = SigningKey.generate().key;
    const other = SigningKey.generate().key;
    await client({ signer: other }).upload(KEY, { diffId: null, created: 1 });
    await client({ signer: ci }).upload(KEY, { diffId: null, created: 1 });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(`kept an earlier copy of step ${KEY.slice(0, 12)}'s result, signed by another key (${other.publicKey})`);
    expect(await client({ trust: [ci.publicKey] }).getAction(KEY)).toBeUndefined();
  });
});

describe("a remote that refuses or is gone", () => {
  test("a wrong token is an error at the first request, naming the server", async () => {
    await expect(client({ token: "wrong-token-value" }).probe()).rejects.toThrow(`the remote cache at ${url} refused the token (HTTP 401`);
  });

  test("a server that does not answer: one warning, then local-only; with required, an error", async () => {
    server.stop(true);
    const remote = client();
    expect(await remote.getAction(KEY)).toBeUndefined();
    expect(await remote.hasAction(KEY)).toBe(false);
    expect(remote.available).toBe(false);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toStartWith(`remote cache at ${url} is not answering`);
    await expect(client({ required: true }).getAction(KEY)).rejects.toThrow(`the remote cache at ${url} is not answering`);
  });

  test("an answer larger than an action can be is not taken as one", async () => {
    server.stop(true);
    server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("x".repeat(2 * 1024 * 1024)) });
    const remote = new RemoteCache({ url: `http://127.0.0.1:${server.port}`, warn: (m) => warnings.push(m), attempts: 1 });
    expect(await remote.getAction(KEY)).toBeUndefined();
    expect(warnings.join("\n")).toContain("larger than 1048576 bytes");
  });
});

describe("retries, refusals and the build hub", () => {
  test("a 503 or 429 is retried up to the attempts given; then the remote is given up with one warning", async () => {
    let failures = 2;
    hook = () => (failures-- > 0 ? new Response("busy", { status: failures === 1 ? 503 : 429 }) : undefined);
    const patient = client({ attempts: 3, url: `${url}///` });
    expect(await patient.hasAction(KEY)).toBe(false);
    expect(seen).toEqual([`HEAD /v1/actions/${KEY}`, `HEAD /v1/actions/${KEY}`, `HEAD /v1/actions/${KEY}`]);
    expect(patient.available).toBe(true);
    hook = () => new Response("down", { status: 500 });
    const remote = client({ attempts: 2 });
    expect(await remote.getAction(KEY)).toBeUndefined();
    expect(await remote.fetchBlob(blake3Hex("x"), join(work, "x"), 1)).toBe(false);
    expect(remote.available).toBe(false);
    expect(warnings).toEqual([`remote cache at ${url} is not answering (GET /v1/actions/${KEY}: HTTP 500); continuing with the local cache only`]);
    // Once given up, nothing more is asked.
    const before = seen.length;
    await remote.upload(KEY, { diffId: null, created: 1 });
    expect(seen.length).toBe(before);
  });

  test("an answer that is not 200, 404 or a retry gives the remote up; probe says so too", async () => {
    hook = () => new Response("teapot", { status: 418 });
    const remote = client();
    expect(await remote.getAction(KEY)).toBeUndefined();
    expect(warnings[0]).toContain("(GET action: HTTP 418)");
    const blobs = client();
    expect(await blobs.fetchBlob(blake3Hex("x"), join(work, "y"), 1)).toBe(false);
    expect(warnings[1]).toContain("(GET blob: HTTP 418)");
    const probing = client();
    await probing.probe();
    expect(probing.available).toBe(false);
    expect(warnings[2]).toContain("(HTTP 418)");
    expect(await client().conflicts()).toEqual([]);
    hook = undefined;
    const fine = client();
    await fine.probe();
    expect(fine.available).toBe(true);
  });

  test("a blob the remote has is not sent again; a refused layer or result is a warning that says why", async () => {
    const remote = client();
    const layer = layerFile("once");
    await remote.upload(KEY, { diffId: `sha256:${"2".repeat(64)}`, created: 1 }, layer);
    await remote.upload("b".repeat(64), { diffId: `sha256:${"2".repeat(64)}`, created: 1 }, layer);
    expect(seen.filter((r) => r.startsWith("PUT /v1/blobs/"))).toHaveLength(1);
    await remote.upload("c".repeat(64), { diffId: `sha256:${"2".repeat(64)}`, created: 1 }, layerFile("x".repeat(2000)));
    expect(warnings.at(-1)).toMatch(/^remote cache refused a layer upload \(HTTP 413: .*over the limit of 1000/);
    hook = (request) => (request.method === "PUT" && request.url.includes("/v1/actions/") ? Response.json({ error: "no thanks" }, { status: 400 }) : undefined);
    await remote.upload("d".repeat(64), { diffId: null, created: 1 });
    expect(warnings.at(-1)).toBe("remote cache refused a result (HTTP 400: no thanks)");
    hook = (request) => (request.method === "PUT" ? new Response("plain text reason", { status: 400 }) : undefined);
    await remote.upload("e".repeat(64), { diffId: null, created: 1 });
    expect(warnings.at(-1)).toBe("remote cache refused a result (HTTP 400: plain text reason)");
  });

  test("uploads run in the background; a failure is a warning, or with --remote-required the build's error", async () => {
    const remote = client();
    remote.enqueue(() => remote.upload(KEY, { diffId: null, created: 1 }));
    remote.enqueue(async () => {
      throw new Error("disk went away");
    });
    await remote.flush();
    expect(await remote.hasAction(KEY)).toBe(true);
    expect(warnings).toEqual(["remote cache upload failed: disk went away"]);
    const strict = client({ required: true });
    strict.enqueue(async () => {
      throw new RemoteCacheError("refused");
    });
    await expect(strict.flush()).rejects.toThrow("refused");
    const lenient = client();
    lenient.enqueue(async () => {
      throw new RemoteCacheError("refused too");
    });
    await lenient.flush();
    expect(warnings.at(-1)).toBe("remote cache upload failed: refused too");
  });

  test("a read-only token's uploads: one warning for the whole build, and none tried after the first refusal", async () => {
    const remote = client({ token: RO });
    remote.enqueue(() => remote.upload("b".repeat(64), { diffId: null, created: 1 }, layerFile("one")));
    await remote.flush();
    const puts = seen.filter((r) => r.startsWith("PUT")).length;
    for (const key of ["c", "d"]) remote.enqueue(() => remote.upload(key.repeat(64), { diffId: null, created: 1 }, layerFile(key)));
    await remote.flush();
    expect(warnings).toEqual([`the remote cache at ${url} refused the token (HTTP 403: this token is read-only): this build's results are not uploaded (--remote-upload off says so for a read-only token)`]);
    expect(seen.filter((r) => r.startsWith("PUT")).length).toBe(puts);
  });

  test("build reports: taken, refused with a warning, or dropped when the remote is away", async () => {
    const remote = client();
    expect(await remote.report("build-0001", [])).toBe(true);
    hook = () => Response.json({ error: "too old" }, { status: 404 });
    expect(await remote.report("build-1", [])).toBe(false);
    expect(warnings).toEqual(["the remote cache did not take this build's report (HTTP 404: too old); the build goes on without it"]);
    server.stop(true);
    expect(await client().report("build-2", [])).toBe(false);
  });

  test("distrust: the result is refused here, and the user is told once with the step", () => {
    const remote = client();
    remote.distrust(KEY, "remote result is corrupt: bad digest");
    expect(remote.refused.get(KEY)).toBe("remote result is corrupt: bad digest");
    expect(warnings).toEqual([`step ${KEY.slice(0, 12)}: remote result is corrupt: bad digest; running it here instead`]);
  });
});

describe("the client's smaller promises", () => {
  test("every attempt is used and no more; four by default", async () => {
    hook = () => new Response("busy", { status: 503 });
    expect(await client({ attempts: 2 }).hasAction(KEY)).toBe(false);
    expect(seen).toHaveLength(2);
    seen.length = 0;
    expect(await new RemoteCache({ url, token: RW, warn: () => {} }).hasAction(KEY)).toBe(false);
    expect(seen).toHaveLength(4);
  }, 20_000);

  test("a refused token's error carries the server's reason", async () => {
    hook = () => Response.json({ error: "token revoked" }, { status: 403 });
    await expect(client().getAction(KEY)).rejects.toThrow(`the remote cache at ${url} refused the token (HTTP 403: token revoked)`);
  });

  test("requests failing together still warn once; a 404 or a body that is not JSON is a miss, not an outage", async () => {
    const remote = client();
    expect(await remote.getAction(KEY)).toBeUndefined(); // 404
    hook = (request) => (request.method === "GET" && request.url.includes("/v1/actions/") ? new Response("not json") : undefined);
    expect(await remote.getAction(KEY)).toBeUndefined();
    expect(remote.available).toBe(true);
    // Not an outage: one warning that the server sends results that are none, and a miss.
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain("remote result is malformed: it is not JSON");
    server.stop(true);
    await Promise.all([remote.getAction(KEY), remote.hasAction(KEY), remote.conflicts()]);
    expect(warnings).toHaveLength(2);
    expect(await remote.conflicts()).toEqual([]);
  });

  test("an upload to a remote that stops answering gives up quietly (one warning), it does not throw", async () => {
    hook = () => new Response("busy", { status: 503 });
    const remote = client();
    await remote.upload(KEY, { diffId: `sha256:${"2".repeat(64)}`, created: 1 }, layerFile("data"));
    expect(warnings).toHaveLength(1);
    hook = (request) => (request.method === "PUT" ? new Response("busy", { status: 503 }) : undefined);
    const later = client();
    await later.upload("b".repeat(64), { diffId: `sha256:${"2".repeat(64)}`, created: 1 }, layerFile("data2"));
    await client().upload("c".repeat(64), { diffId: null, created: 1 }).catch((error) => warnings.push(`threw ${error}`));
    expect(warnings.filter((w) => w.startsWith("threw"))).toEqual([]);
  });

  test("a long error body is cut to 200 characters in the warning", async () => {
    hook = (request) => (request.method === "PUT" ? new Response("e".repeat(300), { status: 400 }) : undefined);
    await client().upload(KEY, { diffId: null, created: 1 });
    expect(warnings).toEqual([`remote cache refused a result (HTTP 400: ${"e".repeat(200)})`]);
  });

  test("once given up, the remote is asked nothing more", async () => {
    hook = () => new Response("busy", { status: 503 });
    const remote = client();
    expect(await remote.hasAction(KEY)).toBe(false);
    const asked = seen.length;
    expect(await remote.getAction(KEY)).toBeUndefined();
    await remote.upload(KEY, { diffId: null, created: 1 });
    expect(seen.length).toBe(asked);
    expect(warnings).toHaveLength(1);
  });

  test("a refused token with no reason says just the status", async () => {
    hook = () => new Response("", { status: 401 });
    await expect(client().getAction(KEY)).rejects.toThrow(new RemoteCacheError(`the remote cache at ${url} refused the token (HTTP 401)`));
  });

  test("a JSON error without a reason is cut to 200 characters too", async () => {
    const long = JSON.stringify({ detail: "d".repeat(300) });
    hook = (request) => (request.method === "PUT" ? new Response(long, { status: 400 }) : undefined);
    await client().upload(KEY, { diffId: null, created: 1 });
    expect(warnings).toEqual([`remote cache refused a result (HTTP 400: ${long.slice(0, 200)})`]);
  });
});

describe("what the client asks, and how", () => {
  test("existence checks are HEAD requests (no body is sent back), downloads GET; a URL's trailing slashes are dropped", async () => {
    const remote = client({ url: `${url}//` });
    await remote.probe();
    expect(await remote.hasAction(KEY)).toBe(false);
    await remote.upload(KEY, { diffId: `sha256:${"2".repeat(64)}`, created: 1 }, layerFile("bytes"));
    const hash = blake3Hex("bytes");
    expect(await remote.fetchBlob(hash, join(work, `got-${++n}`), 5)).toBe(true);
    expect(await remote.conflicts()).toEqual([]);
    expect(seen).toEqual([`HEAD /v1/actions/${"0".repeat(64)}`, `HEAD /v1/actions/${KEY}`, `HEAD /v1/blobs/${hash}`, `PUT /v1/blobs/${hash}`, `PUT /v1/actions/${KEY}`, `GET /v1/blobs/${hash}`, "GET /v1/conflicts"]);
  });

  test("a blob the remote does not have is a miss: the remote stays in use", async () => {
    const remote = client();
    expect(await remote.fetchBlob(blake3Hex("absent"), join(work, `absent-${++n}`), 6)).toBe(false);
    expect(remote.available).toBe(true);
    expect(warnings).toEqual([]);
  });

  test("a trust list entry is taken as written, surrounding blanks and all", async () => {
    const ci = SigningKey.generate().key;
    await client({ signer: ci }).upload(KEY, { diffId: null, created: 1 });
    expect(await client({ trust: [`  ${ci.publicKey}\n`] }).getAction(KEY)).toBeDefined();
  });

  test("downloads leave no descriptor open, kept or refused", async () => {
    const descriptors = () => require("node:fs").readdirSync("/proc/self/fd").length;
    const remote = client();
    await remote.upload(KEY, { diffId: `sha256:${"2".repeat(64)}`, created: 1 }, layerFile("twelve bytes"));
    const hash = blake3Hex("twelve bytes");
    await remote.upload("b".repeat(64), { diffId: `sha256:${"2".repeat(64)}`, created: 1 }, layerFile("other bytes!"));
    const before = descriptors();
    expect(await remote.fetchBlob(hash, join(work, `d-${++n}`), 12)).toBe(true);
    expect(await remote.fetchBlob(hash, join(work, `d-${++n}`), 5)).toBe(false); // cut off: given up
    const other = blake3Hex("other bytes!");
    writeFileSync(parts.storage.blobPath(other), "OTHER bytes!"); // before the server ever read it
    await expect(client().fetchBlob(other, join(work, `d-${++n}`), 12)).rejects.toThrow(RemoteCacheError);
    expect(descriptors()).toBe(before);
  });
});

