/** What the server says at the default log level: what an operator acts on, and traffic as one line a minute. */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "../util/log.ts";
import { startServer } from "./server.ts";
import { parseWebhookEvents, parseWebhookSecret } from "./webhooks.ts";
import { blake3Hex } from "../hash/blake3.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-server-log-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

test("each request is logged at debug only; info has a line per period of traffic, and none when there was none", async () => {
  const lines: string[] = [];
  const log = createLogger({ MEMOBUILD_LOG: "info" }, (line) => void lines.push(line));
  const server = await startServer({ listen: "127.0.0.1:0", dataDir: join(work, "data"), tokens: [], log, trafficLogMs: 100 });
  try {
    for (let i = 0; i < 3; i++) await fetch(`${server.url}/v1/blobs/${"a".repeat(64)}`, { method: "HEAD" });
    await Bun.sleep(250);
    expect(lines.filter((l) => l.startsWith("info request") || l.startsWith("debug request"))).toEqual([]);
    expect(lines.filter((l) => l.includes("traffic in the last minute"))).toEqual(["info traffic in the last minute requests=3 errors=0\n"]);
  } finally {
    await server.stop();
  }
  const debug: string[] = [];
  const verbose = await startServer({ listen: "127.0.0.1:0", dataDir: join(work, "data-debug"), tokens: [], log: createLogger({ MEMOBUILD_LOG: "debug" }, (line) => void debug.push(line)) });
  try {
    await fetch(`${verbose.url}/healthz`);
    expect(debug.some((l) => l.startsWith("debug request method=GET path=/healthz status=200"))).toBe(true);
  } finally {
    await verbose.stop();
  }
});

test("info says what an operator acts on: start, evictions, webhook failures (where to, never the secret path), stop", async () => {
  const lines: string[] = [];
  const log = createLogger({ MEMOBUILD_LOG: "info" }, (line) => void lines.push(line));
  const webhooks = { targets: [{ url: "http://127.0.0.1:1/services/T000/B000/secret-path", events: parseWebhookEvents("build.finished") }], key: parseWebhookSecret(`whsec_${Buffer.alloc(32, 7).toString("base64")}`), maxAttempts: 1, pollMs: 20 };
  const server = await startServer({ listen: "127.0.0.1:0", dataDir: join(work, "data-ops"), tokens: [], log, maxSize: 1500, webhooks });
  server.storage.options.pendingGraceMs = -1000; // a blob no result names yet may go at once
  try {
    for (const fill of ["a", "b"]) {
      const body = fill.repeat(1000);
      expect((await fetch(`${server.url}/v1/blobs/${blake3Hex(body)}`, { method: "PUT", body })).status).toBe(201);
    }
    const events = [
      { type: "build.started", seq: 1, time: 1, dockerfile: "Dockerfile", platform: "linux/amd64", host: "h", labels: {}, steps: [] },
      { type: "build.finished", seq: 2, time: 2, result: "success", durationMs: 1, executed: 0, cached: 0, savedMs: 0 },
    ];
    await fetch(`${server.url}/v1/builds/build-log-0001/events`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ events }) });
    const deadline = Date.now() + 10_000;
    while (!lines.some((l) => l.includes("webhook delivery failed for good")) && Date.now() < deadline) await Bun.sleep(20);
  } finally {
    await server.stop();
  }
  expect(lines[0]).toStartWith("info listening url=");
  expect(lines.some((l) => l.startsWith("info evicted to stay under --max-size entries="))).toBe(true);
  const failure = lines.find((l) => l.includes("webhook delivery failed for good"))!;
  expect(failure).toContain("url=http://127.0.0.1:1 ");
  expect(lines.join("")).not.toContain("secret-path");
  expect(lines.at(-1)).toStartWith("info stopped url=");
});

test("webhooks link builds at --public-url, else at the address the server listens on", async () => {
  const quiet = createLogger({ MEMOBUILD_LOG: "error" });
  const behindProxy = await startServer({ listen: "127.0.0.1:0", dataDir: join(work, "data-public"), tokens: [], log: quiet, publicUrl: "https://builds.example.com" });
  const direct = await startServer({ listen: "127.0.0.1:0", dataDir: join(work, "data-direct"), tokens: [], log: quiet });
  try {
    expect(behindProxy.hub.publicUrl).toBe("https://builds.example.com");
    expect(direct.hub.publicUrl).toBe(direct.url);
  } finally {
    await behindProxy.stop();
    await direct.stop();
  }
});
