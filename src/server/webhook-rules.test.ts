/**
 * Webhooks, the rules around delivery: how a secret and the event list are read, which answers
 * count as delivered, what is recorded for a failure, when the next try is due, and that a stop
 * waits for attempts in flight. (webhooks.test.ts checks the messages themselves.)
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UserError } from "../errors.ts";
import { createLogger } from "../util/log.ts";
import { createParts, type ServerParts } from "./parts.ts";
import { parseWebhookEvents, parseWebhookSecret, readWebhookSecret, type WebhookEvent } from "./webhooks.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-webhook-rules-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const secret = (bytes: number) => `whsec_${Buffer.alloc(bytes, 7).toString("base64")}`;

function refusal(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(UserError);
    return (error as Error).message;
  }
  throw new Error("accepted");
}

describe("the secret", () => {
  test("whsec_ and 24 to 64 bytes in base64, padded or not, blanks around it ignored", () => {
    expect(parseWebhookSecret(secret(24))).toEqual(Buffer.alloc(24, 7));
    expect(parseWebhookSecret(secret(64))).toEqual(Buffer.alloc(64, 7));
    expect(parseWebhookSecret(secret(25)).length).toBe(25); // "==" padding
    expect(parseWebhookSecret(secret(26)).length).toBe(26); // "=" padding
    expect(parseWebhookSecret(` ${secret(32)}\n`).length).toBe(32);
  });

  test("anything else is refused, naming where it came from", () => {
    for (const bad of [secret(23), secret(65), `x${secret(32)}`, `${secret(32)}!`, `${secret(32)} tail`, secret(32).replace("whsec_", ""), "whsec_"]) {
      expect(refusal(() => parseWebhookSecret(bad))).toStartWith("--webhook-secret: a webhook secret is whsec_ and 24 to 64 bytes in base64 (e.g. whsec_");
    }
    expect(refusal(() => parseWebhookSecret("nope", "/etc/hook.secret"))).toStartWith("/etc/hook.secret: a webhook secret is whsec_");
  });

  test("from a file: read whole, its newline ignored; a missing or bad file is named", () => {
    const file = join(work, "secret");
    writeFileSync(file, `${secret(32)}\n`);
    expect(readWebhookSecret(file)).toEqual(Buffer.alloc(32, 7));
    expect(refusal(() => readWebhookSecret(join(work, "absent")))).toStartWith(`cannot read the webhook secret file ${join(work, "absent")}: ENOENT`);
    writeFileSync(file, "whsec_short\n");
    expect(refusal(() => readWebhookSecret(file))).toStartWith(`${file}: a webhook secret is whsec_`);
  });
});

describe("the event list", () => {
  test("names separated by commas, blanks and empty names ignored", () => {
    expect([...parseWebhookEvents(" build.finished , cache.conflict ")]).toEqual(["build.finished", "cache.conflict"]);
    expect([...parseWebhookEvents("build.failed,,")]).toEqual(["build.failed"]);
  });

  test("an unknown name, or none, is refused", () => {
    expect(refusal(() => parseWebhookEvents("build.finished,build.started"))).toBe('--webhook-events: unknown event "build.started" (use build.finished, build.failed, cache.conflict)');
    for (const none of ["", " , ,"]) expect(refusal(() => parseWebhookEvents(none))).toBe("--webhook-events: name at least one event");
  });
});

describe("delivery", () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });

  /** A receiver answering each request with the next of `answers` (status, and a delay in ms). */
  function receiver(answers: { status: number; delayMs?: number }[]) {
    const received: Record<string, string>[] = [];
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(request) {
        received.push(Object.fromEntries(request.headers));
        await request.text();
        const answer = answers.shift() ?? { status: 200 };
        if (answer.delayMs) await Bun.sleep(answer.delayMs);
        return new Response(answer.status === 204 ? null : "ok", { status: answer.status });
      },
    });
    cleanups.push(() => server.stop(true));
    return { url: `http://127.0.0.1:${server.port}/hook`, received };
  }

  async function hub(url: string, retryBaseMs = 60_000): Promise<ServerParts> {
    const parts = await createParts({
      dataDir: mkdtempSync(join(work, "hub-")),
      tokens: [],
      log: createLogger({ MEMOBUILD_LOG: "error" }),
      webhooks: { targets: [{ url, events: parseWebhookEvents("build.failed") }], key: parseWebhookSecret(secret(32)), retryBaseMs, pollMs: 20 },
    });
    cleanups.push(() => parts.close());
    return parts;
  }

  const publish = (parts: ServerParts) => parts.webhooks!.publish("build.failed" as WebhookEvent, { id: "b1" });
  const latest = async (parts: ServerParts) => (await parts.history.recentDeliveries(1))[0];

  async function until(check: () => boolean | Promise<boolean>, what: string) {
    const deadline = Date.now() + 10_000;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await Bun.sleep(10);
    }
  }

  test("any 2xx is delivered, an answer without a body too; 300 is not (redirects are not followed)", async () => {
    for (const [status, outcome] of [[204, "delivered"], [299, "delivered"], [300, "pending"]] as const) {
      const target = receiver([{ status }]);
      const parts = await hub(target.url);
      await publish(parts);
      await parts.webhooks!.settle();
      await until(async () => (await latest(parts))?.attempts === 1, `the attempt answered ${status}`);
      expect(await latest(parts)).toMatchObject({ status: outcome, lastStatus: status });
    }
  });

  test("a delivery is a JSON POST that names its sender", async () => {
    const target = receiver([]);
    const parts = await hub(target.url);
    await publish(parts);
    await until(() => target.received.length === 1, "the delivery");
    expect(target.received[0]).toMatchObject({ "content-type": "application/json", "user-agent": "memobuild-webhooks" });
  });

  test("a failure records why; the next try waits the base, then twice the base", async () => {
    const target = receiver([{ status: 500 }, { status: 503 }]);
    const parts = await hub(target.url);
    const before = Date.now();
    await publish(parts);
    await parts.webhooks!.settle();
    await until(async () => (await latest(parts))?.attempts === 1, "the first attempt");
    const first = await latest(parts);
    expect(first).toMatchObject({ status: "pending", lastStatus: 500, lastError: "HTTP 500" });
    expect(first.nextAttempt).toBeGreaterThanOrEqual(before + 60_000);
    expect(first.nextAttempt).toBeLessThanOrEqual(Date.now() + 60_000);
    // Pending, and the gauge says so.
    expect(await parts.metrics.render()).toContain("memobuild_webhook_pending 1");
    // The minute has passed: the second try is due now.
    const beforeSecond = Date.now();
    await parts.history.updateDelivery(first.id, { attempts: 1, nextAttempt: 0, status: "pending" });
    await until(async () => (await latest(parts))?.attempts === 2, "the second attempt");
    const second = await latest(parts);
    expect(second).toMatchObject({ lastStatus: 503, lastError: "HTTP 503" });
    expect(second.nextAttempt).toBeGreaterThanOrEqual(beforeSecond + 120_000);
    expect(second.nextAttempt).toBeLessThanOrEqual(Date.now() + 120_000);
  });

  test("a receiver that cannot be reached is recorded with the connection's error", async () => {
    const gone = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
    const url = `http://127.0.0.1:${gone.port}/hook`;
    gone.stop(true);
    const parts = await hub(url);
    await publish(parts);
    await until(async () => (await latest(parts))?.attempts === 1, "the attempt");
    expect((await latest(parts)).lastStatus).toBeUndefined();
    expect((await latest(parts)).lastError).not.toMatch(/^HTTP/);
    expect((await latest(parts)).lastError).toBeTruthy();
  });

  test("settle waits for every attempt in flight, not only the first to end", async () => {
    const target = receiver([{ status: 200, delayMs: 200 }, { status: 200, delayMs: 500 }]);
    const parts = await hub(target.url);
    await Promise.all([publish(parts), publish(parts)]);
    await until(() => target.received.length === 2, "both attempts to start");
    await parts.webhooks!.settle();
    expect((await parts.history.recentDeliveries(2)).map((d) => d.status)).toEqual(["delivered", "delivered"]);
  });

  test("settle waits for the attempts in flight", async () => {
    const target = receiver([{ status: 200, delayMs: 300 }]);
    const parts = await hub(target.url);
    await publish(parts);
    await until(() => target.received.length === 1, "the attempt to start");
    await parts.webhooks!.settle();
    expect(await latest(parts)).toMatchObject({ status: "delivered", attempts: 1 });
  });
});
