/**
 * The build hub: takes the events builds report (checked field by field: any client may send
 * anything), stores them, and hands each to the watchers (WebSocket) and the webhooks, in the
 * order they were stored. A build belongs to the token that started it; its events are taken
 * once each (by `seq`), so a batch sent again changes nothing.
 */
import { LOG_CHUNK_MAX, STEP_STATES, type BuildEvent, type BuildFinished, type BuildStarted, type StepUpdated } from "../report/events.ts";
import type { BuildStep, BuildSummary, HistoryStore, HubEvent } from "./history.ts";
import type { Metrics } from "./metrics.ts";
import type { Webhooks } from "./webhooks.ts";
import type { Role } from "./auth.ts";
import { redactCredentials } from "../util/redact.ts";
import { HISTORY_MAX_BYTES, quotaClass, RateBudget, REPORT_QUOTAS, type QuotaClass, type ReportQuota } from "./quotas.ts";

export class HubError extends Error {
  constructor(
    readonly status: 400 | 403 | 413 | 429,
    message: string,
  ) {
    super(message);
  }
}

export const BUILD_ID = /^[A-Za-z0-9_-]{8,64}$/;
const MAX_BATCH = 1000;
const MAX_EVENTS_PER_BUILD = 50_000;
const MAX_STEPS = 5000;
/** Past its budget, a build may still store this many bytes of step states and its end. */
export const STATE_ALLOWANCE = 512 * 1024;

type Watcher = (event: HubEvent) => void;

export interface HubLimits {
  quotas?: Record<QuotaClass, ReportQuota>;
  /** The whole history's size in bytes: past it, the oldest builds go (read-only tokens' first). */
  historyMaxBytes?: number;
}

interface WatcherState {
  send: Watcher;
  disconnect: () => void;
  /** The last event id this watcher got. */
  cursor: number;
  /** Events that came while its replay was being read (undefined once live). */
  buffer?: HubEvent[];
}

export class BuildHub {
  /** Watchers, each with how to disconnect it when the server stops. */
  private readonly watchers = new Set<WatcherState>();

  private readonly quotas: Record<QuotaClass, ReportQuota>;
  readonly historyMaxBytes: number;
  private readonly rate = new RateBudget();
  /** The last event id handed to watchers: the next pump reads what was stored after it. */
  private published = 0;
  private pumping = false;
  private pumpAgain = false;
  private sweeper?: ReturnType<typeof setInterval>;

  constructor(
    readonly store: HistoryStore,
    private readonly metrics: Metrics,
    private readonly webhooks?: Webhooks,
    limits: HubLimits = {},
  ) {
    this.quotas = limits.quotas ?? REPORT_QUOTAS;
    this.historyMaxBytes = limits.historyMaxBytes ?? HISTORY_MAX_BYTES;
  }

  /** Starts from the events stored so far (watchers get what is stored from now on). */
  async start(sweepMs = 2000) {
    this.published = await this.store.lastEventId();
    if (!this.store.onEvents) return;
    // Another replica stored events: read them from the store, which is the source of truth.
    this.store.onEvents(() => void this.pump().catch(() => {}));
    // A notification can be missed (a dropped connection): the store is read now and then anyway.
    this.sweeper = setInterval(() => void this.pump().catch(() => {}), sweepMs);
    this.sweeper.unref();
  }

  /** Stops reading the store for other replicas' events. */
  stop() {
    clearInterval(this.sweeper);
  }

  /**
   * A report of `bytes` from `token` is admitted when its role's per-minute budget has room
   * (checked before the body is parsed: an over-budget token costs no parsing).
   */
  admit(token: string, role: Role, bytes: number) {
    const { perMinute } = this.quotas[quotaClass(role)];
    if (!this.rate.take(token, bytes, perMinute)) throw new HubError(429, `this token may report at most ${perMinute} bytes a minute; try again in a minute`);
  }

  /**
   * Takes a batch of one build's events from `token`; returns how many were new. What a build
   * stores is bounded in bytes (each field, the build, the token's builds, the whole history):
   * a build over its budget is refused (413); a token over its budget loses its oldest builds;
   * a history over its size loses its oldest builds, read-only tokens' first.
   */
  async report(build: string, token: string, body: unknown, role: Role = "rw", tokenName?: string): Promise<number> {
    if (!BUILD_ID.test(build)) throw new HubError(400, "a build id is 8 to 64 letters, digits, - or _");
    const list = (body as { events?: unknown } | null)?.events;
    if (!Array.isArray(list)) throw new HubError(400, 'the body must be {"events": [...]}');
    if (list.length > MAX_BATCH) throw new HubError(413, `at most ${MAX_BATCH} events per request`);
    // The token's name is the server's word, never the client's (parseEvent drops a tokenName sent).
    const events = list.map((raw, i) => parseEvent(raw, `events[${i}]`)).map((event) => (event.type === "build.started" && tokenName ? { ...event, tokenName } : event));
    const owner = await this.store.owner(build);
    if (owner !== undefined && owner !== token) throw new HubError(403, "this build was started with another token");
    let last = await this.store.lastSeq(build);
    const fresh: BuildEvent[] = [];
    for (const event of events) {
      if (event.seq <= last) continue; // sent before: taken already
      // build.started comes first, and only first.
      const first = owner === undefined && fresh.length === 0;
      if (first !== (event.type === "build.started")) {
        throw new HubError(400, first ? "a build's first event must be build.started" : `${event.seq}: the build has started already`);
      }
      fresh.push(event);
      last = event.seq;
    }
    if ((await this.store.eventCount(build)) + fresh.length > MAX_EVENTS_PER_BUILD) throw new HubError(413, `a build may report at most ${MAX_EVENTS_PER_BUILD} events`);
    const kept = await this.fit(build, role, fresh);
    await this.makeRoom(build, token, role, kept.reduce((sum, event) => sum + eventBytes(event), 0));
    const stored = await this.store.append(build, token, kept, role);
    await this.stored(stored);
    if ((await this.store.totalBytes()) > this.historyMaxBytes) await this.store.shrink({ maxBytes: this.historyMaxBytes, except: build });
    return stored.length;
  }

  /**
   * A build's events within its byte budget. Past the budget, steps still change state and the
   * build still finishes (the dashboard must not show it running forever), but without their
   * output and miss reasons, within an allowance for such small events; past that, 413.
   */
  private async fit(build: string, role: Role, events: BuildEvent[]): Promise<BuildEvent[]> {
    const { perBuild } = this.quotas[quotaClass(role)];
    const used = await this.store.buildBytes(build);
    const bytes = events.reduce((sum, event) => sum + eventBytes(event), 0);
    if (used + bytes <= perBuild) return events;
    // Output goes first: what it says is kept only while the build is within its budget.
    const lean = events.filter((event) => event.type !== "step.log").map((event) => {
      if (event.type !== "step.updated") return event;
      const { tail: _tail, reasons: _reasons, ...rest } = event;
      return rest;
    });
    const leanBytes = lean.reduce((sum, event) => sum + eventBytes(event), 0);
    if (used + leanBytes > perBuild + STATE_ALLOWANCE) {
      throw new HubError(413, `a build reported with a ${role === "ro" ? "read-only" : "read-write"} token may store at most ${perBuild} bytes (and ${STATE_ALLOWANCE} more of step states); this one has ${used} and sent ${leanBytes} more`);
    }
    return lean;
  }

  /** Frees the token's oldest builds for what it may add; refuses what does not fit. */
  private async makeRoom(build: string, token: string, role: Role, bytes: number) {
    const quota = this.quotas[quotaClass(role)];
    if ((await this.store.tokenBytes(token)) + bytes <= quota.perToken) return;
    await this.store.shrink({ maxBytes: quota.perToken - bytes, token, except: build });
    if ((await this.store.tokenBytes(token)) + bytes > quota.perToken) throw new HubError(413, `this token's builds may store at most ${quota.perToken} bytes`);
  }

  /**
   * What follows from events this server stored: metrics and webhooks here (once, on the
   * replica that took the report), watchers on every replica (through the store).
   */
  private async stored(events: HubEvent[]) {
    for (const event of events) await this.count(event);
    if (events.length) await this.pump();
  }

  private async count(event: HubEvent) {
    if (event.type === "step.updated" && (event.state === "executed" || event.state === "cached-local" || event.state === "cached-remote")) {
      this.metrics.buildSteps.inc({ status: event.state });
    }
    if (event.type !== "build.finished") return;
    this.metrics.builds.inc({ result: event.result });
    this.metrics.buildSeconds.observe({ result: event.result }, event.durationMs / 1000);
    if (!this.webhooks) return;
    const build = await this.store.get(event.build);
    if (build) await this.webhooks.publishBuildEnd(event.result === "failed", this.webhookBuild(build));
  }

  /** Where the dashboard is (`serve --public-url`, else the address it listens on): webhooks link builds there. */
  publicUrl?: string;

  /**
   * A build as a webhook tells it: as listed, with its dashboard page and, up front, what a
   * chat message shows (project, branch, commit, tags, and the failed step with its output).
   */
  private webhookBuild(build: BuildSummary & { steps: BuildStep[] }) {
    const { steps: _steps, token: _token, ...summary } = build;
    const url = this.publicUrl ? `${this.publicUrl.replace(/\/+$/, "")}/#/builds/${encodeURIComponent(build.id)}` : undefined;
    return defined({
      ...summary,
      url,
      project: build.project,
      branch: build.ci?.branch ?? build.git?.branch,
      commit: build.ci?.commit ?? build.git?.commit,
      tags: build.tags ?? [],
    });
  }

  /**
   * Hands watchers every event stored after the last one handed, in id order, read from the
   * store (whichever replica stored them). One pass at a time; a call during a pass makes
   * another pass follow, so nothing stored before a call is left unread.
   */
  async pump(): Promise<void> {
    if (this.pumping) {
      this.pumpAgain = true;
      while (this.pumping) await Bun.sleep(1);
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        for (;;) {
          const events = await this.store.eventsSince(this.published, 1000);
          for (const event of events) this.deliver(event);
          if (events.length) this.published = events.at(-1)!.id;
          if (events.length < 1000) break;
        }
      } while (this.pumpAgain);
    } finally {
      this.pumping = false;
    }
  }

  private deliver(event: HubEvent) {
    for (const watcher of this.watchers) {
      if (watcher.buffer) watcher.buffer.push(event);
      else if (event.id > watcher.cursor) {
        watcher.cursor = event.id;
        watcher.send(event);
      }
    }
  }

  /**
   * Watches every event stored after `since` (0: only new ones): the missed ones first, then
   * live ones as they come, with nothing lost or repeated in between. Returns the unsubscribe,
   * or "too-far-behind" when more than `maxReplay` were missed (the watcher reloads instead).
   */
  async watch(since: number, send: Watcher, disconnect: () => void = () => {}, maxReplay = 10_000): Promise<(() => void) | "too-far-behind"> {
    // Subscribed before the replay is read: what is handed out meanwhile waits in the buffer,
    // and the cursor drops what the replay already had.
    const watcher: WatcherState = { send, disconnect, cursor: since > 0 ? since : this.published, buffer: [] };
    this.watchers.add(watcher);
    if (since > 0) {
      const missed = await this.store.eventsSince(since, maxReplay + 1);
      if (missed.length > maxReplay) {
        this.watchers.delete(watcher);
        return "too-far-behind";
      }
      for (const event of missed) (watcher.cursor = event.id), send(event);
    }
    const buffered = watcher.buffer!;
    watcher.buffer = undefined;
    for (const event of buffered) if (event.id > watcher.cursor) (watcher.cursor = event.id), send(event);
    this.metrics.watchers.set(this.watchers.size);
    return () => {
      this.watchers.delete(watcher);
      this.metrics.watchers.set(this.watchers.size);
    };
  }

  /**
   * Ends the builds that stopped reporting (killed, or cut off) before `before`: each gets a
   * build.finished "failed" event, stored and sent like any other, so no dashboard shows a dead
   * build as running forever. Returns how many.
   */
  async expireStale(before: number): Promise<number> {
    const stale = await this.store.stale(before);
    for (const build of stale) {
      const now = Date.now();
      const event: BuildFinished = {
        type: "build.finished",
        seq: build.lastSeq + 1,
        time: now,
        result: "failed",
        error: "the build stopped reporting before it finished (killed, or cut off from this server)",
        durationMs: Math.max(0, now - build.started),
        executed: build.executed,
        cached: build.cached,
        savedMs: build.savedMs,
      };
      await this.stored(await this.store.append(build.id, build.token, [event]));
    }
    return stale.length;
  }

  /** Disconnects every watcher (the server is stopping; they reconnect to the next one). */
  disconnectAll() {
    for (const watcher of [...this.watchers]) watcher.disconnect();
    this.watchers.clear();
    this.metrics.watchers.set(0);
  }

  /** A different result offered for a step key that had one: the dashboard and webhooks hear of it. */
  async conflict(details: unknown) {
    await this.webhooks?.publish("cache.conflict", details);
  }
}

// ---- checking what a client sent

const fail = (where: string, message: string): never => {
  throw new HubError(400, `${where}: ${message}`);
};

/** Bytes the hub counts for an event: its JSON as stored. */
export const eventBytes = (event: BuildEvent) => Buffer.byteLength(JSON.stringify(event));

/** The first `max` bytes of UTF-8 text, never half a character. */
function clipBytes(value: string, max: number): string {
  if (Buffer.byteLength(value) <= max) return value;
  const clipped = Buffer.from(value).subarray(0, max).toString("utf8");
  // A character cut in two decodes as U+FFFD: drop it.
  return clipped.endsWith("\uFFFD") ? clipped.slice(0, -1) : clipped;
}

/**
 * A string field: credentials taken out (the history is shown to every read-only token), then
 * clipped to `maxBytes` of UTF-8.
 */
function text(value: unknown, where: string, maxBytes: number, optional = false): string | undefined {
  if (value === undefined && optional) return undefined;
  if (typeof value !== "string") return fail(where, "must be a string");
  // The pattern never needs more than a line: huge inputs are cut first (a bound on the work).
  return clipBytes(redactCredentials(value.length > 4 * maxBytes ? value.slice(0, 4 * maxBytes) : value), maxBytes);
}

/**
 * A chunk of a step's output: its last LOG_CHUNK_MAX characters (the end of what a step printed
 * says most), credentials taken out. Escape sequences stay: whoever shows it sanitizes it.
 */
function logText(value: unknown, where: string): string {
  if (typeof value !== "string") return fail(where, "must be a string");
  return redactCredentials(value.length > LOG_CHUNK_MAX ? value.slice(-LOG_CHUNK_MAX) : value);
}

function count(value: unknown, where: string, optional = false): number | undefined {
  if (value === undefined && optional) return undefined;
  if (!Number.isSafeInteger(value) || (value as number) < 0) return fail(where, "must be a whole number, 0 or more");
  return value as number;
}

/**
 * Lines of text, at most `maxLines` and `maxBytes` in all: the last ones kept (a failed step's
 * output ends with why it failed), each line at most 1000 bytes.
 */
function lines(value: unknown, where: string, maxLines: number, maxBytes: number): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) return fail(where, "must be a list of strings");
  const kept: string[] = [];
  let bytes = 0;
  const bad = value.findIndex((line) => typeof line !== "string");
  if (bad >= 0) fail(`${where}[${bad}]`, "must be a string");
  for (const line of value.slice(-maxLines).reverse()) {
    const clipped = text(line, where, 1000)!;
    bytes += Buffer.byteLength(clipped) + 4; // its quotes and comma in the JSON stored
    if (bytes > maxBytes) break;
    kept.unshift(clipped);
  }
  return kept;
}

/** An object of strings: at most `maxEntries`, keys 128 bytes, values 1 KiB, 8 KiB in all. */
function record(value: unknown, where: string, maxEntries: number): Record<string, string> {
  if (value === undefined) return {};
  if (typeof value !== "object" || value === null || Array.isArray(value)) return fail(where, "must be an object of strings");
  const entries = Object.entries(value);
  if (entries.length > maxEntries) fail(where, `at most ${maxEntries} entries`);
  const parsed = entries.map(([k, v]) => [text(k, where, 128)!, text(v, `${where}.${k}`, 1024)!]);
  if (Buffer.byteLength(JSON.stringify(parsed)) > 8192) fail(where, "at most 8 KiB in all");
  return Object.fromEntries(parsed);
}

/**
 * A list of strings kept whole and in order (a command line, tags): at most `maxItems`, each
 * at most 1 KiB, `maxBytes` in all (what is past the bound is dropped, and the list says so).
 */
function strings(value: unknown, where: string, maxItems: number, maxBytes: number): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) return fail(where, "must be a list of strings");
  const kept: string[] = [];
  let bytes = 0;
  for (const [i, item] of value.slice(0, maxItems).entries()) {
    const clipped = text(item, `${where}[${i}]`, 1024)!;
    bytes += Buffer.byteLength(clipped) + 4;
    if (bytes > maxBytes) return [...kept, "…"];
    kept.push(clipped);
  }
  return value.length > maxItems ? [...kept, "…"] : kept;
}

function gitMetadata(value: unknown, where: string): BuildStarted["git"] {
  if (value === undefined) return undefined;
  if (typeof value !== "object" || value === null || Array.isArray(value)) return fail(where, "must be an object");
  const g = value as Record<string, unknown>;
  if (g.dirty !== undefined && typeof g.dirty !== "boolean") fail(`${where}.dirty`, "must be true or false");
  return defined({
    repository: text(g.repository, `${where}.repository`, 1024, true),
    branch: text(g.branch, `${where}.branch`, 256, true),
    commit: text(g.commit, `${where}.commit`, 64, true),
    dirty: g.dirty as boolean | undefined,
  });
}

function parseEvent(raw: unknown, where: string): BuildEvent {
  if (typeof raw !== "object" || raw === null) return fail(where, "must be an object");
  const e = raw as Record<string, unknown>;
  const seq = count(e.seq, `${where}.seq`)!;
  if (seq < 1) fail(`${where}.seq`, "starts at 1");
  const base = { seq, time: count(e.time, `${where}.time`)! };
  switch (e.type) {
    case "build.started": {
      if (!Array.isArray(e.steps)) fail(`${where}.steps`, "must be a list");
      const steps = e.steps as unknown[];
      if (steps.length > MAX_STEPS) fail(`${where}.steps`, `at most ${MAX_STEPS}`);
      const ci = e.ci === undefined ? undefined : record(e.ci, `${where}.ci`, 8);
      if (ci && typeof ci.provider !== "string") fail(`${where}.ci.provider`, "must be a string");
      const who = {
        project: text(e.project, `${where}.project`, 200, true),
        git: gitMetadata(e.git, `${where}.git`),
        user: text(e.user, `${where}.user`, 128, true),
        tags: strings(e.tags, `${where}.tags`, 50, 512),
        command: strings(e.command, `${where}.command`, 200, 4096),
      };
      const started: BuildStarted = {
        type: "build.started",
        ...base,
        dockerfile: text(e.dockerfile, `${where}.dockerfile`, 1024)!,
        target: text(e.target, `${where}.target`, 256, true),
        platform: text(e.platform, `${where}.platform`, 64)!,
        host: text(e.host, `${where}.host`, 256)!,
        labels: record(e.labels, `${where}.labels`, 64),
        ...(ci ? { ci: ci as unknown as BuildStarted["ci"] } : {}),
        ...defined(who),
        steps: steps.map((s, i) => {
          const step = (typeof s === "object" && s !== null ? s : fail(`${where}.steps[${i}]`, "must be an object")) as Record<string, unknown>;
          return {
            id: text(step.id, `${where}.steps[${i}].id`, 256)!,
            stage: text(step.stage, `${where}.steps[${i}].stage`, 256)!,
            number: count(step.number, `${where}.steps[${i}].number`)!,
            name: text(step.name, `${where}.steps[${i}].name`, 1024)!,
          };
        }),
      };
      return started;
    }
    case "step.updated": {
      if (!(STEP_STATES as readonly unknown[]).includes(e.state)) fail(`${where}.state`, `must be one of ${STEP_STATES.join(", ")}`);
      const update: StepUpdated = {
        type: "step.updated",
        ...base,
        step: text(e.step, `${where}.step`, 256)!,
        state: e.state as StepUpdated["state"],
      };
      const durationMs = count(e.durationMs, `${where}.durationMs`, true);
      const savedMs = count(e.savedMs, `${where}.savedMs`, true);
      const layerSize = count(e.layerSize, `${where}.layerSize`, true);
      const reasons = lines(e.reasons, `${where}.reasons`, 20, 4096);
      const tail = lines(e.tail, `${where}.tail`, 50, 8192);
      const worker = text(e.worker, `${where}.worker`, 64, true);
      if (e.configOnly !== undefined && e.configOnly !== true) fail(`${where}.configOnly`, "must be true when given");
      return { ...update, ...defined({ durationMs, savedMs, layerSize, reasons, tail, worker }), ...(e.configOnly ? { configOnly: true as const } : {}) };
    }
    case "step.log":
      return { type: "step.log", ...base, step: text(e.step, `${where}.step`, 256)!, text: logText(e.text, `${where}.text`) };
    case "build.finished": {
      if (e.result !== "success" && e.result !== "failed") fail(`${where}.result`, "must be success or failed");
      const finished: BuildFinished = {
        type: "build.finished",
        ...base,
        result: e.result as BuildFinished["result"],
        durationMs: count(e.durationMs, `${where}.durationMs`)!,
        executed: count(e.executed, `${where}.executed`)!,
        cached: count(e.cached, `${where}.cached`)!,
        savedMs: count(e.savedMs, `${where}.savedMs`)!,
      };
      const image = text(e.image, `${where}.image`, 200, true);
      const context = text(e.context, `${where}.context`, 200, true);
      const error = text(e.error, `${where}.error`, 8000, true);
      return { ...finished, ...defined({ image, context, error }) };
    }
    default:
      return fail(`${where}.type`, "must be build.started, step.updated, step.log or build.finished");
  }
}

function defined<T extends Record<string, unknown>>(fields: T): Partial<T> {
  return Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined)) as Partial<T>;
}
