/**
 * Build history for the build hub: builds, their steps, and every event in the order it was
 * taken (the event id is what a reconnecting watcher resumes from). `HistoryStore` is the
 * interface the hub needs; `SqliteHistory` keeps it in DATA/history.db, apart from the cache's
 * database so a burst of reports never waits on a blob upload's transaction.
 */
import type { Database } from "bun:sqlite";
import { join } from "node:path";
import { addMissingColumns, openDatabase } from "../util/sqlite.ts";
import { STEP_LOG_MAX, type BuildEvent, type BuildInfo, type BuildStep, type BuildSummary, type StepState } from "../report/events.ts";

export type { BuildStep, BuildSummary } from "../report/events.ts";
import type { Delivery, DeliveryStore } from "./webhooks.ts";
import type { Role } from "./auth.ts";

/** An event as the hub publishes it: the reported event, its build, and its place in the log. */
export type HubEvent = BuildEvent & { id: number; build: string };

export interface BuildFilter {
  label?: { name: string; value: string };
  result?: BuildSummary["result"];
  branch?: string;
  project?: string;
  /** The build's user, or the name of the token that reported it. */
  user?: string;
  /** Text anywhere in what the build is (its Dockerfile, project, target, tags, command, commit...), any case. */
  text?: string;
  /** From 1. */
  page: number;
  perPage: number;
}

export interface HistoryStats {
  /** Per hour, oldest first: builds finished and their steps' hits and misses. */
  hourly: { hour: number; builds: number; executed: number; cached: number; savedMs: number }[];
  topMissed: { name: string; misses: number }[];
  topSavers: { name: string; hits: number; savedMs: number }[];
}

/** A step's output as the hub keeps it: the last STEP_LOG_MAX characters, and how many went before. */
export interface StepLogRecord {
  text: string;
  /** Characters of earlier output not kept. */
  cut: number;
  /** The id of the last step.log event in it (a watcher appends only later ones). */
  lastEvent: number;
}

/** One finished build of a project, for its trends (duration, hit rate) over time. */
export interface TrendPoint {
  project: string;
  finished: number;
  durationMs: number;
  result: "success" | "failed";
  executed: number;
  cached: number;
  failed: number;
}

export interface HistoryStore extends DeliveryStore {
  /** The token that started a build, or undefined for a build not seen yet. */
  owner(build: string): Promise<string | undefined>;
  lastSeq(build: string): Promise<number>;
  eventCount(build: string): Promise<number>;
  /** Stores a batch of one build's events (in order, new ones only); returns them as published. */
  append(build: string, token: string, events: BuildEvent[], role?: Role): Promise<HubEvent[]>;
  /** Bytes of reported JSON kept: for one build, for a token's builds, in all. */
  buildBytes(build: string): Promise<number>;
  tokenBytes(token: string): Promise<number>;
  totalBytes(): Promise<number>;
  /**
   * Drops the oldest builds (of `token`, else read-only tokens' first; finished before
   * running; never `except`) until the bytes kept are at most `maxBytes`. Returns how many went.
   */
  shrink(options: { maxBytes: number; token?: string; except?: string }): Promise<number>;
  list(filter: BuildFilter): Promise<{ builds: BuildSummary[]; total: number }>;
  get(build: string): Promise<(BuildSummary & { steps: BuildStep[] }) | undefined>;
  /** What a step of a build printed (undefined: nothing, or no such step). */
  stepLog(build: string, step: string): Promise<StepLogRecord | undefined>;
  /** Events after `since`, oldest first, at most `limit`. */
  eventsSince(since: number, limit: number): Promise<HubEvent[]>;
  lastEventId(): Promise<number>;
  /** Builds still running that have reported nothing since `before` (server time). */
  stale(before: number): Promise<{ id: string; token: string; lastSeq: number; started: number; executed: number; cached: number; savedMs: number }[]>;
  /** Drops builds finished (or started) before `before`, all but the newest `keep`, and the oldest past `maxBytes`. */
  prune(options: { before: number; keep: number; maxBytes?: number }): Promise<number>;
  stats(since: number): Promise<HistoryStats>;
  /** Builds of named projects finished since `since`, newest first, at most `limit`. */
  trends(since: number, limit: number): Promise<TrendPoint[]>;
  /** Calls `listener` when another process may have stored events (a store shared by replicas). */
  onEvents?(listener: () => void): void;
  close(): Promise<void>;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS builds (
  id TEXT PRIMARY KEY, token TEXT NOT NULL, result TEXT NOT NULL, started INTEGER NOT NULL, finished INTEGER,
  branch TEXT, last_seq INTEGER NOT NULL, events INTEGER NOT NULL, updated INTEGER,
  executed INTEGER NOT NULL DEFAULT 0, cached INTEGER NOT NULL DEFAULT 0, saved_ms INTEGER NOT NULL DEFAULT 0,
  info TEXT NOT NULL, outcome TEXT
);
CREATE INDEX IF NOT EXISTS builds_started ON builds (started);
CREATE INDEX IF NOT EXISTS builds_finished ON builds (finished);
CREATE TABLE IF NOT EXISTS build_labels (build TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (build, name));
CREATE INDEX IF NOT EXISTS build_labels_value ON build_labels (name, value);
CREATE TABLE IF NOT EXISTS build_steps (
  build TEXT NOT NULL, step TEXT NOT NULL, number INTEGER NOT NULL, stage TEXT NOT NULL, name TEXT NOT NULL,
  state TEXT NOT NULL, started INTEGER, duration_ms INTEGER, saved_ms INTEGER, layer_size INTEGER, reasons TEXT, tail TEXT,
  PRIMARY KEY (build, step)
);
CREATE TABLE IF NOT EXISTS step_logs (build TEXT NOT NULL, step TEXT NOT NULL, text TEXT NOT NULL, cut INTEGER NOT NULL, last_event INTEGER NOT NULL, PRIMARY KEY (build, step));
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, build TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_build ON events (build);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
  id INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT NOT NULL, url TEXT NOT NULL, type TEXT NOT NULL, body TEXT NOT NULL,
  attempts INTEGER NOT NULL, next_attempt INTEGER NOT NULL, status TEXT NOT NULL, last_status INTEGER, last_error TEXT, created INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (status, next_attempt);
`;

type Row = Record<string, string | number | null>;

export class SqliteHistory implements HistoryStore {
  private readonly db: Database;

  constructor(dataDir: string) {
    this.db = openDatabase(join(dataDir, "history.db"), SCHEMA);
    const counted = (this.db.query("PRAGMA table_info(builds)").all() as { name: string }[]).some((c) => c.name === "bytes");
    addMissingColumns(this.db, "builds", ["updated INTEGER", "bytes INTEGER NOT NULL DEFAULT 0", "role TEXT"]);
    addMissingColumns(this.db, "webhook_deliveries", ["lease_until INTEGER NOT NULL DEFAULT 0"]);
    addMissingColumns(this.db, "build_steps", ["worker TEXT"]);
    addMissingColumns(this.db, "build_steps", ["config_only INTEGER NOT NULL DEFAULT 0"]);
    // A history from before byte budgets: its builds count what their events hold, so size
    // pruning and token budgets see them too.
    if (!counted) this.db.exec("UPDATE builds SET bytes = (SELECT coalesce(sum(length(CAST(body AS BLOB))), 0) FROM events WHERE events.build = builds.id)");
  }

  async owner(build: string): Promise<string | undefined> {
    return (this.db.query("SELECT token FROM builds WHERE id = ?").get(build) as { token: string } | null)?.token;
  }

  async lastSeq(build: string): Promise<number> {
    return (this.db.query("SELECT last_seq FROM builds WHERE id = ?").get(build) as { last_seq: number } | null)?.last_seq ?? 0;
  }

  async eventCount(build: string): Promise<number> {
    return (this.db.query("SELECT events FROM builds WHERE id = ?").get(build) as { events: number } | null)?.events ?? 0;
  }

  async append(build: string, token: string, events: BuildEvent[], role: Role = "rw"): Promise<HubEvent[]> {
    return this.db.transaction(() => events.map((event) => this.appendOne(build, token, event, role)))();
  }

  async buildBytes(build: string): Promise<number> {
    return (this.db.query("SELECT bytes FROM builds WHERE id = ?").get(build) as { bytes: number } | null)?.bytes ?? 0;
  }

  async tokenBytes(token: string): Promise<number> {
    return this.tokenBytesNow(token);
  }

  private tokenBytesNow(token: string): number {
    return (this.db.query("SELECT coalesce(sum(bytes), 0) AS n FROM builds WHERE token = ?").get(token) as { n: number }).n;
  }

  async totalBytes(): Promise<number> {
    return this.totalBytesNow();
  }

  private totalBytesNow(): number {
    return (this.db.query("SELECT coalesce(sum(bytes), 0) AS n FROM builds").get() as { n: number }).n;
  }

  async shrink(options: { maxBytes: number; token?: string; except?: string }): Promise<number> {
    return this.shrinkNow(options);
  }

  private shrinkNow({ maxBytes, token, except }: { maxBytes: number; token?: string; except?: string }): number {
    return this.db.transaction(() => {
      let kept = token === undefined ? this.totalBytesNow() : this.tokenBytesNow(token);
      if (kept <= maxBytes) return 0;
      const candidates = this.db
        .query(
          `SELECT id, bytes FROM builds WHERE id != $except ${token === undefined ? "" : "AND token = $token"}
           ORDER BY coalesce(role, 'rw') = 'ro' DESC, result = 'running', started, rowid`,
        )
        .all({ except: except ?? "", ...(token === undefined ? {} : { token }) }) as { id: string; bytes: number }[];
      const doomed: string[] = [];
      for (const candidate of candidates) {
        if (kept <= maxBytes) break;
        doomed.push(candidate.id);
        kept -= candidate.bytes;
      }
      for (const id of doomed) this.drop(id);
      return doomed.length;
    })();
  }

  private drop(id: string) {
    for (const table of ["events", "build_steps", "build_labels", "step_logs"]) this.db.query(`DELETE FROM ${table} WHERE build = ?`).run(id);
    this.db.query("DELETE FROM builds WHERE id = ?").run(id);
  }

  private appendOne(build: string, token: string, event: BuildEvent, role: Role): HubEvent {
    switch (event.type) {
      case "build.started": {
        const { type: _t, seq: _s, time, steps, labels, ...info } = event;
        this.db
          .query("INSERT OR IGNORE INTO builds (id, token, result, started, branch, last_seq, events, info, role) VALUES (?, ?, 'running', ?, ?, 0, 0, ?, ?)")
          .run(build, token, time, branchOf(info), JSON.stringify({ ...info, labels }), role);
        const label = this.db.query("INSERT OR REPLACE INTO build_labels VALUES (?, ?, ?)");
        for (const [name, value] of Object.entries(labels)) label.run(build, name, value);
        const step = this.db.query("INSERT OR IGNORE INTO build_steps (build, step, number, stage, name, state) VALUES (?, ?, ?, ?, ?, 'queued')");
        for (const s of steps) step.run(build, s.id, s.number, s.stage, s.name);
        break;
      }
      case "step.updated":
        this.db
          .query(
            `UPDATE build_steps SET state = ?, started = CASE WHEN ? = 'running' THEN ? ELSE started END,
             duration_ms = coalesce(?, duration_ms), saved_ms = coalesce(?, saved_ms),
             layer_size = coalesce(?, layer_size), reasons = coalesce(?, reasons), tail = coalesce(?, tail), worker = coalesce(?, worker), config_only = max(config_only, ?) WHERE build = ? AND step = ?`,
          )
          .run(
            event.state,
            event.state,
            event.time,
            event.durationMs ?? null,
            event.savedMs ?? null,
            event.layerSize ?? null,
            event.reasons ? JSON.stringify(event.reasons) : null,
            event.tail ? JSON.stringify(event.tail) : null,
            event.worker ?? null,
            event.configOnly ? 1 : 0,
            build,
            event.step,
          );
        break;
      case "build.finished": {
        const { type: _t, seq: _s, time, result, executed, cached, savedMs, ...outcome } = event;
        this.db.query(FINAL_STATES_SQL).run(build);
        this.db
          .query("UPDATE builds SET result = ?, finished = ?, executed = ?, cached = ?, saved_ms = ?, outcome = ? WHERE id = ?")
          .run(result, time, executed, cached, savedMs, JSON.stringify(outcome), build);
        break;
      }
    }
    const body = JSON.stringify(event);
    this.db.query("UPDATE builds SET last_seq = ?, events = events + 1, updated = ?, bytes = bytes + ? WHERE id = ?").run(event.seq, Date.now(), Buffer.byteLength(body), build);
    const { id } = this.db.query("INSERT INTO events (build, body) VALUES (?, ?) RETURNING id").get(build, body) as { id: number };
    if (event.type === "step.log") this.appendLog(build, event.step, event.text, id);
    return { ...event, id, build };
  }

  /** Adds output to a step's log, keeping its last STEP_LOG_MAX characters (both in SQL: one statement). */
  private appendLog(build: string, step: string, text: string, id: number) {
    this.db
      .query(
        `INSERT INTO step_logs (build, step, text, cut, last_event) VALUES ($build, $step, substr($text, -$max), max(0, length($text) - $max), $id)
         ON CONFLICT (build, step) DO UPDATE SET text = substr(step_logs.text || $text, -$max),
           cut = step_logs.cut + max(0, length(step_logs.text) + length($text) - $max), last_event = $id`,
      )
      .run({ build, step, text, max: STEP_LOG_MAX, id });
  }

  async list(filter: BuildFilter): Promise<{ builds: BuildSummary[]; total: number }> {
    const where: string[] = [];
    const params: Record<string, string | number> = {};
    if (filter.result) (where.push("result = $result"), (params.result = filter.result));
    if (filter.branch) (where.push("branch = $branch"), (params.branch = filter.branch));
    if (filter.project) (where.push("json_extract(info, '$.project') = $project"), (params.project = filter.project));
    if (filter.user) (where.push("(json_extract(info, '$.user') = $user OR json_extract(info, '$.tokenName') = $user)"), (params.user = filter.user));
    // In the JSON as stored: quotes and backslashes escaped there as in the JSON of the text.
    if (filter.text) (where.push("instr(lower(id || ' ' || info || ' ' || coalesce(outcome, '')), $text) > 0"), (params.text = jsonInner(filter.text.toLowerCase())));
    if (filter.label) {
      where.push("id IN (SELECT build FROM build_labels WHERE name = $labelName AND value = $labelValue)");
      Object.assign(params, { labelName: filter.label.name, labelValue: filter.label.value });
    }
    const clause = where.length ? `WHERE ${where.join(" AND ")}` : "";
    const total = (this.db.query(`SELECT count(*) AS n FROM builds ${clause}`).get(params) as { n: number }).n;
    const rows = this.db
      .query(`SELECT *, ${FAILED_STEPS_SQL} FROM builds ${clause} ORDER BY started DESC, rowid DESC LIMIT $limit OFFSET $offset`)
      .all({ ...params, limit: filter.perPage, offset: (filter.page - 1) * filter.perPage }) as Row[];
    return { builds: rows.map(toSummary), total };
  }

  async get(build: string): Promise<(BuildSummary & { steps: BuildStep[] }) | undefined> {
    const row = this.db.query(`SELECT *, ${FAILED_STEPS_SQL} FROM builds WHERE id = ?`).get(build) as Row | null;
    if (!row) return undefined;
    const steps = (this.db.query("SELECT * FROM build_steps WHERE build = ? ORDER BY number").all(build) as Row[]).map(toStep);
    return withSteps(toSummary(row), steps);
  }

  async stepLog(build: string, step: string): Promise<StepLogRecord | undefined> {
    const row = this.db.query("SELECT text, cut, last_event AS lastEvent FROM step_logs WHERE build = ? AND step = ?").get(build, step) as StepLogRecord | null;
    return row ?? undefined;
  }

  async eventsSince(since: number, limit: number): Promise<HubEvent[]> {
    const rows = this.db.query("SELECT id, build, body FROM events WHERE id > ? ORDER BY id LIMIT ?").all(since, limit) as { id: number; build: string; body: string }[];
    return rows.map((r) => ({ ...(JSON.parse(r.body) as BuildEvent), id: r.id, build: r.build }));
  }

  async lastEventId(): Promise<number> {
    return (this.db.query("SELECT max(id) AS id FROM events").get() as { id: number | null }).id ?? 0;
  }

  async stale(before: number) {
    return this.db
      .query(
        `SELECT b.id, b.token, b.last_seq AS lastSeq, b.started,
           (SELECT count(*) FROM build_steps s WHERE s.build = b.id AND s.state = 'executed' AND s.config_only = 0) AS executed,
           (SELECT count(*) FROM build_steps s WHERE s.build = b.id AND s.state IN ('cached-local', 'cached-remote') AND s.config_only = 0) AS cached,
           (SELECT coalesce(sum(saved_ms), 0) FROM build_steps s WHERE s.build = b.id AND s.state IN ('cached-local', 'cached-remote')) AS savedMs
         FROM builds b WHERE b.result = 'running' AND coalesce(b.updated, 0) < ?`,
      )
      .all(before) as { id: string; token: string; lastSeq: number; started: number; executed: number; cached: number; savedMs: number }[];
  }

  async prune({ before, keep, maxBytes }: { before: number; keep: number; maxBytes?: number }): Promise<number> {
    const byAge = this.db.transaction(() => {
      const doomed = this.db
        .query(
          `SELECT id FROM builds WHERE coalesce(finished, started) < $before
           UNION SELECT id FROM (SELECT id FROM builds ORDER BY started DESC, rowid DESC LIMIT -1 OFFSET $keep)`,
        )
        .all({ before, keep }) as { id: string }[];
      for (const { id } of doomed) this.drop(id);
      return doomed.length;
    })();
    return byAge + (maxBytes === undefined ? 0 : this.shrinkNow({ maxBytes }));
  }

  async stats(since: number): Promise<HistoryStats> {
    const hourly = this.db
      .query(
        `SELECT finished / 3600000 * 3600000 AS hour, count(*) AS builds, sum(executed) AS executed, sum(cached) AS cached, sum(saved_ms) AS savedMs
         FROM builds WHERE finished >= ? GROUP BY hour ORDER BY hour`,
      )
      .all(since) as HistoryStats["hourly"];
    const recent = "build IN (SELECT id FROM builds WHERE started >= $since)";
    const topMissed = this.db
      .query(`SELECT name, count(*) AS misses FROM build_steps WHERE state = 'executed' AND config_only = 0 AND ${recent} GROUP BY name ORDER BY misses DESC, name LIMIT 10`)
      .all({ since }) as HistoryStats["topMissed"];
    const topSavers = this.db
      .query(
        `SELECT name, count(*) AS hits, sum(saved_ms) AS savedMs FROM build_steps
         WHERE state IN ('cached-local', 'cached-remote') AND config_only = 0 AND ${recent} GROUP BY name ORDER BY savedMs DESC, name LIMIT 10`,
      )
      .all({ since }) as HistoryStats["topSavers"];
    return { hourly, topMissed, topSavers };
  }

  async trends(since: number, limit: number): Promise<TrendPoint[]> {
    const rows = this.db
      .query(
        // The duration the build reported (as the list shows it), else the span of its events:
        // a remote build's first event comes only once its job is planned.
        `SELECT json_extract(info, '$.project') AS project, finished, coalesce(json_extract(outcome, '$.durationMs'), finished - started) AS durationMs, result, executed, cached, ${FAILED_STEPS_SQL}
         FROM builds WHERE finished >= ? AND json_extract(info, '$.project') IS NOT NULL ORDER BY finished DESC LIMIT ?`,
      )
      .all(since, limit) as Row[];
    return rows.map(toTrendPoint);
  }

  async queueDelivery(d: Omit<Delivery, "id">) {
    this.db
      .query("INSERT INTO webhook_deliveries (message_id, url, type, body, attempts, next_attempt, status, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
      .run(d.messageId, d.url, d.type, d.body, d.attempts, d.nextAttempt, d.status, d.created);
    // The log keeps the last 10,000 deliveries; pending ones are never dropped.
    this.db.query("DELETE FROM webhook_deliveries WHERE status != 'pending' AND id <= (SELECT max(id) FROM webhook_deliveries) - 10000").run();
  }

  async claimDeliveries(now: number, limit: number, leaseUntil: number): Promise<Delivery[]> {
    const rows = this.db
      .query(
        `UPDATE webhook_deliveries SET lease_until = ? WHERE id IN
           (SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt <= ? AND lease_until < ? ORDER BY id LIMIT ?) RETURNING *`,
      )
      .all(leaseUntil, now, now, limit) as Row[];
    return rows.map(toDelivery).sort((a, b) => a.id - b.id);
  }

  async updateDelivery(id: number, change: Pick<Delivery, "attempts" | "nextAttempt" | "status"> & { lastStatus?: number; lastError?: string }) {
    this.db
      .query("UPDATE webhook_deliveries SET attempts = ?, next_attempt = ?, status = ?, last_status = ?, last_error = ?, lease_until = 0 WHERE id = ?")
      .run(change.attempts, change.nextAttempt, change.status, change.lastStatus ?? null, change.lastError ?? null, id);
  }

  async recentDeliveries(limit: number): Promise<Delivery[]> {
    return (this.db.query("SELECT * FROM webhook_deliveries ORDER BY id DESC LIMIT ?").all(limit) as Row[]).map(toDelivery);
  }

  async pendingDeliveries(): Promise<number> {
    return (this.db.query("SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'pending'").get() as { n: number }).n;
  }

  async close() {
    this.db.close();
  }
}

/**
 * When a build ends, no step of it stays in progress: one still running was cancelled (another
 * step failed, or the client went away), one still queued was skipped. One statement, both back ends.
 */
export const FINAL_STATES_SQL = "UPDATE build_steps SET state = CASE state WHEN 'running' THEN 'cancelled' ELSE 'skipped' END WHERE build = $1 AND state IN ('running', 'queued')";
/** The failed steps of each build listed: they count as misses in its hit rate. */
export const FAILED_STEPS_SQL = [
  "(SELECT count(*) FROM build_steps s WHERE s.build = builds.id AND s.state = 'failed') AS failed_steps",
  // The first that failed, named in the list: what a lead looks for first.
  "(SELECT min(number) FROM build_steps s WHERE s.build = builds.id AND s.state = 'failed') AS failed_number",
  "(SELECT name FROM build_steps s WHERE s.build = builds.id AND s.state = 'failed' ORDER BY number LIMIT 1) AS failed_name",
].join(", ");

/** The branch a build is listed under: its CI's, else its checkout's. */
export const branchOf = (info: Pick<BuildInfo, "ci" | "git">) => info.ci?.branch ?? info.git?.branch ?? null;

/** Text as it appears inside a JSON string (what a search of the stored JSON must look for). */
export const jsonInner = (text: string) => JSON.stringify(text).slice(1, -1);

/** A build with its steps, and the step that failed named (with its output) when one did. */
export function withSteps(summary: BuildSummary, steps: BuildStep[]): BuildSummary & { steps: BuildStep[] } {
  const failed = steps.find((s) => s.state === "failed");
  return { ...summary, ...(failed ? { failedStep: { number: failed.number, name: failed.name, ...(failed.tail?.length || failed.reasons?.length ? { output: failed.tail?.length ? failed.tail : failed.reasons } : {}) } } : {}), steps };
}

export function toTrendPoint(row: Row): TrendPoint {
  return {
    project: String(row.project),
    finished: Number(row.finished),
    durationMs: Number(row.durationMs ?? row.durationms),
    result: row.result as TrendPoint["result"],
    executed: Number(row.executed),
    cached: Number(row.cached),
    failed: Number(row.failed_steps),
  };
}

export function toDelivery(row: Row): Delivery {
  return {
    id: row.id as number,
    messageId: row.message_id as string,
    url: row.url as string,
    type: row.type as Delivery["type"],
    body: row.body as string,
    attempts: row.attempts as number,
    nextAttempt: row.next_attempt as number,
    status: row.status as Delivery["status"],
    ...(row.last_status !== null ? { lastStatus: row.last_status as number } : {}),
    ...(row.last_error !== null ? { lastError: row.last_error as string } : {}),
    created: row.created as number,
  };
}

export function toSummary(row: Row): BuildSummary {
  const info = JSON.parse(row.info as string) as Omit<BuildSummary, "id" | "token" | "result" | "started" | "executed" | "cached" | "savedMs">;
  const outcome = row.outcome ? (JSON.parse(row.outcome as string) as Pick<BuildSummary, "image" | "context" | "error" | "durationMs">) : {};
  const executed = row.executed as number;
  const cached = row.cached as number;
  // A step that failed had to run: a miss (a failed build is not "100% cached").
  const failed = Number(row.failed_steps ?? 0);
  return {
    id: row.id as string,
    token: row.token as string,
    result: row.result as BuildSummary["result"],
    started: row.started as number,
    ...(row.finished !== null ? { finished: row.finished as number } : {}),
    ...info,
    ...outcome,
    executed,
    cached,
    ...(executed + cached + failed > 0 ? { hitRate: cached / (executed + cached + failed) } : {}),
    ...(row.failed_name !== null && row.failed_name !== undefined ? { failedStep: { number: Number(row.failed_number), name: row.failed_name as string } } : {}),
    savedMs: row.saved_ms as number,
  };
}

export function toStep(row: Row): BuildStep {
  const optional = <T>(value: string | number | null, parse: (v: string | number) => T) => (value === null ? undefined : parse(value));
  return {
    id: row.step as string,
    stage: row.stage as string,
    number: row.number as number,
    name: row.name as string,
    state: row.state as StepState,
    started: optional(row.started, Number),
    durationMs: optional(row.duration_ms, Number),
    savedMs: optional(row.saved_ms, Number),
    layerSize: optional(row.layer_size, Number),
    reasons: optional(row.reasons, (v) => JSON.parse(v as string) as string[]),
    tail: optional(row.tail, (v) => JSON.parse(v as string) as string[]),
    worker: optional(row.worker ?? null, String),
    ...(Number(row.config_only) ? { configOnly: true as const } : {}),
  };
}
