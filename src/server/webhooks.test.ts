import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
// An independent implementation of the Standard Webhooks verification, as a receiver would use.
import { Webhook } from "standardwebhooks";
import type { BuildEvent } from "../report/events.ts";
import { blake3Hex } from "../hash/blake3.ts";
import { createApp } from "./app.ts";
import { createLogger } from "../util/log.ts";
import { createParts, type ServerParts } from "./parts.ts";
import { parseWebhookEvents, parseWebhookSecret, signWebhook } from "./webhooks.ts";
import { BACKENDS } from "../../test/support/backends.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-webhooks-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const quiet = createLogger({ MEMOBUILD_LOG: "error" });
const SECRET = `whsec_${randomBytes(32).toString("base64")}`;

interface Received {
  headers: Record<string, string>;
  body: string;
}

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

/** A receiver that answers each request with the next status of `answers` (then 200). */
function receiver(answers: number[]) {
  const received: Received[] = [];
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(request) {
      received.push({ headers: Object.fromEntries(request.headers), body: await request.text() });
      return new Response("", { status: answers.shift() ?? 200 });
    },
  });
  cleanups.push(() => server.stop(true));
  return { url: `http://127.0.0.1:${server.port}/hook`, received };
}

for (const backend of BACKENDS) describe(`webhooks on ${backend.name}`, () => {
  async function hub(url: string, events = "build.finished,build.failed,cache.conflict", maxAttempts = 10, tokens: { token: string; role: "rw" }[] = []): Promise<ServerParts> {
    const dataDir = join(work, `d${Math.random().toString(36).slice(2)}`);
    const parts = await createParts({
      dataDir,
      ...(await backend.options(dataDir)),
      tokens,
      log: quiet,
      webhooks: { targets: [{ url, events: parseWebhookEvents(events) }], key: parseWebhookSecret(SECRET), retryBaseMs: 50, maxAttempts, pollMs: 20 },
    });
    cleanups.push(() => parts.close());
    return parts;
  }

  const finished = (result: "success" | "failed"): BuildEvent[] => [
    { type: "build.started", seq: 1, time: 1, dockerfile: "Dockerfile", platform: "linux/amd64", host: "h", labels: { team: "web" }, steps: [] },
    { type: "build.finished", seq: 2, time: 2, result, durationMs: 1500, executed: 1, cached: 3, savedMs: 9000 },
  ];

  async function until(check: () => boolean | Promise<boolean>, what: string) {
    const deadline = Date.now() + 10_000;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await Bun.sleep(20);
    }
  }

  test("a receiver that fails twice gets the event on the third try, with the same webhook-id and a signature any Standard Webhooks library accepts", async () => {
    const target = receiver([500, 503]);
    const parts = await hub(target.url);
    await parts.hub.report("build-hook-0001", "t", { events: finished("success") });
    await until(() => target.received.length === 3, "three attempts");
    const ids = new Set(target.received.map((r) => r.headers["webhook-id"]));
    expect(ids.size).toBe(1);
    expect([...ids][0]).toMatch(/^msg_[0-9a-f]{32}$/);
    const verifier = new Webhook(SECRET);
    for (const attempt of target.received) {
      const payload = verifier.verify(attempt.body, attempt.headers) as { type: string; data: Record<string, unknown> };
      expect(payload.type).toBe("build.finished");
      expect(payload.data).toMatchObject({ id: "build-hook-0001", result: "success", savedMs: 9000, labels: { team: "web" } });
      expect(payload.data.token).toBeUndefined();
    }
    await until(async () => (await parts.history.recentDeliveries(1))[0]?.status === "delivered", "the delivery to be logged");
    expect((await parts.history.recentDeliveries(1))[0]).toMatchObject({ attempts: 3, status: "delivered", lastStatus: 200 });
    const metrics = await parts.metrics.render();
    expect(metrics).toContain('memobuild_webhook_deliveries_total{outcome="retry"} 2');
    expect(metrics).toContain('memobuild_webhook_deliveries_total{outcome="delivered"} 1');
  });

  test("a redirect is not followed: a receiver cannot bounce a signed delivery elsewhere", async () => {
    const elsewhere = receiver([]);
    const bouncer = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response(null, { status: 307, headers: { location: elsewhere.url } }) });
    cleanups.push(() => bouncer.stop(true));
    const parts = await hub(`http://127.0.0.1:${bouncer.port}/hook`, "build.finished", 1);
    await parts.hub.report("build-hook-0009", "t", { events: finished("success") });
    await until(async () => ["failed", "delivered"].includes((await parts.history.recentDeliveries(1))[0]?.status), "the one attempt");
    expect((await parts.history.recentDeliveries(1))[0]).toMatchObject({ status: "failed", attempts: 1, lastStatus: 307 });
    expect(elsewhere.received).toEqual([]);
  });

  test("a tampered body or another secret does not verify", async () => {
    const target = receiver([]);
    (await hub(target.url)).hub.report("build-hook-0002", "t", { events: finished("failed") });
    await until(() => target.received.length === 1, "build.failed");
    const [first] = target.received;
    expect(() => new Webhook(SECRET).verify(first.body.replace("failed", "success"), first.headers)).toThrow();
    expect(() => new Webhook(`whsec_${randomBytes(32).toString("base64")}`).verify(first.body, first.headers)).toThrow();
  });

  test("a build's end is one message: a failed build is build.failed, not also build.finished; it says where the build is, who built what, and which step failed with its output", async () => {
    const target = receiver([]);
    const parts = await hub(target.url);
    parts.hub.publicUrl = "https://hub.example/";
    const started = {
      ...finished("failed")[0],
      project: "widget",
      git: { repository: "https://github.com/acme/widget.git", branch: "feature/x", commit: "c".repeat(40), dirty: true },
      tags: ["registry.example/widget:pr-7"],
      steps: [{ id: "0/1", stage: "0", number: 1, name: "[1/1] RUN make" }],
    } as BuildEvent;
    const failedStep: BuildEvent = { type: "step.updated", seq: 2, time: 2, step: "0/1", state: "failed", tail: ["cc: error", "make: *** Error 1"] };
    await parts.hub.report("build-hook-0005", "t", { events: [started, failedStep, { ...finished("failed")[1], seq: 3 }] });
    await parts.hub.report("build-hook-0006", "t", { events: finished("success") });
    await until(() => target.received.length === 2, "two messages");
    await Bun.sleep(200); // and no third
    const bodies = target.received.map((r) => JSON.parse(r.body) as { type: string; data: Record<string, unknown> });
    expect(bodies.map((b) => b.type).sort()).toEqual(["build.failed", "build.finished"]);
    const failed = bodies.find((b) => b.type === "build.failed")!.data;
    expect(failed).toMatchObject({
      id: "build-hook-0005",
      url: "https://hub.example/#/builds/build-hook-0005",
      project: "widget",
      branch: "feature/x",
      commit: "c".repeat(40),
      tags: ["registry.example/widget:pr-7"],
      failedStep: { number: 1, name: "[1/1] RUN make", output: ["cc: error", "make: *** Error 1"] },
    });
    // A receiver that takes only build.finished still hears of the failed build, once.
    const only = receiver([]);
    const other = await hub(only.url, "build.finished");
    await other.hub.report("build-hook-0007", "t", { events: finished("failed") });
    await until(() => only.received.length === 1, "build.finished");
    expect(JSON.parse(only.received[0].body)).toMatchObject({ type: "build.finished", data: { result: "failed" } });
  });

  test("only the chosen events are sent; a receiver that never answers 2xx is given up on after the last attempt", async () => {
    const target = receiver([500, 500, 500, 500, 500]);
    const parts = await hub(target.url, "build.failed", 3);
    await parts.hub.report("build-hook-0003", "t", { events: finished("success") });
    await parts.hub.report("build-hook-0004", "t", { events: finished("failed") });
    await until(async () => (await parts.history.recentDeliveries(1))[0]?.status === "failed", "giving up");
    expect(target.received.length).toBe(3);
    expect(target.received.every((r) => JSON.parse(r.body).type === "build.failed")).toBe(true);
    expect(await parts.metrics.render()).toContain('memobuild_webhook_deliveries_total{outcome="failed"} 1');
  });

  test("a message written down survives a restart of the server and is delivered by the next one, with its id", async () => {
    const target = receiver([500]);
    const dataDir = join(work, `restart-${backend.name}`);
    const stores = await backend.options(dataDir);
    const webhooks = (retryBaseMs: number) => ({ targets: [{ url: target.url, events: parseWebhookEvents("build.finished") }], key: parseWebhookSecret(SECRET), retryBaseMs, pollMs: 20 });
    // The first server's attempt fails; its retry is a minute away when it stops.
    const first = await createParts({ dataDir, ...stores, tokens: [], log: quiet, webhooks: webhooks(60_000) });
    await first.hub.report("build-hook-0005", "t", { events: finished("success") });
    await until(async () => (await first.history.recentDeliveries(1))[0]?.attempts === 1, "a first failed attempt");
    await first.close();
    const second = await createParts({ dataDir, ...stores, tokens: [], log: quiet, webhooks: webhooks(50) });
    cleanups.push(() => second.close());
    const [pending] = await second.history.recentDeliveries(1);
    expect(pending).toMatchObject({ status: "pending", attempts: 1, lastStatus: 500 });
    await second.history.updateDelivery(pending.id, { attempts: 1, nextAttempt: 0, status: "pending" }); // the minute has passed
    await until(async () => (await second.history.recentDeliveries(1))[0]?.status === "delivered", "the retry");
    expect(target.received.length).toBe(2);
    expect(target.received[1].headers["webhook-id"]).toBe(target.received[0].headers["webhook-id"]);
  });

  test("a delivery claimed by a replica that died is delivered by another once its lease ends, with the same webhook-id", async () => {
    const target = receiver([]);
    const dataDir = join(work, `lease-${Math.random().toString(36).slice(2)}`);
    const stores = await backend.options(dataDir);
    // The replica that dies: it writes a message down and claims it, then never sends it.
    const dead = await createParts({ dataDir, ...stores, tokens: [], log: quiet });
    cleanups.push(() => dead.close());
    const now = Date.now();
    await dead.history.queueDelivery({ messageId: "msg_claimed_by_the_dead", url: target.url, type: "build.finished", body: "{}", attempts: 0, nextAttempt: 0, status: "pending", created: now });
    expect((await dead.history.claimDeliveries(now, 16, now + 1500)).map((d) => d.messageId)).toEqual(["msg_claimed_by_the_dead"]);
    const other = await createParts({ dataDir, ...stores, tokens: [], log: quiet, webhooks: { targets: [{ url: target.url, events: parseWebhookEvents("build.finished") }], key: parseWebhookSecret(SECRET), pollMs: 20 } });
    cleanups.push(() => other.close());
    await Bun.sleep(500);
    expect(target.received).toEqual([]); // still held by the dead replica's lease
    await until(() => target.received.length === 1, "the delivery after the lease");
    expect(target.received[0].headers["webhook-id"]).toBe("msg_claimed_by_the_dead");
    await until(async () => (await other.history.recentDeliveries(1))[0]?.status === "delivered", "the delivery to be logged");
    expect(target.received.length).toBe(1);
  }, 20_000);

  test("another token's different result for a step key fires cache.conflict with both sides; the same token's does not", async () => {
    const target = receiver([]);
    const tokens = [{ token: "first-writer-token", role: "rw" as const }, { token: "other-writer-token", role: "rw" as const }];
    const parts = await hub(target.url, "cache.conflict", 10, tokens);
    const app = createApp(parts);
    const put = (path: string, body: string, token: string) => app.fetch(new Request(`http://hub${path}`, { method: "PUT", body, headers: { authorization: `Bearer ${token}` } }));
    for (const blob of ["honest", "rebuilt", "evil"]) await put(`/v1/blobs/${blake3Hex(blob)}`, blob, tokens[0].token);
    const key = blake3Hex("step");
    expect((await put(`/v1/actions/${key}`, JSON.stringify({ blobs: [blake3Hex("honest")], diffId: null, created: 1 }), tokens[0].token)).status).toBe(201);
    // Its own writer again, with another result: not reproducible, not a conflict.
    const again = await put(`/v1/actions/${key}`, JSON.stringify({ blobs: [blake3Hex("rebuilt")], diffId: null, created: 2 }), tokens[0].token);
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ outcome: "not-reproducible" });
    expect((await put(`/v1/actions/${key}`, JSON.stringify({ blobs: [blake3Hex("evil")], diffId: null, created: 3 }), tokens[1].token)).status).toBe(409);
    await until(() => target.received.length === 1, "the conflict webhook");
    const payload = new Webhook(SECRET).verify(target.received[0].body, target.received[0].headers) as { type: string; data: { key: string; first: { author: string; result: string }; second: { author: string; result: string } } };
    expect(payload.type).toBe("cache.conflict");
    expect(payload.data.key).toBe(key);
    expect(payload.data.first.result).not.toBe(payload.data.second.result);
    expect(payload.data.first.author).not.toBe(payload.data.second.author);
    expect((await parts.history.recentDeliveries(10)).map((d) => d.type)).toEqual(["cache.conflict"]);
    expect(await parts.storage.conflictCount()).toBe(1);
    expect((await parts.storage.unreproducible()).map((u) => u.key)).toEqual([key]);
    // The non-deterministic steps panel: a step the upload did not name is shown by its key.
    expect(await parts.storage.nondeterministic(0)).toMatchObject([{ step: key, count: 1, lastBuild: null }]);
  });

  test("a receiver whose events leave out cache.conflict is not sent one", async () => {
    const target = receiver([]);
    const tokens = [{ token: "first-writer-token", role: "rw" as const }, { token: "other-writer-token", role: "rw" as const }];
    const parts = await hub(target.url, "build.failed", 10, tokens);
    const app = createApp(parts);
    const put = (path: string, body: string, token: string) => app.fetch(new Request(`http://hub${path}`, { method: "PUT", body, headers: { authorization: `Bearer ${token}` } }));
    for (const blob of ["honest", "evil"]) await put(`/v1/blobs/${blake3Hex(blob)}`, blob, tokens[0].token);
    const key = blake3Hex("step-unwatched");
    await put(`/v1/actions/${key}`, JSON.stringify({ blobs: [blake3Hex("honest")], diffId: null, created: 1 }), tokens[0].token);
    expect((await put(`/v1/actions/${key}`, JSON.stringify({ blobs: [blake3Hex("evil")], diffId: null, created: 2 }), tokens[1].token)).status).toBe(409);
    // A build end it does take arrives, and is the only thing it was sent.
    await parts.hub.report("build-hook-0010", "t", { events: finished("failed") });
    await until(() => target.received.length === 1, "the build.failed webhook");
    await Bun.sleep(100);
    expect(target.received.map((r) => JSON.parse(r.body).type)).toEqual(["build.failed"]);
  });
});

test("the signature is the spec's: base64 HMAC-SHA256 of id.timestamp.body under the decoded secret", async () => {
  const key = Buffer.from("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "base64");
  // The example from the Standard Webhooks specification's test vectors (whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw).
  expect(signWebhook(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}')).toBe("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
  expect(() => parseWebhookSecret("not-a-secret")).toThrow(/whsec_/);
  expect(() => parseWebhookSecret("whsec_c2hvcnQ=")).toThrow(/24 to 64 bytes/);
  expect(() => parseWebhookEvents("build.finished,build.exploded")).toThrow(/build.exploded/);
});
