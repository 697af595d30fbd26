/** The cache server stays fair under mixed load: downloads never wait on uploads (issue 12). */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startCacheServer } from "./support/server.ts";
import { mixedLoad } from "./support/mixed-load.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-load-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

test("while clients upload, every download is answered within a second, without errors", async () => {
  const server = await startCacheServer(join(work, "data"), ["--token", "load-token-0123"], { MEMOBUILD_LOG: "warn" });
  try {
    const result = await mixedLoad({ url: server.url, token: "load-token-0123", seconds: 3, downloaders: 20, uploaders: 4 });
    expect(result.errors).toEqual([]);
    expect(result.uploads).toBeGreaterThan(0);
    expect(result.hits).toBeGreaterThan(0);
    expect(result.maxMs).toBeLessThan(1000);
  } finally {
    await server.stop();
  }
}, 30_000);
