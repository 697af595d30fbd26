/**
 * Downloads under uploads, in one run on loopback: clients fetching a stored 4 KiB blob alone,
 * then the same while other clients upload new 64 KiB blobs. Prints hits/s, p99 and the worst
 * wait for both, and the ratio (goal: with uploads, at least half the hit rate, p99 < 100 ms,
 * no errors).
 *
 *   bun run bench/server-mixed-load.ts [--seconds 30] [--downloaders 50] [--uploaders 5]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startCacheServer } from "../test/support/server.ts";
import { mixedLoad, type LoadResult } from "../test/support/mixed-load.ts";

const { values } = parseArgs({ options: { seconds: { type: "string", default: "30" }, downloaders: { type: "string", default: "50" }, uploaders: { type: "string", default: "5" } } });
const work = mkdtempSync(join(tmpdir(), "memobuild-bench-mixed-"));
const TOKEN = "bench-token-0123456789";
const server = await startCacheServer(join(work, "data"), ["--token", TOKEN], { MEMOBUILD_LOG: "warn" });
try {
  const run = (uploaders: number) => mixedLoad({ url: server.url, token: TOKEN, seconds: Number(values.seconds), downloaders: Number(values.downloaders), uploaders });
  const show = (label: string, r: LoadResult) =>
    console.log(`${label.padEnd(16)} ${r.hitsPerSecond.toFixed(0).padStart(7)} hits/s   p99 ${r.p99Ms.toFixed(1).padStart(7)} ms   max ${r.maxMs.toFixed(0).padStart(6)} ms   uploads ${String(r.uploads).padStart(6)}   errors ${r.errors.length}`);
  const alone = await run(0);
  show("downloads alone", alone);
  const mixed = await run(Number(values.uploaders));
  show("with uploads", mixed);
  console.log(`hit rate with uploads / alone: ${(mixed.hitsPerSecond / alone.hitsPerSecond).toFixed(2)}`);
} finally {
  await server.stop();
  rmSync(work, { recursive: true, force: true });
}
