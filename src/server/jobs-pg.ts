/**
 * The remote-build queue in PostgreSQL (`serve --db`), shared by every replica; jobs.ts has the
 * contract and the SQLite store this one must match. What differs is only how replicas agree:
 *
 *   - A claim ranks the queued jobs as the SQLite store does (rankJobs), then takes the best one
 *     it can lock with `FOR UPDATE SKIP LOCKED`: two replicas claiming at once never wait for
 *     each other and never take the same job (the loser takes its next best).
 *   - Which workers are idle, and what they hold, is in `job_workers` (a worker may ask any
 *     replica), so a job still waits for the idle worker that holds most of it.
 *   - Every change NOTIFYs `memobuild_jobs` with what changed (`queue`, a job's id, or both);
 *     each replica LISTENs and wakes the long polls waiting for that (a follower on replica A
 *     hears at once what a worker reported to replica B; idle workers wake for new work, not for
 *     every job's progress). A notification only wakes: the routes look again every second
 *     anyway, so a missed one costs a second.
 *   - Event numbers come from a counter on the job's row, updated under the row's lock, so a
 *     worker's report and another replica's expiry never take the same number.
 */
import type { SQL } from "bun";
import { randomUUID } from "node:crypto";
import { BloomFilter } from "../util/bloom.ts";
import {
  GAVE_UP,
  IDLE_MS,
  KEEP_FINISHED_MS,
  MAX_EVENTS,
  followed,
  jobSummary,
  lostWorkerEvent,
  QUEUE,
  rankJobs,
  stepCountsOf,
  SUMMARY_COLUMNS,
  Wakeups,
  type Claimed,
  type ClaimingWorker,
  type Followed,
  type JobQueue,
  type JobState,
  type Outcome,
  type QueueOptions,
  type WorkerSummary,
  workerState,
} from "./jobs.ts";

/** The summary's columns, and the hub build and the stage its definition names (picked out here, not the whole definition sent). */
const PG_SUMMARY = `${SUMMARY_COLUMNS}, definition::json->>'build' AS build, definition::json->>'target' AS stage`;
import { num } from "./pg.ts";

export const JOBS_CHANNEL = "memobuild_jobs";
/** Finished jobs older than KEEP_FINISHED_MS are deleted at most this often per replica. */
const SWEEP_MS = 60_000;

/** How often a replica measures its clock against the database's. */
const CLOCK_SYNC_MS = 60_000;

export interface PgQueueOptions extends QueueOptions {
  /** This host's clock (tests give replicas clocks that disagree). */
  clock?: () => number;
}

export class PgJobQueue implements JobQueue {
  private readonly leaseMs: number;
  private readonly maxAttempts: number;
  private readonly clock: () => number;
  /** The database's clock minus this host's: leases set by one replica are judged by another. */
  private offset = 0;
  private readonly synced: Promise<void>;
  private readonly syncTimer: ReturnType<typeof setInterval>;
  private readonly wakeups = new Wakeups();
  private readonly listening: Promise<unknown>;
  /** When this replica last deleted the jobs kept long enough. */
  private swept = Number.NEGATIVE_INFINITY;

  constructor(
    readonly sql: SQL,
    options: PgQueueOptions = {},
    /** Set when this queue was given a pool of its own: closing the queue closes it. */
    private readonly ownsPool = false,
  ) {
    this.leaseMs = options.leaseMs ?? 30_000;
    this.maxAttempts = options.maxAttempts ?? 3;
    this.clock = options.clock ?? Date.now;
    // Replicas on different hosts whose clocks disagree by more than a lease would take leases
    // from live workers (or keep dead ones): every time here is the database's clock.
    this.synced = this.syncClock();
    this.syncTimer = setInterval(() => void this.syncClock(), CLOCK_SYNC_MS);
    this.syncTimer.unref();
    this.listening = sql.listen(JOBS_CHANNEL, (payload: unknown) => this.heard(String(payload ?? "")));
    // Without LISTEN the long polls still look again every second (see the routes): a replica
    // that could not listen is slower to hear, never wrong, so the failure is not fatal here.
    this.listening.catch(() => {});
  }

  /** Resolves once this replica hears other replicas' changes and knows the database's clock. */
  async ready() {
    await Promise.all([this.listening, this.synced]);
  }

  /** Now, by the database's clock (as last measured), in milliseconds since the epoch. */
  time(): number {
    return Math.round(this.clock() + this.offset);
  }

  private async syncClock() {
    try {
      const before = this.clock();
      const [row] = await this.sql`SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now`;
      this.offset = num(row.now) - (before + this.clock()) / 2;
    } catch {} // kept as it was; the next measurement may reach the database
  }

  async submit(submitter: string, definition: unknown, hints: string[], now = this.time()) {
    const id = randomUUID();
    await this.sql`INSERT INTO jobs (id, submitter, state, definition, hints, created)
      VALUES (${id}, ${submitter}, 'queued', ${JSON.stringify(definition)}, ${JSON.stringify(hints)}, ${now})`;
    await this.announce(QUEUE);
    return id;
  }

  async claim(worker: ClaimingWorker, now = this.time()): Promise<Claimed | undefined> {
    await this.expire(now);
    return await this.sql.begin(async (tx) => {
      // This worker is idle (and holds this) until it takes a job: claims on any replica see it.
      await tx`INSERT INTO job_workers VALUES (${worker.name}, ${JSON.stringify(worker.labels)}, ${now}, ${worker.holds.encode()}, ${now})
        ON CONFLICT (name) DO UPDATE SET labels = excluded.labels, last_seen = excluded.last_seen, holds = excluded.holds, idle_since = excluded.idle_since`;
      const ranked = await this.ranked(tx, worker, now);
      if (ranked.length === 0) return undefined;
      // The best job no other claim holds right now; a job another claim took meanwhile is no longer 'queued'.
      const [job] = await tx`SELECT j.id, j.definition FROM jobs j JOIN unnest(${ranked.map((r) => r.id)}::text[]) WITH ORDINALITY AS r(id, rank) ON j.id = r.id
        WHERE j.state = 'queued' ORDER BY r.rank LIMIT 1 FOR UPDATE OF j SKIP LOCKED`;
      if (!job) return undefined;
      const lease = randomUUID();
      const affinity = ranked.find((r) => r.id === job.id)!.affinity;
      await tx`UPDATE jobs SET state = 'running', worker = ${worker.name}, lease = ${lease}, lease_expires = ${now + this.leaseMs},
        started = coalesce(started, ${now}), attempts = attempts + 1, affinity = ${affinity} WHERE id = ${job.id}`;
      await tx`UPDATE job_workers SET idle_since = NULL WHERE name = ${worker.name}`;
      return { id: job.id as string, lease, leaseMs: this.leaseMs, definition: JSON.parse(job.definition) };
    });
  }

  /** The queued jobs this worker may take, best first (rankJobs, from what every replica sees). */
  private async ranked(tx: SQL, worker: ClaimingWorker, now: number) {
    const queued = await tx`SELECT id, submitter, hints, created FROM jobs WHERE state = 'queued' ORDER BY created, seq LIMIT 200`;
    if (queued.length === 0) return [];
    const counts = await tx`SELECT submitter, count(*) AS n FROM jobs WHERE state = 'running' GROUP BY submitter`;
    const running = new Map<string, number>(counts.map((r: { submitter: string; n: string }) => [r.submitter, num(r.n)]));
    const idle = await tx`SELECT holds FROM job_workers WHERE name <> ${worker.name} AND idle_since > ${now - IDLE_MS} AND holds IS NOT NULL`;
    const jobs = queued.map((r: { id: string; submitter: string; hints: string; created: string }) => ({ ...r, created: num(r.created) }));
    return rankJobs(jobs, running, worker.holds, idle.map((r: { holds: string }) => BloomFilter.decode(r.holds)), now);
  }

  async heartbeat(id: string, lease: string, now = this.time()): Promise<"ok" | "lost" | "cancelled"> {
    // One statement: an expiry that took the lease first leaves no row here to extend.
    const [row] = await this.sql`UPDATE jobs SET lease_expires = CASE WHEN cancel THEN lease_expires ELSE ${now + this.leaseMs} END
      WHERE id = ${id} AND lease = ${lease} AND state = 'running' RETURNING cancel`;
    if (!row) return "lost";
    // A busy worker is heard from through its job's heartbeats (it does not claim meanwhile).
    await this.sql`UPDATE job_workers SET last_seen = ${now} WHERE name = (SELECT worker FROM jobs WHERE id = ${id})`;
    return row.cancel ? "cancelled" : "ok";
  }

  async appendEvents(id: string, lease: string, events: unknown[]) {
    // One statement (a worker reports every few steps): the row's lock orders it after an
    // expiry or another report, and its counter numbers the events.
    const bodies = events.map((event) => JSON.stringify(event));
    const [row] = await this.sql`WITH job AS (SELECT events FROM jobs WHERE id = ${id} AND lease = ${lease} AND state = 'running' FOR UPDATE),
      added AS (INSERT INTO job_events SELECT ${id}, job.events + t.ord, t.body FROM job, unnest(${bodies}::text[]) WITH ORDINALITY AS t(body, ord)
        WHERE job.events + t.ord <= ${MAX_EVENTS}),
      counted AS (UPDATE jobs SET events = LEAST(job.events + ${bodies.length}, ${MAX_EVENTS}) FROM job WHERE jobs.id = ${id})
      SELECT pg_notify(${JOBS_CHANNEL}, ${id}) FROM job`;
    if (row) this.wakeups.wake(id);
    return row !== undefined;
  }

  async finish(id: string, lease: string, outcome: Outcome, now = this.time()) {
    const state: JobState = "result" in outcome ? "succeeded" : "failed";
    const result = "result" in outcome ? JSON.stringify(outcome.result) : null;
    const error = "error" in outcome ? outcome.error.slice(0, 64 * 1024) : null;
    return await this.changedRow(this.sql`UPDATE jobs SET state = CASE WHEN cancel THEN 'cancelled' ELSE ${state} END, finished = ${now}, lease = NULL,
      result = ${result}, error = ${error} WHERE id = ${id} AND lease = ${lease} AND state = 'running' RETURNING id`, id);
  }

  async release(id: string, lease: string, now = this.time()) {
    return await this.changedRow(this.sql`UPDATE jobs SET state = CASE WHEN cancel THEN 'cancelled' ELSE 'queued' END,
      finished = CASE WHEN cancel THEN ${now}::bigint ELSE finished END, lease = NULL, worker = NULL,
      attempts = attempts - 1 WHERE id = ${id} AND lease = ${lease} AND state = 'running' RETURNING id`, QUEUE, id);
  }

  async cancel(id: string, submitter: string, now = this.time()) {
    return await this.changedRow(this.sql`UPDATE jobs SET cancel = true, state = CASE state WHEN 'queued' THEN 'cancelled' ELSE state END,
      finished = CASE state WHEN 'queued' THEN ${now}::bigint ELSE finished END
      WHERE id = ${id} AND submitter = ${submitter} AND state IN ('queued', 'running') RETURNING id`, id);
  }

  async follow(id: string, since: number): Promise<Followed | undefined> {
    const [row] = await this.sql`SELECT state, submitter, worker, result, error FROM jobs WHERE id = ${id}`;
    if (!row) return undefined;
    const events = await this.sql`SELECT seq, body FROM job_events WHERE job = ${id} AND seq > ${since} ORDER BY seq LIMIT 1000`;
    return followed(row, events.map((e: { seq: number; body: string }) => ({ seq: num(e.seq), event: JSON.parse(e.body) })));
  }

  async holds(id: string, lease: string) {
    return (await this.sql`SELECT 1 FROM jobs WHERE id = ${id} AND lease = ${lease} AND state = 'running'`).length > 0;
  }

  /**
   * Each lost lease is handled by the replica that locks its row first (the others skip it), so
   * its follower is told once and the job is queued once.
   */
  async expire(now = this.time()) {
    // Every follower's poll and every claim come here: a lease that ran out is rare, so the
    // usual answer is one indexed read, not a transaction.
    const [due] = await this.sql`SELECT 1 AS due FROM jobs WHERE state = 'running' AND lease_expires < ${now} LIMIT 1`;
    if (due) await this.requeueLost(now);
    if (now - this.swept >= SWEEP_MS || now < this.swept) {
      this.swept = now;
      await this.sql`WITH gone AS (DELETE FROM jobs WHERE finished < ${now - KEEP_FINISHED_MS} RETURNING id)
        DELETE FROM job_events WHERE job IN (SELECT id FROM gone)`;
    }
  }

  private async requeueLost(now: number) {
    const lost = await this.sql.begin(async (tx) => {
      const rows = await tx`SELECT id, worker, attempts, events FROM jobs WHERE state = 'running' AND lease_expires < ${now} FOR UPDATE SKIP LOCKED`;
      for (const job of rows) {
        if (job.attempts >= this.maxAttempts) {
          await tx`UPDATE jobs SET state = 'failed', finished = ${now}, lease = NULL, error = ${GAVE_UP} WHERE id = ${job.id}`;
          await tx`SELECT pg_notify(${JOBS_CHANNEL}, ${job.id})`;
          continue;
        }
        // The follower hears why its build starts again (steps already done hit the shared cache).
        const seq = num(job.events) + 1;
        await tx`INSERT INTO job_events VALUES (${job.id}, ${seq}, ${JSON.stringify(lostWorkerEvent(job.worker))})`;
        await tx`UPDATE jobs SET state = CASE WHEN cancel THEN 'cancelled' ELSE 'queued' END, finished = CASE WHEN cancel THEN ${now}::bigint ELSE finished END,
          lease = NULL, worker = NULL, events = ${seq} WHERE id = ${job.id}`;
        await tx`SELECT pg_notify(${JOBS_CHANNEL}, ${`${QUEUE} ${job.id}`})`;
      }
      return rows.map((job: { id: string }) => job.id);
    });
    this.wakeups.wake(QUEUE, ...lost);
  }

  async jobs(limit = 100) {
    const rows = await this.sql`SELECT ${this.sql.unsafe(PG_SUMMARY)} FROM jobs ORDER BY created DESC, seq DESC LIMIT ${limit}`;
    return rows.map((r: Record<string, unknown>) => jobSummary(r));
  }

  async workers(now = this.time()): Promise<WorkerSummary[]> {
    const running = await this.sql`SELECT worker, id FROM jobs WHERE state = 'running'`;
    const rows = await this.sql`SELECT name, labels, last_seen FROM job_workers ORDER BY name`;
    return rows.map((w: { name: string; labels: string; last_seen: string }) => {
      const ids = running.filter((r: { worker: string }) => r.worker === w.name).map((r: { id: string }) => r.id);
      return { name: w.name, labels: JSON.parse(w.labels), lastSeen: num(w.last_seen), running: ids, state: workerState(num(w.last_seen), ids, now, this.leaseMs) };
    });
  }

  async stepCounts() {
    // Results are kept as text (as in SQLite); one that holds no array of steps counts none.
    const rows = await this.sql`SELECT j.worker, step->>'status' AS status, count(*) AS n
      FROM jobs j, jsonb_array_elements(CASE WHEN jsonb_typeof(j.result::jsonb->'steps') = 'array' THEN j.result::jsonb->'steps' ELSE '[]'::jsonb END) AS step
      WHERE j.state = 'succeeded' AND j.worker IS NOT NULL AND step->>'config_only' IS NULL GROUP BY 1, 2`;
    return stepCountsOf(rows);
  }

  async depth() {
    const [row] = await this.sql`SELECT count(*) AS n FROM jobs WHERE state = 'queued'`;
    return num(row.n);
  }

  changed(ms: number, job?: string): Promise<void> {
    return this.wakeups.wait(job ?? QUEUE, ms);
  }

  notify(job?: string) {
    this.wakeups.wake(job ?? QUEUE);
  }

  async close() {
    clearInterval(this.syncTimer);
    const listener = (await this.listening.catch(() => undefined)) as { unlisten?: () => Promise<void> } | undefined;
    await listener?.unlisten?.();
    this.wakeups.wakeAll();
    if (this.ownsPool) await this.sql.close();
  }

  /** Runs an UPDATE … RETURNING; when it changed a row, every replica's long polls for `topics` wake. */
  private async changedRow(update: Promise<unknown[]>, ...topics: string[]): Promise<boolean> {
    const rows = await update;
    if (rows.length) await this.announce(...topics);
    return rows.length > 0;
  }

  /** Wakes this replica's long polls for `topics` now, and the other replicas' through NOTIFY. */
  async announce(...topics: string[]) {
    this.wakeups.wake(...topics);
    await this.sql`SELECT pg_notify(${JOBS_CHANNEL}, ${topics.join(" ")})`;
  }

  /** A notification from any replica (this one's too): its topics, or every poll when it names none. */
  private heard(payload: string) {
    const topics = payload.split(" ").filter(Boolean);
    if (topics.length) this.wakeups.wake(...topics);
    else this.wakeups.wakeAll();
  }
}
