/**
 * Two replicas of `memobuild serve` on PostgreSQL and S3 (the test engines: a throwaway
 * PostgreSQL cluster and a Ceph RADOS Gateway, on loopback) against the single-box server
 * (SQLite and a directory), under the same mixed load: clients fetching a stored 4 KiB blob,
 * a tenth of them uploading new 64 KiB blobs, spread over the replicas with no stickiness.
 * Prints errors (must be 0), hits/s and p99 for both. Not a test: run it by hand.
 *
 *   bun run bench/replicas.ts [--seconds 60] [--clients 200]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { postgres, s3, startPostgres } from "../test/support/engines.ts";
import { mixedLoad, type LoadResult } from "../test/support/mixed-load.ts";
import { startCacheServer, type CacheServer } from "../test/support/server.ts";

const { values } = parseArgs({ options: { seconds: { type: "string", default: "60" }, clients: { type: "string", default: "200" } } });
const seconds = Number(values.seconds);
const clients = Number(values.clients);
const uploaders = Math.max(1, Math.round(clients / 10));
const work = mkdtempSync(join(tmpdir(), "memobuild-bench-replicas-"));
const TOKEN = "bench-token-0123456789";
const servers: CacheServer[] = [];

const show = (label: string, r: LoadResult) =>
  console.log(
    `${label.padEnd(34)} errors ${String(r.errors.length).padStart(4)}   ${r.hitsPerSecond.toFixed(0).padStart(6)} hits/s   p99 ${r.p99Ms.toFixed(1).padStart(7)} ms   uploads ${String(r.uploads).padStart(6)}${r.errors.length ? `   first error: ${r.errors[0]}` : ""}`,
  );

try {
  const load = (url: string | string[]) => mixedLoad({ url, token: TOKEN, seconds, downloaders: clients - uploaders, uploaders });
  const single = await startCacheServer(join(work, "single"), ["--token", TOKEN], { MEMOBUILD_LOG: "warn" });
  servers.push(single);
  show("single box (SQLite + directory)", await load(single.url));
  await single.stop();

  await Promise.all([startPostgres(), s3()]);
  const db = await postgres();
  const { url: blobs, env } = (await s3()).blobs();
  for (const name of ["one", "two"]) servers.push(await startCacheServer(join(work, name), ["--token", TOKEN, "--db", db, "--blobs", blobs], { ...env, MEMOBUILD_LOG: "warn" }));
  show("two replicas (PostgreSQL + S3)", await load(servers.slice(1).map((s) => s.url)));
  console.log(`${clients} clients (${uploaders} uploading) for ${seconds} s each`);
} finally {
  for (const server of servers) await server.stop("SIGKILL");
  rmSync(work, { recursive: true, force: true });
}
