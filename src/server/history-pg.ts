/**
 * Build history and webhook deliveries in PostgreSQL, shared by every replica (history.ts has
 * the contract and the SQLite default). Events get one global id: appends take an advisory
 * lock for their transaction, so ids become visible in the order they were given and a reader
 * that has seen id N never later finds a smaller one committed. NOTIFY after each append only
 * wakes the other replicas; what they send their watchers they read from the table.
 */
import type { SQL } from "bun";
import { STEP_LOG_MAX, type BuildEvent } from "../report/events.ts";
import type { Role } from "./auth.ts";
import { branchOf, FAILED_STEPS_SQL, FINAL_STATES_SQL, jsonInner, toTrendPoint, type TrendPoint, toDelivery, toStep, toSummary, withSteps, type BuildFilter, type BuildStep, type BuildSummary, type HistoryStats, type HistoryStore, type HubEvent, type StepLogRecord } from "./history.ts";
import { LOCKS, num } from "./pg.ts";
import type { Delivery } from "./webhooks.ts";

type Row = Record<string, string | number | null>;
type Tx = SQL;

const CHANNEL = "memobuild_events";

/** Rows as the SQLite store returns them: BIGINT columns (strings from the driver) as numbers. */
function numbers(row: Row, columns: string[]): Row {
  const out = { ...row };
  for (const column of columns) if (out[column] !== null && out[column] !== undefined) out[column] = Number(out[column]);
  return out;
}
const BUILD_NUMBERS = ["started", "finished", "last_seq", "events", "updated", "executed", "cached", "saved_ms", "bytes"];
const STEP_NUMBERS = ["number", "started", "duration_ms", "saved_ms", "layer_size"];
const DELIVERY_NUMBERS = ["id", "attempts", "next_attempt", "last_status", "created", "lease_until"];

export class PgHistory implements HistoryStore {
  private listening: Promise<unknown> | undefined;

  constructor(private readonly sql: SQL) {}

  onEvents(listener: () => void) {
    this.listening = this.sql.listen(CHANNEL, () => listener());
  }

  async owner(build: string) {
    const [row] = await this.sql`SELECT token FROM builds WHERE id = ${build}`;
    return row?.token as string | undefined;
  }

  async lastSeq(build: string) {
    const [row] = await this.sql`SELECT last_seq FROM builds WHERE id = ${build}`;
    return row ? num(row.last_seq) : 0;
  }

  async eventCount(build: string) {
    const [row] = await this.sql`SELECT events FROM builds WHERE id = ${build}`;
    return row ? num(row.events) : 0;
  }

  async append(build: string, token: string, events: BuildEvent[], role: Role = "rw"): Promise<HubEvent[]> {
    if (events.length === 0) return [];
    const stored = await this.sql.begin(async (tx) => {
      await tx`SELECT pg_advisory_xact_lock(${LOCKS.events})`;
      // Another replica may have taken some of these since the hub looked: seq decides.
      const [row] = await tx`SELECT last_seq FROM builds WHERE id = ${build}`;
      let last = row ? num(row.last_seq) : 0;
      const fresh = events.filter((event, i) => {
        if (event.seq <= last || (row === undefined && i === 0 && event.type !== "build.started")) return false;
        last = event.seq;
        return true;
      });
      if (fresh.length === 0) return [] as HubEvent[];
      // Sent one after another without waiting for each answer (the connection pipelines them,
      // in order): a batch of a thousand events is not a thousand round trips.
      const pending: Promise<unknown>[] = [];
      const ids = fresh.map((event) => this.appendOne(tx, build, token, event, role, pending));
      const bytes = fresh.reduce((sum, event) => sum + Buffer.byteLength(JSON.stringify(event)), 0);
      pending.push(tx`UPDATE builds SET last_seq = ${last}, events = events + ${fresh.length}, updated = ${Date.now()}, bytes = bytes + ${bytes} WHERE id = ${build}`);
      const out = await Promise.all(ids.map(async (id, i) => ({ ...fresh[i], id: await id, build })));
      await Promise.all(pending);
      await tx`SELECT pg_notify(${CHANNEL}, ${String(out.at(-1)!.id)})`;
      return out;
    });
    return stored;
  }

  /** Queues one event's statements on `pending`; resolves to the event's id. */
  private appendOne(tx: Tx, build: string, token: string, event: BuildEvent, role: Role, pending: Promise<unknown>[]): Promise<number> {
    switch (event.type) {
      case "build.started": {
        const { type: _t, seq: _s, time, steps, labels, ...info } = event;
        pending.push(tx`INSERT INTO builds (id, token, result, started, branch, last_seq, events, info, role)
          VALUES (${build}, ${token}, 'running', ${time}, ${branchOf(info)}, 0, 0, ${JSON.stringify({ ...info, labels })}, ${role}) ON CONFLICT DO NOTHING`);
        for (const [name, value] of Object.entries(labels)) {
          pending.push(tx`INSERT INTO build_labels VALUES (${build}, ${name}, ${value}) ON CONFLICT (build, name) DO UPDATE SET value = excluded.value`);
        }
        for (const s of steps) {
          pending.push(tx`INSERT INTO build_steps (build, step, number, stage, name, state) VALUES (${build}, ${s.id}, ${s.number}, ${s.stage}, ${s.name}, 'queued') ON CONFLICT DO NOTHING`);
        }
        break;
      }
      case "step.updated":
        pending.push(tx`UPDATE build_steps SET state = ${event.state}, started = CASE WHEN ${event.state} = 'running' THEN ${event.time}::bigint ELSE started END,
          duration_ms = coalesce(${event.durationMs ?? null}::bigint, duration_ms), saved_ms = coalesce(${event.savedMs ?? null}::bigint, saved_ms),
          layer_size = coalesce(${event.layerSize ?? null}::bigint, layer_size), reasons = coalesce(${event.reasons ? JSON.stringify(event.reasons) : null}::text, reasons),
          tail = coalesce(${event.tail ? JSON.stringify(event.tail) : null}::text, tail), worker = coalesce(${event.worker ?? null}::text, worker),
          config_only = config_only OR ${event.configOnly === true} WHERE build = ${build} AND step = ${event.step}`);
        break;
      case "build.finished": {
        const { type: _t, seq: _s, time, result, executed, cached, savedMs, ...outcome } = event;
        pending.push(tx.unsafe(FINAL_STATES_SQL, [build]));
        pending.push(tx`UPDATE builds SET result = ${result}, finished = ${time}, executed = ${executed}, cached = ${cached}, saved_ms = ${savedMs}, outcome = ${JSON.stringify(outcome)} WHERE id = ${build}`);
        break;
      }
    }
    if (event.type === "step.log") {
      // The event's id comes from the same statement that adds the output (pipelined, in order).
      const logged = tx`WITH e AS (INSERT INTO events (build, body) VALUES (${build}, ${JSON.stringify(event)}) RETURNING id)
        INSERT INTO step_logs (build, step, text, cut, last_event) SELECT ${build}, ${event.step}, right(${event.text}, ${STEP_LOG_MAX}), greatest(0, length(${event.text}) - ${STEP_LOG_MAX}), e.id FROM e
        ON CONFLICT (build, step) DO UPDATE SET text = right(step_logs.text || ${event.text}, ${STEP_LOG_MAX}),
          cut = step_logs.cut + greatest(0, length(step_logs.text) + length(${event.text}) - ${STEP_LOG_MAX}), last_event = excluded.last_event
        RETURNING last_event`;
      pending.push(logged);
      return logged.then(([row]: { last_event: string }[]) => num(row.last_event));
    }
    const inserted = tx`INSERT INTO events (build, body) VALUES (${build}, ${JSON.stringify(event)}) RETURNING id`;
    pending.push(inserted);
    return inserted.then(([row]: { id: string }[]) => num(row.id));
  }

  async buildBytes(build: string) {
    const [row] = await this.sql`SELECT bytes FROM builds WHERE id = ${build}`;
    return row ? num(row.bytes) : 0;
  }

  async tokenBytes(token: string) {
    const [row] = await this.sql`SELECT coalesce(sum(bytes), 0) AS n FROM builds WHERE token = ${token}`;
    return num(row.n);
  }

  async totalBytes() {
    const [row] = await this.sql`SELECT coalesce(sum(bytes), 0) AS n FROM builds`;
    return num(row.n);
  }

  async shrink({ maxBytes, token, except }: { maxBytes: number; token?: string; except?: string }): Promise<number> {
    return await this.sql.begin(async (tx) => {
      const [total] = token === undefined ? await tx`SELECT coalesce(sum(bytes), 0) AS n FROM builds` : await tx`SELECT coalesce(sum(bytes), 0) AS n FROM builds WHERE token = ${token}`;
      let kept = num(total.n);
      if (kept <= maxBytes) return 0;
      const order = tx`ORDER BY coalesce(role, 'rw') = 'ro' DESC, result = 'running', started, seq`;
      const candidates =
        token === undefined
          ? await tx`SELECT id, bytes FROM builds WHERE id != ${except ?? ""} ${order}`
          : await tx`SELECT id, bytes FROM builds WHERE id != ${except ?? ""} AND token = ${token} ${order}`;
      const doomed: string[] = [];
      for (const candidate of candidates) {
        if (kept <= maxBytes) break;
        doomed.push(candidate.id);
        kept -= num(candidate.bytes);
      }
      await this.drop(tx, doomed);
      return doomed.length;
    });
  }

  private async drop(tx: Tx, ids: string[]) {
    if (ids.length === 0) return;
    await tx`DELETE FROM events WHERE build IN ${tx(ids)}`;
    await tx`DELETE FROM build_steps WHERE build IN ${tx(ids)}`;
    await tx`DELETE FROM build_labels WHERE build IN ${tx(ids)}`;
    await tx`DELETE FROM step_logs WHERE build IN ${tx(ids)}`;
    await tx`DELETE FROM builds WHERE id IN ${tx(ids)}`;
  }

  async list(filter: BuildFilter): Promise<{ builds: BuildSummary[]; total: number }> {
    const sql = this.sql;
    const conditions = [
      filter.result ? sql`result = ${filter.result}` : sql`TRUE`,
      filter.branch ? sql`branch = ${filter.branch}` : sql`TRUE`,
      filter.label ? sql`id IN (SELECT build FROM build_labels WHERE name = ${filter.label.name} AND value = ${filter.label.value})` : sql`TRUE`,
      filter.project ? sql`info::json->>'project' = ${filter.project}` : sql`TRUE`,
      filter.user ? sql`(info::json->>'user' = ${filter.user} OR info::json->>'tokenName' = ${filter.user})` : sql`TRUE`,
      // In the JSON as stored (see the SQLite store).
      filter.text ? sql`strpos(lower(id || ' ' || info || ' ' || coalesce(outcome, '')), ${jsonInner(filter.text.toLowerCase())}) > 0` : sql`TRUE`,
    ];
    const where = sql`WHERE ${conditions[0]} AND ${conditions[1]} AND ${conditions[2]} AND ${conditions[3]} AND ${conditions[4]} AND ${conditions[5]}`;
    const [count] = await sql`SELECT count(*) AS n FROM builds ${where}`;
    const rows = await sql`SELECT *, ${sql.unsafe(FAILED_STEPS_SQL)} FROM builds ${where} ORDER BY started DESC, seq DESC LIMIT ${filter.perPage} OFFSET ${(filter.page - 1) * filter.perPage}`;
    return { builds: rows.map((r: Row) => toSummary(numbers(r, BUILD_NUMBERS))), total: num(count.n) };
  }

  async get(build: string): Promise<(BuildSummary & { steps: BuildStep[] }) | undefined> {
    const [row] = await this.sql`SELECT *, ${this.sql.unsafe(FAILED_STEPS_SQL)} FROM builds WHERE id = ${build}`;
    if (!row) return undefined;
    const steps = await this.sql`SELECT * FROM build_steps WHERE build = ${build} ORDER BY number`;
    return withSteps(toSummary(numbers(row, BUILD_NUMBERS)), steps.map((s: Row) => toStep(numbers(s, STEP_NUMBERS))));
  }

  async stepLog(build: string, step: string): Promise<StepLogRecord | undefined> {
    const [row] = await this.sql`SELECT text, cut, last_event FROM step_logs WHERE build = ${build} AND step = ${step}`;
    return row ? { text: row.text as string, cut: num(row.cut), lastEvent: num(row.last_event) } : undefined;
  }

  async eventsSince(since: number, limit: number): Promise<HubEvent[]> {
    const rows = await this.sql`SELECT id, build, body FROM events WHERE id > ${since} ORDER BY id LIMIT ${limit}`;
    return rows.map((r: Row) => ({ ...(JSON.parse(r.body as string) as BuildEvent), id: num(r.id), build: r.build as string }));
  }

  async lastEventId() {
    const [row] = await this.sql`SELECT coalesce(max(id), 0) AS id FROM events`;
    return num(row.id);
  }

  async stale(before: number) {
    const rows = await this.sql`SELECT b.id, b.token, b.last_seq, b.started,
        (SELECT count(*) FROM build_steps s WHERE s.build = b.id AND s.state = 'executed' AND NOT s.config_only) AS executed,
        (SELECT count(*) FROM build_steps s WHERE s.build = b.id AND s.state IN ('cached-local', 'cached-remote') AND NOT s.config_only) AS cached,
        (SELECT coalesce(sum(saved_ms), 0) FROM build_steps s WHERE s.build = b.id AND s.state IN ('cached-local', 'cached-remote')) AS saved
      FROM builds b WHERE b.result = 'running' AND coalesce(b.updated, 0) < ${before}`;
    return rows.map((r: Row) => ({ id: r.id as string, token: r.token as string, lastSeq: num(r.last_seq), started: num(r.started), executed: num(r.executed), cached: num(r.cached), savedMs: num(r.saved) }));
  }

  async prune({ before, keep, maxBytes }: { before: number; keep: number; maxBytes?: number }): Promise<number> {
    const byAge = await this.sql.begin(async (tx) => {
      const doomed = await tx`SELECT id FROM builds WHERE coalesce(finished, started) < ${before}
        UNION SELECT id FROM (SELECT id FROM builds ORDER BY started DESC, seq DESC OFFSET ${keep}) old`;
      await this.drop(
        tx,
        doomed.map((r: Row) => r.id as string),
      );
      return doomed.length;
    });
    return byAge + (maxBytes === undefined ? 0 : await this.shrink({ maxBytes }));
  }

  async stats(since: number): Promise<HistoryStats> {
    const hourly = await this.sql`SELECT finished / 3600000 * 3600000 AS hour, count(*) AS builds, sum(executed) AS executed, sum(cached) AS cached, sum(saved_ms) AS saved
      FROM builds WHERE finished >= ${since} GROUP BY hour ORDER BY hour`;
    const topMissed = await this.sql`SELECT name, count(*) AS misses FROM build_steps WHERE state = 'executed' AND NOT config_only
      AND build IN (SELECT id FROM builds WHERE started >= ${since}) GROUP BY name ORDER BY misses DESC, name LIMIT 10`;
    const topSavers = await this.sql`SELECT name, count(*) AS hits, sum(saved_ms) AS saved FROM build_steps
      WHERE state IN ('cached-local', 'cached-remote') AND NOT config_only AND build IN (SELECT id FROM builds WHERE started >= ${since}) GROUP BY name ORDER BY saved DESC, name LIMIT 10`;
    return {
      hourly: hourly.map((r: Row) => ({ hour: num(r.hour), builds: num(r.builds), executed: num(r.executed), cached: num(r.cached), savedMs: num(r.saved) })),
      topMissed: topMissed.map((r: Row) => ({ name: r.name as string, misses: num(r.misses) })),
      topSavers: topSavers.map((r: Row) => ({ name: r.name as string, hits: num(r.hits), savedMs: num(r.saved) })),
    };
  }

  async trends(since: number, limit: number): Promise<TrendPoint[]> {
    const rows = await this.sql`SELECT info::json->>'project' AS project, finished, coalesce((outcome::json->>'durationMs')::bigint, finished - started) AS duration_ms, result, executed, cached, ${this.sql.unsafe(FAILED_STEPS_SQL)}
      FROM builds WHERE finished >= ${since} AND info::json->>'project' IS NOT NULL ORDER BY finished DESC LIMIT ${limit}`;
    return rows.map((r: Row) => toTrendPoint({ ...r, durationMs: r.duration_ms }));
  }

  async queueDelivery(d: Omit<Delivery, "id">) {
    await this.sql`INSERT INTO webhook_deliveries (message_id, url, type, body, attempts, next_attempt, status, created)
      VALUES (${d.messageId}, ${d.url}, ${d.type}, ${d.body}, ${d.attempts}, ${d.nextAttempt}, ${d.status}, ${d.created})`;
    // The log keeps the last 10,000 deliveries; pending ones are never dropped.
    await this.sql`DELETE FROM webhook_deliveries WHERE status != 'pending' AND id <= (SELECT max(id) FROM webhook_deliveries) - 10000`;
  }

  /** One statement: rows another replica holds are skipped (SKIP LOCKED), not waited for or doubled. */
  async claimDeliveries(now: number, limit: number, leaseUntil: number): Promise<Delivery[]> {
    const rows = await this.sql`UPDATE webhook_deliveries SET lease_until = ${leaseUntil} WHERE id IN
      (SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt <= ${now} AND lease_until < ${now} ORDER BY id LIMIT ${limit} FOR UPDATE SKIP LOCKED)
      RETURNING *`;
    return rows.map((r: Row) => toDelivery(numbers(r, DELIVERY_NUMBERS))).sort((a: Delivery, b: Delivery) => a.id - b.id);
  }

  async updateDelivery(id: number, change: Pick<Delivery, "attempts" | "nextAttempt" | "status"> & { lastStatus?: number; lastError?: string }) {
    await this.sql`UPDATE webhook_deliveries SET attempts = ${change.attempts}, next_attempt = ${change.nextAttempt}, status = ${change.status},
      last_status = ${change.lastStatus ?? null}, last_error = ${change.lastError ?? null}, lease_until = 0 WHERE id = ${id}`;
  }

  async recentDeliveries(limit: number): Promise<Delivery[]> {
    const rows = await this.sql`SELECT * FROM webhook_deliveries ORDER BY id DESC LIMIT ${limit}`;
    return rows.map((r: Row) => toDelivery(numbers(r, DELIVERY_NUMBERS)));
  }

  async pendingDeliveries() {
    const [row] = await this.sql`SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'pending'`;
    return num(row.n);
  }

  async close() {
    const listener = (await this.listening) as { unlisten?: () => Promise<void> } | undefined;
    await listener?.unlisten?.();
  }
}
