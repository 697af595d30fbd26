/**
 * The remote-build queue's own cost per step, SQLite against PostgreSQL: CPU time, not wall time
 * (the machine is shared). Each job goes through what the routes do for a build of --steps
 * steps: submit, claim (with its expiry pass), a heartbeat, then per step one report of two
 * events and one poll of the follower (expiry, follow, secret asks), and finish. PostgreSQL's
 * own CPU (every process of the throwaway cluster) is counted with the caller's.
 *
 *   bun run bench/queue.ts [--jobs 100] [--steps 10]
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { blake3Hex } from "../src/hash/blake3.ts";
import { PgJobQueue } from "../src/server/jobs-pg.ts";
import { SqliteJobQueue, type JobQueue } from "../src/server/jobs.ts";
import { migrate, openPostgres } from "../src/server/pg.ts";
import { PgSecretRelay } from "../src/server/secret-relay-pg.ts";
import { MemorySecretRelay, type SecretRelay } from "../src/server/secret-relay.ts";
import { BloomFilter } from "../src/util/bloom.ts";
import { postgres } from "../test/support/engines.ts";

const { values } = parseArgs({ options: { jobs: { type: "string", default: "100" }, steps: { type: "string", default: "10" } } });
const JOBS = Number(values.jobs);
const STEPS = Number(values.steps);
/** Clock ticks per second in /proc/PID/stat (USER_HZ: 100 on Linux; `getconf CLK_TCK`). */
const TICKS = 100;

/** CPU milliseconds used so far by these processes (user + system), from /proc. */
function cpuOf(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {} // gone meanwhile
  }
  return (ticks * 1000) / TICKS;
}

/** The postmaster of the cluster this pool talks to, and all its children. */
async function clusterPids(sql: ReturnType<typeof openPostgres>): Promise<number[]> {
  const [row] = await sql`SELECT pg_backend_pid() AS pid`;
  const postmaster = Number(readFileSync(`/proc/${row.pid}/stat`, "utf8").split(") ")[1].split(" ")[1]);
  const children = readdirSync("/proc").filter((p) => /^\d+$/.test(p)).filter((p) => {
    try {
      return Number(readFileSync(`/proc/${p}/stat`, "utf8").split(") ")[1].split(" ")[1]) === postmaster;
    } catch {
      return false;
    }
  });
  return [postmaster, ...children.map(Number)];
}

async function lifecycle(queue: JobQueue, relay: SecretRelay, n: number) {
  const keys = Array.from({ length: STEPS }, (_, i) => blake3Hex(`job ${n} step ${i}`));
  const id = await queue.submit("bench", { n }, keys);
  const claimed = (await queue.claim({ name: "bench-worker", labels: {}, holds: BloomFilter.of(keys.slice(0, 3)) }))!;
  if (claimed.id !== id) throw new Error("claimed another job");
  await queue.heartbeat(id, claimed.lease);
  let seen = 0;
  for (let step = 0; step < STEPS; step++) {
    await queue.appendEvents(id, claimed.lease, [{ type: "step.updated", step, state: "running" }, { type: "step.updated", step, state: "done" }]);
    await queue.expire();
    seen = (await queue.follow(id, seen))!.events.at(-1)?.seq ?? seen;
    await relay.asks(id);
  }
  await queue.finish(id, claimed.lease, { result: { image: "sha256:0" } });
}

async function measure(name: string, queue: JobQueue, relay: SecretRelay, serverPids: () => Promise<number[]>) {
  for (let i = 0; i < 5; i++) await lifecycle(queue, relay, -1 - i); // warm up
  const pids = await serverPids();
  const [own, server, wall] = [process.cpuUsage(), cpuOf(pids), performance.now()];
  for (let i = 0; i < JOBS; i++) await lifecycle(queue, relay, i);
  const used = process.cpuUsage(own);
  const ownMs = (used.user + used.system) / 1000;
  const serverMs = cpuOf(pids) - server;
  const steps = JOBS * STEPS;
  console.log(`${name}: ${((ownMs + serverMs) / steps).toFixed(3)} ms CPU per step (this process ${(ownMs / steps).toFixed(3)}, database server ${(serverMs / steps).toFixed(3)}), wall ${((performance.now() - wall) / steps).toFixed(3)} ms per step; ${JOBS} jobs of ${STEPS} steps`);
}

const dir = mkdtempSync(join(tmpdir(), "memobuild-bench-queue-"));
try {
  const sqlite = new SqliteJobQueue(dir);
  await measure("SQLite", sqlite, new MemorySecretRelay((job) => sqlite.notify(job)), async () => []);
  await sqlite.close();
  const sql = openPostgres(await postgres(), 4);
  await migrate(sql);
  const pg = new PgJobQueue(sql, {}, true);
  await pg.ready();
  await measure("PostgreSQL", pg, new PgSecretRelay(sql, pg), () => clusterPids(sql));
  await pg.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
