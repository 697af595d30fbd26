/**
 * Reports a build to the build hub as it happens: progress events become build.started,
 * step.updated and build.finished, queued here and sent in batches by a timer, so the build
 * never waits for the network. When the hub does not take a batch (server away, too old), the
 * rest is dropped: the sender has already warned once.
 */
import { randomUUID } from "node:crypto";
import type { ProgressEvent, ProgressSink } from "../solver/progress.ts";
import { FINAL_STATES, type BuildEvent, type BuildFinished, type BuildInfo, type StepState, type StepUpdated } from "./events.ts";
import { StepLogBuffer, type StepLogLimits } from "./step-log.ts";

type Send = (buildId: string, events: BuildEvent[]) => Promise<boolean>;
type Unsent<T> = T extends BuildEvent ? Omit<T, "seq" | "time"> : never;

export interface ReporterOptions {
  /** How often queued events are sent. */
  intervalMs?: number;
  /** Events kept while the hub is slow; past this, step updates are dropped (never the end). */
  maxQueued?: number;
  /** How long close() waits for the last batches. */
  closeTimeoutMs?: number;
  warn?: (message: string) => void;
  /** Values masked in every step's output before it leaves (the build's --secret values). */
  secrets?: Iterable<Uint8Array | string>;
  logLimits?: StepLogLimits;
}

const BATCH = 200;
/** Bytes of events per request: well under what the hub takes in one (hub-routes.ts). */
const BATCH_BYTES = 1024 * 1024;

const eventSize = (event: BuildEvent) => (event.type === "step.log" ? event.text.length + 100 : 200);

/** A wait that never keeps the process alive by itself. */
const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, Math.max(1, ms)).unref?.());

export class BuildReporter {
  readonly id = randomUUID();
  private readonly queue: BuildEvent[] = [];
  private seq = 0;
  private started = false;
  private sending: Promise<void> | undefined;
  private stopped = false;
  private readonly timer: ReturnType<typeof setInterval>;
  private readonly begin = Date.now();
  private readonly totals = { executed: 0, cached: 0, savedMs: 0 };
  private context: string | undefined;
  private dropped = false;
  private readonly logs: StepLogBuffer;
  /** Each planned step's last state sent: at the end, none is left queued or running. */
  private readonly states = new Map<string, StepState>();
  /** When each step started running: a failed or cancelled step's bar on the timeline ends when it did. */
  private readonly startTimes = new Map<string, number>();

  constructor(
    private readonly send: Send,
    /** The target comes later, from the plan. */
    private readonly info: Omit<BuildInfo, "target">,
    private readonly options: ReporterOptions = {},
  ) {
    this.logs = new StepLogBuffer(options.secrets, options.logLimits);
    this.timer = setInterval(() => this.pump(), options.intervalMs ?? 200);
    this.timer.unref?.();
  }

  /** A progress sink: put it beside the one that prints. */
  readonly sink: ProgressSink = (event) => {
    switch (event.type) {
      case "plan":
        this.start(event);
        break;
      case "context":
        this.context = event.digest;
        break;
      case "start": {
        if (!event.step) break;
        // A worker's step started when the worker says, not when its batch of events arrived.
        const at = Math.max(event.time ?? Date.now(), this.startedAt);
        this.startTimes.set(event.step, at);
        this.step({ step: event.step, state: "running" }, at);
        break;
      }
      case "output":
        if (event.step && event.line !== undefined) this.logs.add(event.step, event.line);
        break;
      case "done":
        if (event.step) this.queueLogs(event.step);
        if (event.step && event.status && event.status !== "skipped") this.done(event);
        break;
      case "error":
        if (!event.step) break;
        this.queueLogs(event.step);
        this.step({ step: event.step, state: "failed", durationMs: this.runningFor(event.step, event.time), tail: event.tail?.map((line) => this.logs.mask(line)), reasons: event.message ? [this.logs.mask(event.message)] : undefined });
        break;
    }
  };

  private start(plan: ProgressEvent) {
    if (this.started) return;
    this.started = true;
    for (const step of plan.steps ?? []) this.states.set(step.id, "queued");
    // A worker's plan (--builder) started the build's timeline when the worker made it.
    this.startedAt = plan.time ?? Date.now();
    this.push({ type: "build.started", ...this.info, target: plan.target, steps: plan.steps ?? [] }, this.startedAt);
  }
  /** When the build.started event says the build started: no step starts before it on the timeline. */
  private startedAt = 0;

  private done(event: ProgressEvent) {
    const cached = event.status !== "executed";
    // Config-only steps (FROM, ENV, ARG...) never run anything: the totals count steps that do work.
    if (event.configOnly) {
      // neither a hit nor a miss
    } else if (cached) {
      this.totals.cached++;
      this.totals.savedMs += event.savedMs ?? 0;
    } else this.totals.executed++;
    this.step({
      step: event.step!,
      state: event.status as StepUpdated["state"],
      durationMs: event.durationMs,
      savedMs: cached ? event.savedMs : undefined,
      layerSize: event.layerSize,
      reasons: event.reasons,
      worker: event.worker,
      ...(event.configOnly ? { configOnly: true as const } : {}),
    });
  }

  private runningFor(step: string, until = Date.now()): number | undefined {
    const started = this.startTimes.get(step);
    return started === undefined ? undefined : Math.max(0, until - started);
  }

  /** A step's new state, as of `time` (a relayed event's own time; the hub takes a running step's as its start). */
  private step(update: Omit<StepUpdated, "type" | "seq" | "time">, time?: number) {
    if (this.states.has(update.step)) this.states.set(update.step, update.state);
    if (this.queue.length >= (this.options.maxQueued ?? 10_000)) {
      this.dropped = true;
      return;
    }
    this.push({ type: "step.updated", ...update }, time);
  }

  /** A step's output so far (all of it, tail included, when the step has `ended`), before its next state. */
  private queueLogs(ended?: string) {
    for (const chunk of this.logs.take(ended)) this.push({ type: "step.log", ...chunk });
  }

  /** The end of the build: its result, then the last batches (bounded wait). Once: a second call (an interrupted build also failing) waits for the first. */
  finish(outcome: { result: BuildFinished["result"]; image?: string; error?: string }, closeTimeoutMs?: number): Promise<void> {
    this.finishing ??= this.end(outcome, closeTimeoutMs);
    return this.finishing;
  }
  private finishing: Promise<void> | undefined;

  private async end(outcome: { result: BuildFinished["result"]; image?: string; error?: string }, closeTimeoutMs?: number): Promise<void> {
    if (!this.started) this.push({ type: "build.started", ...this.info, steps: [] });
    // Every step ends in a final state: one still running was cut short by another's failure,
    // one still queued never started (sent even past maxQueued: the end must be right).
    for (const [step, state] of this.states) {
      if (FINAL_STATES.includes(state)) continue;
      if (state === "running") this.queueLogs(step); // what it printed before it was cut short, tail included
      this.push({ type: "step.updated", step, ...(state === "running" ? { state: "cancelled", durationMs: this.runningFor(step) } : { state: "skipped" }) });
    }
    this.push({ type: "build.finished", ...outcome, context: this.context, durationMs: Date.now() - this.begin, ...this.totals });
    await this.close(closeTimeoutMs);
  }

  private push(event: Unsent<BuildEvent>, time = Date.now()) {
    if (this.stopped) return;
    this.queue.push({ ...event, seq: ++this.seq, time } as BuildEvent);
  }

  private pump() {
    if (this.sending || this.stopped) return;
    this.queueLogs();
    if (this.queue.length === 0) return;
    let count = 0;
    for (let bytes = 0; count < Math.min(BATCH, this.queue.length) && (count === 0 || bytes + eventSize(this.queue[count]) <= BATCH_BYTES); count++) bytes += eventSize(this.queue[count]);
    const batch = this.queue.splice(0, count);
    this.sending = this.send(this.id, batch)
      .catch(() => false)
      .then((taken) => {
        if (!taken) this.stop();
        this.sending = undefined;
      });
  }

  private stop() {
    this.stopped = true;
    this.queue.length = 0;
    clearInterval(this.timer);
  }

  /** Sends what is queued; gives up after closeTimeoutMs (the build is done, the report is late). */
  async close(timeoutMs = this.options.closeTimeoutMs ?? 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.stopped && (this.queue.length > 0 || this.sending)) {
      if (Date.now() > deadline) {
        this.options.warn?.("the build report did not reach the remote cache in time; its history for this build is incomplete");
        break;
      }
      this.pump();
      await Promise.race([this.sending ?? pause(10), pause(deadline - Date.now())]);
    }
    if (this.dropped) this.options.warn?.("the remote cache was too slow to take every step update; some are missing from its history");
    this.stop();
  }
}
