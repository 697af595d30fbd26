/**
 * The build queue for remote execution: clients submit builds, workers claim them under a lease
 * they keep alive with heartbeats, report progress, and finish them. A lease that runs out (a
 * worker killed or cut off) puts the job back in the queue for another worker; an answer under
 * a lease that is no longer current changes nothing, so a result is never written twice.
 *
 * Which queued job a worker gets: the one whose steps it holds most of (its Bloom filter of
 * keys against the job's key hints), and among equals the job of the submitter with the fewest
 * running jobs, oldest first, so one flood of jobs does not starve the rest (rankJobs, shared by
 * both stores).
 *
 * Two stores behind one interface (JobQueue): this file's SQLite one for a single server, and
 * jobs-pg.ts for replicas on one PostgreSQL database (`serve --db`). Both pass jobs.test.ts.
 */
import type { Database } from "bun:sqlite";
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { BloomFilter } from "../util/bloom.ts";
import { openDatabase } from "../util/sqlite.ts";

export type JobState = "queued" | "running" | "succeeded" | "failed" | "cancelled";

export interface JobSummary {
  id: string;
  submitter: string;
  state: JobState;
  created: number;
  started?: number;
  finished?: number;
  worker?: string;
  attempts: number;
  /** How many of the job's key hints the worker that took it held (cache affinity). */
  affinity?: number;
  hints: number;
  error?: string;
  /** The hub's id of the build this job is (or is part of): the dashboard links it. */
  build?: string;
  /** The stage it builds (its definition's target): one of a build's stages spread over workers. */
  stage?: string;
}

export interface WorkerSummary {
  name: string;
  labels: Record<string, string>;
  lastSeen: number;
  running: string[];
  /** gone: not heard from (a claim, or a heartbeat of its job) within the lease time. */
  state: "idle" | "busy" | "gone";
}

/**
 * A worker is live while it was heard from within the lease time: an idle one asks for work
 * every second of its long poll, a busy one heartbeats its job several times per lease. Past
 * that, its lease would be taken from it too, so the Workers page and memobuild_workers drop it.
 */
export function workerState(lastSeen: number, running: string[], now: number, leaseMs: number): WorkerSummary["state"] {
  if (now - lastSeen >= leaseMs) return "gone";
  return running.length ? "busy" : "idle";
}

/** How the steps of the builds a worker finished were satisfied (steps that do work only). */
export interface StepCounts {
  executed: number;
  cachedLocal: number;
  cachedRemote: number;
}

export interface Claimed {
  id: string;
  lease: string;
  /** Heartbeat well within this. */
  leaseMs: number;
  definition: unknown;
}

export interface QueueOptions {
  /** How long a lease lasts without a heartbeat (default 30 s). */
  leaseMs?: number;
  /** Claims of one job before it fails (a job that kills every worker must not kill them all). */
  maxAttempts?: number;
}

/** A worker asking for work: its name, labels, and what its cache holds. */
export interface ClaimingWorker {
  name: string;
  labels: Record<string, string>;
  holds: BloomFilter;
}

/** A job as its submitter follows it. */
export interface Followed {
  state: JobState;
  submitter: string;
  worker?: string;
  events: { seq: number; event: unknown }[];
  result?: unknown;
  error?: string;
}

export type Outcome = { result: unknown } | { error: string };

/**
 * The queue's store. Times (`now`) are milliseconds since the epoch, given by tests; every
 * method is asynchronous because the PostgreSQL store asks its database.
 */
export interface JobQueue {
  submit(submitter: string, definition: unknown, hints: string[], now?: number): Promise<string>;
  /**
   * The best queued job for this worker, leased to it; undefined when there is none for it. A
   * job another idle worker holds more of waits for that worker (for AFFINITY_WAIT_MS at most).
   */
  claim(worker: ClaimingWorker, now?: number): Promise<Claimed | undefined>;
  /** Keeps a lease alive; says whether it is still the job's and whether the submitter cancelled. */
  heartbeat(id: string, lease: string, now?: number): Promise<"ok" | "lost" | "cancelled">;
  /** Progress events of a running job, under its current lease; false when the lease is not. */
  appendEvents(id: string, lease: string, events: unknown[]): Promise<boolean>;
  /** The end of a job, under its current lease; false (and nothing changed) when the lease is not. */
  finish(id: string, lease: string, outcome: Outcome, now?: number): Promise<boolean>;
  /** A worker that stops (SIGTERM) hands its job back at once, for another worker. */
  release(id: string, lease: string, now?: number): Promise<boolean>;
  /** The submitter gives up: a queued job ends at once, a running one when its worker hears of it. */
  cancel(id: string, submitter: string, now?: number): Promise<boolean>;
  /** A job as its submitter follows it: its state, the events after `since`, and its outcome. */
  follow(id: string, since: number): Promise<Followed | undefined>;
  /** Whether this lease is the job's current one. */
  holds(id: string, lease: string): Promise<boolean>;
  /** Leases that ran out go back to the queue (or fail, after too many attempts); old jobs go. */
  expire(now?: number): Promise<void>;
  /** Recent jobs, newest first. */
  jobs(limit?: number): Promise<JobSummary[]>;
  /** Every worker ever seen (until it is forgotten), with its state by the store's clock. */
  workers(now?: number): Promise<WorkerSummary[]>;
  /**
   * Per worker, its finished builds' steps by how each was satisfied (read from the results kept,
   * so: the builds of the last KEEP_FINISHED_MS). Config-only and skipped steps do no work and
   * are not counted, as in a build's own summary.
   */
  stepCounts(): Promise<Map<string, StepCounts>>;
  /** Jobs waiting for a worker. */
  depth(): Promise<number>;
  /**
   * Long polls: resolves when the queue changes (a job to claim may be there), or with `job`
   * when that job does (events, its end, an ask for its secrets); at the latest after `ms`.
   * Waiting for one job, a follower is not woken by every other job's progress, nor an idle
   * worker by it.
   */
  changed(ms: number, job?: string): Promise<void>;
  /** Wakes this process's long polls for that job (the queue's, without one). */
  notify(job?: string): void;
  close(): Promise<void>;
}

/** A worker counts as idle this long after it last asked for work. */
export const IDLE_MS = 30_000;
/** How long a job waits for the idle worker that holds most of it before any worker may take it. */
export const AFFINITY_WAIT_MS = 2_000;
/** At most this many events are kept per job (a build's progress; the rest is dropped, said once). */
export const MAX_EVENTS = 20_000;
/** Finished jobs and their events are kept this long for followers that reconnect late. */
export const KEEP_FINISHED_MS = 24 * 3600_000;
/** What a follower reads when the worker that held its job stopped answering. */
export const lostWorkerEvent = (worker: string) => ({ type: "warning", message: `worker ${worker} stopped answering; the build goes to another worker` });
/** Both stores count steps per (worker, status) in SQL; this adds them up per worker. */
export function stepCountsOf(rows: { worker: string; status: string; n: number | string }[]): Map<string, StepCounts> {
  const counts = new Map<string, StepCounts>();
  for (const { worker, status, n } of rows) {
    const count = counts.get(worker) ?? { executed: 0, cachedLocal: 0, cachedRemote: 0 };
    if (status === "executed") count.executed += Number(n);
    else if (status === "cached-local") count.cachedLocal += Number(n);
    else if (status === "cached-remote") count.cachedRemote += Number(n);
    counts.set(worker, count);
  }
  return counts;
}

export const GAVE_UP = "every worker that took this job stopped answering";

/**
 * The queued jobs (oldest first, as read) this worker may take, best first, with how many of
 * each job's hints it holds. A job that another idle worker holds more of is left for that
 * worker until it has waited AFFINITY_WAIT_MS.
 */
export function rankJobs<J extends { id: string; submitter: string; hints: string; created: number }>(
  queued: J[],
  running: Map<string, number>,
  holds: BloomFilter,
  others: BloomFilter[],
  now: number,
): (J & { affinity: number })[] {
  const held = (filter: BloomFilter, hints: string[]) => hints.filter((key) => filter.has(key)).length;
  const scored = queued
    .map((job, order) => {
      const hints = JSON.parse(job.hints) as string[];
      return { ...job, order, affinity: held(holds, hints), best: Math.max(0, ...others.map((filter) => held(filter, hints))) };
    })
    .filter((job) => job.affinity >= job.best || job.created < now - AFFINITY_WAIT_MS);
  scored.sort((a, b) => b.affinity - a.affinity || (running.get(a.submitter) ?? 0) - (running.get(b.submitter) ?? 0) || a.order - b.order);
  return scored.map(({ order: _o, best: _b, ...job }) => job as unknown as J & { affinity: number });
}

/** The columns jobSummary reads (not a job's definition or result, which may be megabytes). */
export const SUMMARY_COLUMNS = "id, submitter, state, created, started, finished, worker, attempts, affinity, hints, error";
/** And the hub build and the stage its definition names, picked out by the database (SQLite's JSON functions). */
const SQLITE_SUMMARY = `${SUMMARY_COLUMNS}, json_extract(definition, '$.build') AS build, json_extract(definition, '$.target') AS stage`;

/** A jobs row (BIGINT columns as numbers) as GET /v1/jobs shows it. */
export function jobSummary(r: Record<string, unknown>): JobSummary {
  const n = (value: unknown) => (value === null || value === undefined ? undefined : Number(value));
  return {
    id: r.id as string,
    submitter: r.submitter as string,
    state: r.state as JobState,
    created: n(r.created)!,
    ...(r.started ? { started: n(r.started) } : {}),
    ...(r.finished ? { finished: n(r.finished) } : {}),
    ...(r.worker ? { worker: r.worker as string } : {}),
    attempts: n(r.attempts)!,
    ...(r.affinity !== null && r.affinity !== undefined ? { affinity: n(r.affinity) } : {}),
    hints: (JSON.parse(r.hints as string) as unknown[]).length,
    ...(r.error ? { error: r.error as string } : {}),
    // The server does not parse definitions (the worker does): only a well-formed build id is shown as one.
    ...(typeof r.build === "string" && /^[A-Za-z0-9_-]{8,64}$/.test(r.build) ? { build: r.build } : {}),
    ...(typeof r.stage === "string" ? { stage: r.stage } : {}),
  };
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY, submitter TEXT NOT NULL, state TEXT NOT NULL, definition TEXT NOT NULL, hints TEXT NOT NULL,
  created INTEGER NOT NULL, started INTEGER, finished INTEGER, worker TEXT, lease TEXT, lease_expires INTEGER,
  attempts INTEGER NOT NULL DEFAULT 0, affinity INTEGER, result TEXT, error TEXT, cancel INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, created);
CREATE TABLE IF NOT EXISTS job_events (job TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY (job, seq));
CREATE TABLE IF NOT EXISTS workers (name TEXT PRIMARY KEY, labels TEXT NOT NULL, last_seen INTEGER NOT NULL);
`;

/** The queue of a single server, in SQLite (jobs.db in its data directory). */
export class SqliteJobQueue implements JobQueue {
  private readonly db: Database;
  private readonly leaseMs: number;
  private readonly maxAttempts: number;
  private readonly wakeups = new Wakeups();
  /** Workers waiting for work now (name → what they hold, when they last asked). */
  private readonly idle = new Map<string, { holds: BloomFilter; since: number }>();

  constructor(dataDir: string, options: QueueOptions = {}) {
    this.db = openDatabase(join(dataDir, "jobs.db"), SCHEMA);
    this.leaseMs = options.leaseMs ?? 30_000;
    this.maxAttempts = options.maxAttempts ?? 3;
  }

  async submit(submitter: string, definition: unknown, hints: string[], now = Date.now()) {
    const id = randomUUID();
    this.db.query("INSERT INTO jobs (id, submitter, state, definition, hints, created) VALUES (?, ?, 'queued', ?, ?, ?)").run(id, submitter, JSON.stringify(definition), JSON.stringify(hints), now);
    this.wakeups.wake(QUEUE);
    return id;
  }

  async claim(worker: ClaimingWorker, now = Date.now()): Promise<Claimed | undefined> {
    await this.expire(now);
    this.db.query("INSERT OR REPLACE INTO workers VALUES (?, ?, ?)").run(worker.name, JSON.stringify(worker.labels), now);
    this.idle.set(worker.name, { holds: worker.holds, since: now });
    const claimed = this.db.transaction(() => {
      const queued = this.db.query("SELECT id, submitter, hints, created FROM jobs WHERE state = 'queued' ORDER BY created LIMIT 200").all() as { id: string; submitter: string; hints: string; created: number }[];
      const running = new Map((this.db.query("SELECT submitter, count(*) AS n FROM jobs WHERE state = 'running' GROUP BY submitter").all() as { submitter: string; n: number }[]).map((r) => [r.submitter, r.n]));
      const others = [...this.idle].filter(([name, w]) => name !== worker.name && w.since > now - IDLE_MS).map(([, w]) => w.holds);
      const best = rankJobs(queued, running, worker.holds, others, now)[0];
      if (!best) return undefined;
      const lease = randomUUID();
      this.db
        .query("UPDATE jobs SET state = 'running', worker = ?, lease = ?, lease_expires = ?, started = coalesce(started, ?), attempts = attempts + 1, affinity = ? WHERE id = ? AND state = 'queued'")
        .run(worker.name, lease, now + this.leaseMs, now, best.affinity, best.id);
      const { definition } = this.db.query("SELECT definition FROM jobs WHERE id = ?").get(best.id) as { definition: string };
      return { id: best.id, lease, leaseMs: this.leaseMs, definition: JSON.parse(definition) };
    })();
    if (claimed) this.idle.delete(worker.name);
    return claimed;
  }

  async heartbeat(id: string, lease: string, now = Date.now()): Promise<"ok" | "lost" | "cancelled"> {
    const row = this.db.query("SELECT lease, state, cancel FROM jobs WHERE id = ?").get(id) as { lease: string | null; state: JobState; cancel: number } | null;
    if (!row || row.lease !== lease || row.state !== "running") return "lost";
    if (row.cancel) return "cancelled";
    this.db.query("UPDATE jobs SET lease_expires = ? WHERE id = ? AND lease = ?").run(now + this.leaseMs, id, lease);
    // A busy worker is heard from through its job's heartbeats (it does not claim meanwhile).
    this.db.query("UPDATE workers SET last_seen = ? WHERE name = (SELECT worker FROM jobs WHERE id = ?)").run(now, id);
    return "ok";
  }

  async appendEvents(id: string, lease: string, events: unknown[]) {
    const ok = this.db.transaction(() => {
      if (!this.holdsNow(id, lease)) return false;
      const { n } = this.db.query("SELECT count(*) AS n FROM job_events WHERE job = ?").get(id) as { n: number };
      const insert = this.db.query("INSERT INTO job_events VALUES (?, ?, ?)");
      events.slice(0, Math.max(0, MAX_EVENTS - n)).forEach((event, i) => insert.run(id, n + i + 1, JSON.stringify(event)));
      return true;
    })();
    if (ok) this.wakeups.wake(id);
    return ok;
  }

  async finish(id: string, lease: string, outcome: Outcome, now = Date.now()) {
    const state: JobState = "result" in outcome ? "succeeded" : "failed";
    const changed = this.db
      .query("UPDATE jobs SET state = CASE cancel WHEN 1 THEN 'cancelled' ELSE ? END, finished = ?, lease = NULL, result = ?, error = ? WHERE id = ? AND lease = ? AND state = 'running'")
      .run(state, now, "result" in outcome ? JSON.stringify(outcome.result) : null, "error" in outcome ? outcome.error.slice(0, 64 * 1024) : null, id, lease).changes;
    this.wakeups.wake(id);
    return changed === 1;
  }

  async release(id: string, lease: string, now = Date.now()) {
    // A cancelled job handed back ends here (finished: it is forgotten in time like any other).
    const changed = this.db
      .query("UPDATE jobs SET state = CASE cancel WHEN 1 THEN 'cancelled' ELSE 'queued' END, finished = CASE cancel WHEN 1 THEN ? ELSE finished END, lease = NULL, worker = NULL, attempts = attempts - 1 WHERE id = ? AND lease = ? AND state = 'running'")
      .run(now, id, lease).changes;
    this.wakeups.wake(QUEUE, id);
    return changed === 1;
  }

  async cancel(id: string, submitter: string, now = Date.now()) {
    const changed = this.db
      .query("UPDATE jobs SET cancel = 1, state = CASE state WHEN 'queued' THEN 'cancelled' ELSE state END, finished = CASE state WHEN 'queued' THEN ? ELSE finished END WHERE id = ? AND submitter = ? AND state IN ('queued', 'running')")
      .run(now, id, submitter).changes;
    this.wakeups.wake(id);
    return changed === 1;
  }

  async follow(id: string, since: number): Promise<Followed | undefined> {
    const row = this.db.query("SELECT state, submitter, worker, result, error FROM jobs WHERE id = ?").get(id) as { state: JobState; submitter: string; worker: string | null; result: string | null; error: string | null } | null;
    if (!row) return undefined;
    const events = (this.db.query("SELECT seq, body FROM job_events WHERE job = ? AND seq > ? ORDER BY seq LIMIT 1000").all(id, since) as { seq: number; body: string }[]).map((e) => ({ seq: e.seq, event: JSON.parse(e.body) }));
    return followed(row, events);
  }

  changed(ms: number, job?: string): Promise<void> {
    return this.wakeups.wait(job ?? QUEUE, ms);
  }

  async jobs(limit = 100) {
    return (this.db.query(`SELECT ${SQLITE_SUMMARY} FROM jobs ORDER BY created DESC LIMIT ?`).all(limit) as Record<string, unknown>[]).map(jobSummary);
  }

  async workers(now = Date.now()): Promise<WorkerSummary[]> {
    const running = this.db.query("SELECT worker, id FROM jobs WHERE state = 'running'").all() as { worker: string; id: string }[];
    return (this.db.query("SELECT * FROM workers ORDER BY name").all() as { name: string; labels: string; last_seen: number }[]).map((w) => {
      const ids = running.filter((r) => r.worker === w.name).map((r) => r.id);
      return { name: w.name, labels: JSON.parse(w.labels), lastSeen: w.last_seen, running: ids, state: workerState(w.last_seen, ids, now, this.leaseMs) };
    });
  }

  async stepCounts() {
    const rows = this.db
      .query(
        `SELECT jobs.worker AS worker, json_extract(step.value, '$.status') AS status, count(*) AS n FROM jobs, json_each(jobs.result, '$.steps') AS step
         WHERE jobs.state = 'succeeded' AND jobs.worker IS NOT NULL AND json_extract(step.value, '$.config_only') IS NULL GROUP BY 1, 2`,
      )
      .all() as { worker: string; status: string; n: number }[];
    return stepCountsOf(rows);
  }

  async depth() {
    return (this.db.query("SELECT count(*) AS n FROM jobs WHERE state = 'queued'").get() as { n: number }).n;
  }

  async expire(now = Date.now()) {
    this.db.query("UPDATE jobs SET state = 'failed', finished = ?, lease = NULL, error = ? WHERE state = 'running' AND lease_expires < ? AND attempts >= ?").run(now, GAVE_UP, now, this.maxAttempts);
    const lost = this.db.query("SELECT id, worker FROM jobs WHERE state = 'running' AND lease_expires < ?").all(now) as { id: string; worker: string }[];
    for (const job of lost) {
      // The follower hears why its build starts again (steps already done hit the shared cache).
      const { n } = this.db.query("SELECT count(*) AS n FROM job_events WHERE job = ?").get(job.id) as { n: number };
      this.db.query("INSERT INTO job_events VALUES (?, ?, ?)").run(job.id, n + 1, JSON.stringify(lostWorkerEvent(job.worker)));
    }
    this.db
      .query("UPDATE jobs SET state = CASE cancel WHEN 1 THEN 'cancelled' ELSE 'queued' END, finished = CASE cancel WHEN 1 THEN ? ELSE finished END, lease = NULL, worker = NULL WHERE state = 'running' AND lease_expires < ?")
      .run(now, now);
    if (lost.length) this.wakeups.wake(QUEUE, ...lost.map((job) => job.id));
    this.db.query("DELETE FROM job_events WHERE job IN (SELECT id FROM jobs WHERE finished < ?)").run(now - KEEP_FINISHED_MS);
    this.db.query("DELETE FROM jobs WHERE finished < ?").run(now - KEEP_FINISHED_MS);
  }

  async close() {
    this.db.close();
  }

  notify(job?: string) {
    this.wakeups.wake(job ?? QUEUE);
  }

  async holds(id: string, lease: string) {
    return this.holdsNow(id, lease);
  }

  private holdsNow(id: string, lease: string): boolean {
    return !!this.db.query("SELECT 1 FROM jobs WHERE id = ? AND lease = ? AND state = 'running'").get(id, lease);
  }

}

/** A job's row and events as its follower sees them. */
export function followed(row: { state: JobState; submitter: string; worker: string | null; result: string | null; error: string | null }, events: { seq: number; event: unknown }[]): Followed {
  return {
    state: row.state,
    submitter: row.submitter,
    ...(row.worker ? { worker: row.worker } : {}),
    events,
    ...(row.result ? { result: JSON.parse(row.result) } : {}),
    ...(row.error ? { error: row.error } : {}),
  };
}

/** The topic of long polls that wait for a job to claim (the others wait for one job, by its id). */
export const QUEUE = "queue";

/** This process's long polls, each waiting for one topic (QUEUE or a job's id). */
export class Wakeups {
  private readonly waiting = new Map<string, Set<() => void>>();

  /** Resolves when `topic` is woken, or after `ms`. */
  wait(topic: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const waiters = this.waiting.get(topic) ?? new Set();
      this.waiting.set(topic, waiters);
      const done = () => {
        clearTimeout(timer);
        waiters.delete(done);
        if (waiters.size === 0 && this.waiting.get(topic) === waiters) this.waiting.delete(topic);
        resolve();
      };
      const timer = setTimeout(done, ms);
      waiters.add(done);
    });
  }

  wake(...topics: string[]) {
    for (const topic of topics) for (const waiter of [...(this.waiting.get(topic) ?? [])]) waiter();
  }

  /** Every long poll (a notification that names nothing, or a queue that closes). */
  wakeAll() {
    this.wake(...this.waiting.keys());
  }
}
