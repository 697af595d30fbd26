/** What the server says at the default log level: what an operator acts on, and traffic as one line a minute. */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "../util/log.ts";
import { startServer } from "./server.ts";

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
