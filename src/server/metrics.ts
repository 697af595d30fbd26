/**
 * GET /metrics in the Prometheus text format, through prom-client (it works inside the compiled
 * binary, and gets histograms and escaping right). Every metric the server exports is declared
 * here, once, with its type: counters only go up, gauges are read from storage at scrape time.
 */
import { Counter, Gauge, Histogram, Registry, type Metric } from "prom-client";

/** One method and route's observations: counts per bucket (not cumulative), their sum and count. */
interface Observations {
  labels: { method: string; route: string };
  buckets: number[];
  sum: number;
  count: number;
}

/**
 * Request durations by method and route, rendered by the registry exactly as a prom-client
 * Histogram is. It is its own class for one reason: prom-client's `observe` checks and hashes
 * its labels on every call (about 0.4 µs, a sixth of the JavaScript time of a 4 KiB blob hit
 * in a CPU profile), while `series` here resolves them once and an observation is then a
 * bucket search and two additions.
 */
export class RequestHistogram {
  readonly type = "histogram";
  readonly aggregator = "sum";
  readonly name: string;
  readonly help: string;
  private readonly bounds: number[];
  private readonly all = new Map<string, Observations>();

  constructor(options: { name: string; help: string; buckets: number[]; registry: Registry }) {
    this.name = options.name;
    this.help = options.help;
    this.bounds = options.buckets;
    options.registry.registerMetric(this as unknown as Metric);
  }

  observe(labels: { method: string; route: string }, seconds: number) {
    this.series(labels.method, labels.route).observe(seconds);
  }

  /** The observer of one method and route, to keep where the same pair is observed again and again. */
  series(method: string, route: string): { observe(seconds: number): void } {
    const key = `${method} ${route}`;
    let entry = this.all.get(key);
    if (!entry) this.all.set(key, (entry = { labels: { method, route }, buckets: this.bounds.map(() => 0), sum: 0, count: 0 }));
    const { bounds } = this;
    const into = entry;
    return {
      observe(seconds) {
        let i = 0;
        while (i < bounds.length && seconds > bounds[i]) i++;
        if (i < bounds.length) into.buckets[i]++;
        into.sum += seconds;
        into.count++;
      },
    };
  }

  reset() {
    this.all.clear();
  }

  /** What prom-client's Histogram gives the registry: cumulative buckets, +Inf, _sum and _count per series. */
  async get() {
    const values = [...this.all.values()].flatMap(({ labels, buckets, sum, count }) => {
      let below = 0;
      const bucket = (le: number | string, value: number) => ({ labels: { le }, sharedLabels: labels, value, metricName: `${this.name}_bucket` });
      return [
        ...this.bounds.map((le, i) => bucket(le, (below += buckets[i]))),
        bucket("+Inf", count),
        { labels: {}, sharedLabels: labels, value: sum, metricName: `${this.name}_sum` },
        { labels: {}, sharedLabels: labels, value: count, metricName: `${this.name}_count` },
      ];
    });
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
}

export class Metrics {
  readonly registry = new Registry();
  /** Requests since the last traffic line (server.ts logs one a minute, then resets these). */
  readonly traffic = { requests: 0, errors: 0 };
  private readonly registers = [this.registry];
  /** Fixed-label counts of hot paths, added to their counters when /metrics is read (series()). */
  private readonly pending: { counter: Counter<string>; labels?: Record<string, string>; count: number }[] = [];

  readonly requests = new Counter({ name: "memobuild_requests_total", help: "HTTP requests by method, route and status", labelNames: ["method", "route", "status"], registers: this.registers });
  readonly requestSeconds = new RequestHistogram({
    name: "memobuild_http_request_duration_seconds",
    help: "Time to answer an HTTP request (to its headers), by method and route",
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
    registry: this.registry,
  });
  readonly hits = new Counter({ name: "memobuild_cache_hits_total", help: "Lookups that found what they asked for, by kind (blob, action)", labelNames: ["kind"], registers: this.registers });
  readonly misses = new Counter({ name: "memobuild_cache_misses_total", help: "Lookups that found nothing, by kind (blob, action)", labelNames: ["kind"], registers: this.registers });
  readonly bytesIn = new Counter({ name: "memobuild_bytes_in_total", help: "Bytes received in uploads", registers: this.registers });
  readonly bytesOut = new Counter({ name: "memobuild_bytes_out_total", help: "Bytes sent in blob and action bodies", registers: this.registers });
  readonly uploadRejections = new Counter({ name: "memobuild_upload_rejections_total", help: "Uploads refused, by reason", labelNames: ["reason"], registers: this.registers });
  readonly conflicts = new Counter({ name: "memobuild_action_conflicts_total", help: "Action uploads refused because the key already had another writer's different result", registers: this.registers });
  readonly unreproducible = new Counter({ name: "memobuild_unreproducible_steps_total", help: "Action uploads whose result differed from the one their own writer stored for the key (a step not reproducible)", registers: this.registers });
  readonly evictions = new Counter({ name: "memobuild_evictions_total", help: "Blobs and actions evicted to stay under --max-size", registers: this.registers });
  readonly builds = new Counter({ name: "memobuild_builds_total", help: "Builds reported as finished, by result", labelNames: ["result"], registers: this.registers });
  readonly buildSeconds = new Histogram({
    name: "memobuild_build_duration_seconds",
    help: "Duration of reported builds, by result",
    labelNames: ["result"],
    buckets: [1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200],
    registers: this.registers,
  });
  readonly buildSteps = new Counter({
    name: "memobuild_build_steps_total",
    help: "Steps of reported builds by how they were satisfied (executed = a miss; cached-local, cached-remote = hits)",
    labelNames: ["status"],
    registers: this.registers,
  });
  readonly webhookDeliveries = new Counter({
    name: "memobuild_webhook_deliveries_total",
    help: "Webhook delivery attempts by outcome (delivered, retry, failed = gave up)",
    labelNames: ["outcome"],
    registers: this.registers,
  });
  readonly storageBytes = new Gauge({ name: "memobuild_storage_bytes", help: "Bytes of blobs stored", registers: this.registers });
  readonly blobs = new Gauge({ name: "memobuild_blobs", help: "Blobs stored", registers: this.registers });
  readonly actions = new Gauge({ name: "memobuild_actions", help: "Actions stored", registers: this.registers });
  readonly watchers = new Gauge({ name: "memobuild_event_watchers", help: "WebSocket clients watching build events", registers: this.registers });
  readonly queueDepth = new Gauge({ name: "memobuild_queue_depth", help: "Builds waiting for a worker (remote execution)", registers: this.registers });
  readonly workers = new Gauge({ name: "memobuild_workers", help: "Workers heard from (asking for work, or heartbeating a job) within the lease time: idle or busy on the Workers page", registers: this.registers });
  readonly workerSteps = new Gauge({ name: "memobuild_worker_steps", help: "Steps of the builds each worker finished in the last 24 hours, by how they were satisfied (executed, cached-local, cached-remote)", labelNames: ["worker", "status"], registers: this.registers });
  readonly workerHitRatio = new Gauge({ name: "memobuild_worker_hit_ratio", help: "Share of the steps of each worker's builds in the last 24 hours that came from a cache", labelNames: ["worker"], registers: this.registers });
  readonly webhookQueue = new Gauge({ name: "memobuild_webhook_pending", help: "Webhook deliveries waiting to be sent or retried", registers: this.registers });

  constructor() {
    // Present from the start at zero, so an alert can watch them before the first event.
    this.conflicts.inc(0);
    this.unreproducible.inc(0);
    this.evictions.inc(0);
    for (const result of ["success", "failed"]) this.builds.inc({ result }, 0);
  }

  /** Each worker's steps and hit rate, as now (a worker no longer known drops out). */
  setWorkerHits(workers: { name: string; steps: { executed: number; cachedLocal: number; cachedRemote: number }; hitRate?: number }[]) {
    this.workerSteps.reset();
    this.workerHitRatio.reset();
    for (const { name, steps, hitRate } of workers) {
      this.workerSteps.set({ worker: name, status: "executed" }, steps.executed);
      this.workerSteps.set({ worker: name, status: "cached-local" }, steps.cachedLocal);
      this.workerSteps.set({ worker: name, status: "cached-remote" }, steps.cachedRemote);
      if (hitRate !== undefined) this.workerHitRatio.set({ worker: name }, hitRate);
    }
  }

  /**
   * One series of a counter, with labels fixed here, for a path taken tens of thousands of
   * times a second (blob hits): `add` is a plain addition, where the counter's own `inc` hashes
   * and checks its labels each time (a few hundred ns, a measurable share of a 4 KiB hit). The
   * count reaches the counter whenever /metrics is rendered, so every reading includes it.
   */
  series(counter: Counter<string>, labels?: Record<string, string>): { add(n?: number): void } {
    const entry = { counter, labels, count: 0 };
    this.pending.push(entry);
    return { add: (n = 1) => void (entry.count += n) };
  }

  render(): Promise<string> {
    for (const entry of this.pending) {
      if (entry.count === 0) continue;
      if (entry.labels) entry.counter.inc(entry.labels, entry.count);
      else entry.counter.inc(entry.count);
      entry.count = 0;
    }
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
