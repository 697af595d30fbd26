/**
 * Two `memobuild serve` processes on one PostgreSQL (--db) and one S3 bucket (--blobs), with no
 * stickiness between them, behave as one server: results, conflicts, events, logins and
 * webhooks are shared, and a replica killed mid-upload leaves nothing the other would serve.
 * Real engines (test/support/engines.ts), the real binary, loopback only.
 */
import { afterAll, afterEach, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { blake3Hex } from "../src/hash/blake3.ts";
import { postgres, s3, startPostgres } from "./support/engines.ts";
import { startCacheServer, type CacheServer } from "./support/server.ts";

await Promise.all([startPostgres(), s3()]);

const work = mkdtempSync(join(tmpdir(), "memobuild-replicas-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const RW = "replica-rw-token";
const RO = "replica-ro-token";
const OTHER_RW = "replica-other-rw-token";
const SECRET = `whsec_${randomBytes(32).toString("base64")}`;
let n = 0;

const running: CacheServer[] = [];
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const server of running.splice(0)) await server.stop("SIGKILL");
  for (const cleanup of cleanups.splice(0)) await cleanup();
}, 60_000);

/** `count` replicas on a fresh database and bucket prefix; the first gets its database from $MEMOBUILD_DB. */
async function replicas(count: number, args: string[] = []): Promise<CacheServer[]> {
  const db = await postgres();
  const { url: blobs, env } = (await s3()).blobs();
  const servers: CacheServer[] = [];
  for (let i = 0; i < count; i++) {
    const dbArgs = i === 0 ? [] : ["--db", db];
    const server = await startCacheServer(join(work, `r${++n}`), [...dbArgs, "--blobs", blobs, "--token", RW, "--token", OTHER_RW, "--read-only-token", RO, ...args], {
      ...env,
      ...(i === 0 ? { MEMOBUILD_DB: db } : {}),
      ...(args.includes("--webhook") ? { MEMOBUILD_WEBHOOK_SECRET: SECRET } : {}),
    });
    running.push(server);
    servers.push(server);
  }
  return servers;
}

const call = (server: CacheServer, method: string, path: string, body?: string | Uint8Array, token = RW, headers: Record<string, string> = {}) =>
  fetch(`${server.url}${path}`, { method, body, headers: { authorization: `Bearer ${token}`, ...headers }, redirect: "manual" });
const action = (blob: string, created = 1) => JSON.stringify({ blobs: [blake3Hex(blob)], diffId: null, created });

test("a result stored through one replica is a hit through the other; another result for it through the other is a 409, recorded once", async () => {
  const [one, two] = await replicas(2);
  for (const server of [one, two]) expect((await call(server, "GET", "/readyz")).status).toBe(200);
  const key = blake3Hex("step through one");
  expect((await call(one, "PUT", `/v1/blobs/${blake3Hex("layer")}`, "layer")).status).toBe(201);
  expect((await call(one, "PUT", `/v1/actions/${key}`, action("layer"))).status).toBe(201);
  expect(await (await call(two, "GET", `/v1/actions/${key}`, undefined, RO)).json()).toMatchObject({ blobs: [blake3Hex("layer")] });
  expect(await (await call(two, "GET", `/v1/blobs/${blake3Hex("layer")}`, undefined, RO)).text()).toBe("layer");
  // The same blob again through the other replica: already stored, nothing written.
  expect((await call(two, "PUT", `/v1/blobs/${blake3Hex("layer")}`, "layer")).status).toBe(200);
  expect((await call(two, "PUT", `/v1/blobs/${blake3Hex("evil")}`, "evil")).status).toBe(201);
  // Another writer's (its own writer's would be "not reproducible", not a conflict).
  expect((await call(two, "PUT", `/v1/actions/${key}`, action("evil"), OTHER_RW)).status).toBe(409);
  const conflicts = (await (await call(one, "GET", "/v1/conflicts", undefined, RO)).json()) as { conflicts: { key: string }[] };
  expect(conflicts.conflicts.map((c) => c.key)).toEqual([key]);
  // Two different results for a new key, one through each replica at once: one wins, one is refused.
  const fresh = blake3Hex("raced step");
  const statuses = await Promise.all([call(one, "PUT", `/v1/actions/${fresh}`, action("layer")), call(two, "PUT", `/v1/actions/${fresh}`, action("evil"), OTHER_RW)]);
  expect(statuses.map((r) => r.status).sort()).toEqual([201, 409]);
}, 60_000);

test("a watcher on one replica gets every event of a build reported to the other, in order; since=ID resumes on either", async () => {
  const [one, two] = await replicas(2);
  const messages: { id: number; type: string; build: string; seq: number }[] = [];
  const socket = new WebSocket(`${two.url.replace("http", "ws")}/v1/events?since=0`, { headers: { authorization: `Bearer ${RO}` } } as unknown as string[]);
  cleanups.push(() => socket.close());
  socket.onmessage = (m) => messages.push(JSON.parse(String(m.data)));
  await new Promise((resolve, reject) => ((socket.onopen = resolve), (socket.onerror = reject)));
  const build = "build-replica-0001";
  const events = [
    { type: "build.started", seq: 1, time: 1, dockerfile: "Dockerfile", platform: "linux/amd64", host: "ci", steps: [{ id: "a/0", stage: "a", number: 1, name: "RUN x" }] },
    { type: "step.updated", seq: 2, time: 2, step: "a/0", state: "running" },
    { type: "step.updated", seq: 3, time: 3, step: "a/0", state: "executed", durationMs: 1 },
    { type: "build.finished", seq: 4, time: 4, result: "success", durationMs: 3, executed: 1, cached: 0, savedMs: 0 },
  ];
  for (const event of events) {
    const response = await call(one, "POST", `/v1/builds/${build}/events`, JSON.stringify({ events: [event] }), RW, { "content-type": "application/json" });
    expect(response.status).toBe(200);
  }
  const deadline = Date.now() + 15_000;
  while (messages.length < 4 && Date.now() < deadline) await Bun.sleep(50);
  expect(messages.map((m) => [m.build, m.seq, m.type])).toEqual(events.map((e) => [build, e.seq, e.type]));
  const ids = messages.map((m) => m.id);
  expect(ids).toEqual([...ids].sort((a, b) => a - b));
  // The build itself reads the same from either replica.
  expect(await (await call(two, "GET", `/v1/builds/${build}`, undefined, RO)).json()).toMatchObject({ result: "success", executed: 1 });
  // Resuming from the second event's id on the replica that took the report replays the rest.
  const resumed: { seq: number }[] = [];
  const again = new WebSocket(`${one.url.replace("http", "ws")}/v1/events?since=${ids[1]}`, { headers: { authorization: `Bearer ${RO}` } } as unknown as string[]);
  cleanups.push(() => again.close());
  again.onmessage = (m) => resumed.push(JSON.parse(String(m.data)));
  const until = Date.now() + 15_000;
  while (resumed.length < 2 && Date.now() < until) await Bun.sleep(50);
  expect(resumed.map((m) => m.seq)).toEqual([3, 4]);
}, 60_000);

test("a dashboard login made on one replica works on the other, and a logout on the other ends it", async () => {
  const [one, two] = await replicas(2);
  const login = await fetch(`${one.url}/login`, { method: "POST", body: `token=${RO}`, headers: { "content-type": "application/x-www-form-urlencoded", origin: one.url }, redirect: "manual" });
  expect(login.status).toBe(303);
  const cookie = login.headers.get("set-cookie")!.split(";")[0];
  // The replicas stand behind one address in production; here each is asked with its own origin.
  expect((await fetch(`${two.url}/v1/builds`, { headers: { cookie, origin: two.url } })).status).toBe(200);
  await fetch(`${two.url}/logout`, { method: "POST", headers: { cookie, origin: two.url }, redirect: "manual" });
  expect((await fetch(`${one.url}/v1/builds`, { headers: { cookie, origin: one.url } })).status).toBe(401);
}, 60_000);

test("a webhook is delivered once, whichever replica takes it, with both running", async () => {
  const received: { id: string; type: string }[] = [];
  const receiver = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(request) {
      received.push({ id: request.headers.get("webhook-id")!, type: ((await request.json()) as { type: string }).type });
      // A slow receiver: both replicas poll the queue several times while this delivery is in flight.
      await Bun.sleep(1500);
      return new Response("");
    },
  });
  cleanups.push(() => receiver.stop(true));
  const [one, two] = await replicas(2, ["--webhook", `http://127.0.0.1:${receiver.port}/hook`, "--webhook-events", "build.finished"]);
  const events = (time: number) => [
    { type: "build.started", seq: 1, time, dockerfile: "Dockerfile", platform: "linux/amd64", host: "ci", steps: [] },
    { type: "build.finished", seq: 2, time: time + 1, result: "success", durationMs: 1, executed: 0, cached: 0, savedMs: 0 },
  ];
  for (const [server, build] of [[one, "build-hook-one-1"], [two, "build-hook-two-1"]] as const) {
    const response = await call(server, "POST", `/v1/builds/${build}/events`, JSON.stringify({ events: events(10) }), RW, { "content-type": "application/json" });
    expect(response.status).toBe(200);
  }
  const deadline = Date.now() + 15_000;
  while (received.length < 2 && Date.now() < deadline) await Bun.sleep(50);
  await Bun.sleep(2000); // both replicas poll every half second: a second delivery would come now
  expect(received.length).toBe(2);
  expect(new Set(received.map((r) => r.id)).size).toBe(2);
}, 60_000);

test("kill -9 of a replica mid-upload: the other answers 404 for that blob, then stores and serves it whole", async () => {
  const [one, two] = await replicas(2);
  const part = new Uint8Array(1024 * 1024).fill(7);
  const chunks = 12;
  const whole = new Uint8Array(part.length * chunks);
  for (let i = 0; i < chunks; i++) whole.set(part, i * part.length);
  whole[whole.length - 1] = 9;
  const hash = blake3Hex(whole);
  let sent = 0;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (sent === 8) {
        // Eight MiB are on their way (a part has been sent to the store): the replica dies.
        await Bun.sleep(500);
        one.process.kill("SIGKILL");
        await one.process.exited;
        controller.error(new Error("the replica went away"));
        return;
      }
      controller.enqueue(whole.subarray(sent * part.length, ++sent * part.length));
    },
  });
  const upload = fetch(`${one.url}/v1/blobs/${hash}`, { method: "PUT", body, headers: { authorization: `Bearer ${RW}` }, duplex: "half" } as RequestInit);
  await upload.then(
    (response) => expect(response.status).not.toBe(201),
    () => {},
  );
  for (const method of ["HEAD", "GET"]) expect((await call(two, method, `/v1/blobs/${hash}`, undefined, RO)).status).toBe(404);
  expect((await call(two, "PUT", `/v1/blobs/${hash}`, whole)).status).toBe(201);
  const served = new Uint8Array(await (await call(two, "GET", `/v1/blobs/${hash}`, undefined, RO)).arrayBuffer());
  expect([served.length, blake3Hex(served)]).toEqual([whole.length, hash]);
}, 60_000);
