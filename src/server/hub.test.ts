import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BuildEvent } from "../report/events.ts";
import { createApp } from "./app.ts";
import { createLogger } from "../util/log.ts";
import { createParts, type ServerParts } from "./parts.ts";
import { startServer, type RunningServer } from "./server.ts";
import { BACKENDS } from "../../test/support/backends.ts";
import { SQL } from "bun";

const work = mkdtempSync(join(tmpdir(), "memobuild-hub-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const RW = "read-write-token";
const RO = "read-only-token";
const OTHER = "another-rw-token";
const tokens = [
  { token: RW, role: "rw" as const },
  { token: RO, role: "ro" as const },
  { token: OTHER, role: "rw" as const },
];
const quiet = createLogger({ MEMOBUILD_LOG: "error" });

for (const backend of BACKENDS) describe(`the build hub on ${backend.name}`, () => {
  let n = 0;
  const open: (ServerParts | RunningServer)[] = [];
  afterEach(async () => {
    for (const thing of open.splice(0)) await ("close" in thing ? thing.close() : thing.stop());
  });

  async function hubApp() {
    const dataDir = join(work, `hub${++n}`);
    const parts = await createParts({ dataDir, tokens, log: quiet, ...(await backend.options(dataDir)) });
    open.push(parts);
    const app = createApp(parts);
    const call = (method: string, path: string, options: { token?: string; body?: unknown; headers?: Record<string, string> } = {}) =>
      app.fetch(
        new Request(`http://hub.test${path}`, {
          method,
          body: options.body === undefined ? undefined : typeof options.body === "string" ? options.body : JSON.stringify(options.body),
          headers: { host: "hub.test", ...(options.token ? { authorization: `Bearer ${options.token}` } : {}), ...options.headers },
        }),
      );
    return { parts, app, call };
  }

  const started = (seq: number, extra: Partial<BuildEvent> = {}): BuildEvent => ({
    type: "build.started",
    seq,
    time: 1_000_000 + seq,
    dockerfile: "Dockerfile",
    target: "app",
    platform: "linux/amd64",
    host: "ci-7",
    labels: { team: "web" },
    ci: { provider: "github-actions", branch: "main", commit: "abc" },
    steps: [
      { id: "app/0", stage: "app", number: 1, name: "[app 1/3] FROM base" },
      { id: "app/1", stage: "app", number: 2, name: "[app 2/3] COPY . /src" },
      { id: "app/2", stage: "app", number: 3, name: "[app 3/3] RUN make" },
    ],
    ...extra,
  } as BuildEvent);

  /** A whole build: FROM cached (saved 4 s), COPY ran (why), RUN failed or ran. */
  function wholeBuild(result: "success" | "failed", extra: Partial<BuildEvent> = {}): BuildEvent[] {
    const t = 1_000_100;
    return [
      started(1, extra),
      { type: "step.updated", seq: 2, time: t, step: "app/0", state: "running" },
      { type: "step.updated", seq: 3, time: t + 5, step: "app/0", state: "cached-remote", durationMs: 5, savedMs: 4000 },
      { type: "step.updated", seq: 4, time: t + 6, step: "app/1", state: "running" },
      { type: "step.updated", seq: 5, time: t + 50, step: "app/1", state: "executed", durationMs: 44, layerSize: 1234, reasons: ["files changed: a.txt (content)"] },
      { type: "step.updated", seq: 6, time: t + 51, step: "app/2", state: "running" },
      result === "failed"
        ? { type: "step.updated", seq: 7, time: t + 900, step: "app/2", state: "failed", tail: ["make: *** [all] Error 2"] }
        : { type: "step.updated", seq: 7, time: t + 900, step: "app/2", state: "executed", durationMs: 849 },
      { type: "build.finished", seq: 8, time: t + 901, result, durationMs: 1001, executed: result === "failed" ? 1 : 2, cached: 1, savedMs: 4000, image: result === "success" ? `sha256:${"d".repeat(64)}` : undefined, error: result === "failed" ? "RUN make failed" : undefined } as BuildEvent,
    ];
  }

  const BUILD = "build-0001-aaaa";

  describe("reporting and reading builds", () => {
    test("a reported build is listed and read back with its steps, miss reasons, failed output and time saved", async () => {
      const { call } = await hubApp();
      const report = await call("POST", `/v1/builds/${BUILD}/events`, { token: RW, body: { events: wholeBuild("failed") } });
      expect(await report.json()).toEqual({ accepted: 8 });
      const list = (await (await call("GET", "/v1/builds", { token: RO })).json()) as { builds: Record<string, unknown>[]; total: number; lastEvent: number };
      expect(list.total).toBe(1);
      expect(list.lastEvent).toBe(8);
      // The failed step counts as a miss: 1 cached of 3 decided.
      expect(list.builds[0]).toMatchObject({ id: BUILD, result: "failed", failedStep: { number: 3, name: "[app 3/3] RUN make" }, executed: 1, cached: 1, hitRate: 1 / 3, savedMs: 4000, host: "ci-7", labels: { team: "web" }, error: "RUN make failed" });
      const build = (await (await call("GET", `/v1/builds/${BUILD}`, { token: RO })).json()) as { steps: Record<string, unknown>[] };
      expect(build.steps.map((s) => s.state)).toEqual(["cached-remote", "executed", "failed"]);
      expect(build.steps[0]).toMatchObject({ savedMs: 4000, started: 1_000_100 });
      expect(build.steps[1]).toMatchObject({ reasons: ["files changed: a.txt (content)"], layerSize: 1234, durationMs: 44 });
      expect(build.steps[2]).toMatchObject({ tail: ["make: *** [all] Error 2"] });
      expect((await call("GET", "/v1/builds/no-such-build", { token: RO })).status).toBe(404);
    });

    test("each step of a build run on a worker is read back with its worker", async () => {
      const { call } = await hubApp();
      const events = wholeBuild("success").map((e) => (e.type === "step.updated" && e.state !== "running" ? { ...e, worker: e.step === "app/2" ? "ci-2" : "ci-1" } : e));
      expect(await (await call("POST", `/v1/builds/${BUILD}/events`, { token: RO, body: { events } })).json()).toEqual({ accepted: 8 });
      const build = (await (await call("GET", `/v1/builds/${BUILD}`, { token: RO })).json()) as { steps: Record<string, unknown>[] };
      expect(build.steps.map((s) => s.worker)).toEqual(["ci-1", "ci-1", "ci-2"]);
    });

    test("a config-only step (FROM, ENV…) is shown as such and never counts as a miss or a hit", async () => {
      const { call } = await hubApp();
      // Started now: the panels look at the last 7 days.
      const events = wholeBuild("success", { time: Date.now() } as Partial<BuildEvent>).map((e) => (e.type === "step.updated" && e.step === "app/0" && e.state !== "running" ? { ...e, state: "executed", savedMs: undefined, configOnly: true } : e)) as BuildEvent[];
      expect((await call("POST", `/v1/builds/${BUILD}/events`, { token: RW, body: { events } })).status).toBe(200);
      const build = (await (await call("GET", `/v1/builds/${BUILD}`, { token: RO })).json()) as { steps: Record<string, unknown>[] };
      expect(build.steps.map((s) => [s.state, s.configOnly])).toEqual([["executed", true], ["executed", undefined], ["executed", undefined]]);
      const stats = (await (await call("GET", "/v1/stats", { token: RO })).json()) as { topMissed: { name: string }[]; topSavers: { name: string }[] };
      expect(stats.topMissed.map((m) => m.name).sort()).toEqual(["[app 2/3] COPY . /src", "[app 3/3] RUN make"]);
      const bad = { type: "step.updated", seq: 9, time: 1, step: "app/0", state: "executed", configOnly: "yes" };
      expect((await call("POST", `/v1/builds/${BUILD}/events`, { token: RW, body: { events: [bad] } })).status).toBe(400);
    });

    test("newest first, paged, and filtered by label, result and branch", async () => {
      const { call } = await hubApp();
      for (let i = 0; i < 5; i++) {
        const events = wholeBuild(i % 2 ? "failed" : "success", { time: 2_000_000 + i, labels: { n: String(i) }, ci: { provider: "ci", branch: i < 3 ? "main" : "dev" } } as Partial<BuildEvent>);
        expect((await call("POST", `/v1/builds/build-000${i}-xxxx/events`, { token: RW, body: { events } })).status).toBe(200);
      }
      const ids = async (query: string) => ((await (await call("GET", `/v1/builds${query}`, { token: RO })).json()) as { builds: { id: string }[] }).builds.map((b) => b.id.slice(9, 10));
      expect(await ids("")).toEqual(["4", "3", "2", "1", "0"]);
      expect(await ids("?per_page=2&page=2")).toEqual(["2", "1"]);
      expect(await ids("?result=failed")).toEqual(["3", "1"]);
      expect(await ids("?branch=dev")).toEqual(["4", "3"]);
      expect(await ids("?label=n=2")).toEqual(["2"]);
      expect(await ids("?label=n=2&result=failed")).toEqual([]);
      expect((await call("GET", "/v1/builds?result=maybe", { token: RO })).status).toBe(400);
    });

    test("filtered by project, user (or the token's name) and text; who built what is stored as reported", async () => {
      const { call } = await hubApp();
      const who = [
        { ci: undefined, project: "widget", user: "ana", git: { repository: "https://github.com/acme/widget.git", branch: "feature/x", commit: "1".repeat(40), dirty: true }, tags: ["widget:dev"], command: ["memobuild", "build", ".", "-t", "widget:dev"] },
        { ci: undefined, project: "gadget", user: "bo", command: ["memobuild", "build", "--target", "Test-Stage", "."] },
        { project: "widget", ci: { provider: "github-actions", branch: "main" } },
      ];
      for (const [i, extra] of who.entries()) {
        const events = wholeBuild("success", { time: 3_000_000 + i, ...extra } as Partial<BuildEvent>);
        expect((await call("POST", `/v1/builds/build-000${i}-who/events`, { token: i === 2 ? OTHER : RW, body: { events } })).status).toBe(200);
      }
      const ids = async (query: string) => ((await (await call("GET", `/v1/builds${query}`, { token: RO })).json()) as { builds: { id: string }[] }).builds.map((b) => b.id.slice(9, 10));
      expect(await ids("?project=widget")).toEqual(["2", "0"]);
      expect(await ids("?user=bo")).toEqual(["1"]);
      expect(await ids("?q=test-stage")).toEqual(["1"]);
      expect(await ids("?q=WIDGET:DEV")).toEqual(["0"]);
      expect(await ids("?branch=feature/x")).toEqual(["0"]); // a local build's branch is its checkout's
      expect(await ids("?branch=main&project=widget")).toEqual(["2"]);
      expect(await ids('?q="')).toEqual([]);
      const build = (await (await call("GET", "/v1/builds/build-0000-who", { token: RO })).json()) as Record<string, unknown>;
      const { ci: _ci, ...reported } = who[0];
      expect(build).toMatchObject(reported);
      // A client cannot name its token: only the server's token file does.
      const forged = wholeBuild("success", { tokenName: "admin" } as Partial<BuildEvent>);
      expect((await call("POST", "/v1/builds/build-forged-01/events", { token: RW, body: { events: forged } })).status).toBe(200);
      expect(((await (await call("GET", "/v1/builds/build-forged-01", { token: RO })).json()) as Record<string, unknown>).tokenName).toBeUndefined();
      const bad = wholeBuild("success", { git: { dirty: "yes" } } as unknown as Partial<BuildEvent>);
      const refused = await call("POST", "/v1/builds/build-bad-git-1/events", { token: RW, body: { events: bad } });
      expect(refused.status).toBe(400);
      expect(((await refused.json()) as { error: string }).error).toBe("events[0].git.dirty: must be true or false");
    });

    test("each project's finished builds of the last 30 days, oldest first: their trends (GET /v1/projects)", async () => {
      const { call } = await hubApp();
      const now = Date.now();
      const reports: [string, string | undefined, "success" | "failed", number][] = [
        ["build-0001-trend", "widget", "success", now - 3 * 3600_000],
        ["build-0002-trend", "widget", "failed", now - 2 * 3600_000],
        ["build-0003-trend", "gadget", "success", now - 3600_000],
        ["build-0004-trend", undefined, "success", now - 1000],
        ["build-0005-trend", "widget", "success", now - 40 * 86_400_000],
      ];
      for (const [id, project, result, time] of reports) {
        // The duration the build reports (1001 ms) is what counts, not its events' span (500 ms):
        // a remote build's first event comes only once its job is planned.
        const events = wholeBuild(result, { time, ...(project ? { project } : {}) } as Partial<BuildEvent>).map((e) => (e.type === "build.finished" ? { ...e, time: time + 500 } : e));
        expect((await call("POST", `/v1/builds/${id}/events`, { token: RW, body: { events } })).status).toBe(200);
      }
      const { projects } = (await (await call("GET", "/v1/projects", { token: RO })).json()) as { projects: { project: string; builds: { finished: number; durationMs: number; result: string; cached: number; failed: number }[] }[] };
      expect(projects.map((p) => p.project)).toEqual(["gadget", "widget"]);
      const widget = projects[1].builds;
      expect(widget.map((b) => [b.result, b.durationMs, b.failed])).toEqual([
        ["success", 1001, 0],
        ["failed", 1001, 1],
      ]);
      expect(widget[0].finished).toBeLessThan(widget[1].finished);
    });

    test("a build that ends leaves no step in progress, whatever the client sent: running ones were cancelled, queued ones skipped", async () => {
      const { call } = await hubApp();
      const events = wholeBuild("failed").filter((e) => !(e.type === "step.updated" && e.seq >= 4)).map((e, i) => ({ ...e, seq: i + 1 }));
      events.splice(2, 0, { type: "step.updated", seq: 0, time: 1_000_106, step: "app/1", state: "running" });
      const numbered = events.map((e, i) => ({ ...e, seq: i + 1 }));
      expect((await call("POST", `/v1/builds/${BUILD}/events`, { token: RW, body: { events: numbered } })).status).toBe(200);
      const build = (await (await call("GET", `/v1/builds/${BUILD}`, { token: RO })).json()) as { steps: { state: string }[] };
      expect(build.steps.map((s) => s.state)).toEqual(["cached-remote", "cancelled", "skipped"]);
    });

    test("a batch sent twice is taken once; a build's events come from the token that started it", async () => {
      const { call } = await hubApp();
      const events = wholeBuild("success");
      const post = (token: string, body: unknown) => call("POST", `/v1/builds/${BUILD}/events`, { token, body });
      expect(await (await post(RW, { events: events.slice(0, 4) })).json()).toEqual({ accepted: 4 });
      expect(await (await post(RW, { events: events.slice(2, 6) })).json()).toEqual({ accepted: 2 });
      const hijack = await post(OTHER, { events: events.slice(6) });
      expect(hijack.status).toBe(403);
      expect(await (await post(RW, { events })).json()).toEqual({ accepted: 2 });
      const build = (await (await call("GET", `/v1/builds/${BUILD}`, { token: RW })).json()) as { result: string };
      expect(build.result).toBe("success");
    });

    test("a read-only token may report and watch, never write the cache; no token may do neither", async () => {
      const { call } = await hubApp();
      expect((await call("POST", `/v1/builds/${BUILD}/events`, { token: RO, body: { events: wholeBuild("success") } })).status).toBe(200);
      expect((await call("POST", `/v1/builds/build-other-1/events`, { body: { events: wholeBuild("success") } })).status).toBe(401);
      expect((await call("GET", "/v1/builds")).status).toBe(401);
      expect((await call("PUT", `/v1/actions/${"a".repeat(64)}`, { token: RO, body: "{}" })).status).toBe(403);
    });

    test.each([
      ["not JSON", "{", 400, "not JSON"],
      ["no events list", { build: 1 }, 400, '{"events": [...]}'],
      ["a first event that is not build.started", { events: [{ type: "step.updated", seq: 1, time: 1, step: "x", state: "running" }] }, 400, "first event must be build.started"],
      ["an unknown state", { events: [started(1), { type: "step.updated", seq: 2, time: 1, step: "x", state: "exploded" }] }, 400, "events[1].state: must be one of"],
      ["a negative duration", { events: [started(1), { type: "step.updated", seq: 2, time: 1, step: "x", state: "executed", durationMs: -1 }] }, 400, "events[1].durationMs"],
      ["seq 0", { events: [{ ...started(1), seq: 0 }] }, 400, "events[0].seq"],
      ["an unknown type", { events: [{ type: "build.exploded", seq: 1, time: 1 }] }, 400, "events[0].type"],
      ["labels that are not strings", { events: [{ ...started(1), labels: { a: 1 } }] }, 400, "events[0].labels.a"],
      ["too many events at once", { events: Array.from({ length: 1001 }, (_, i) => started(i + 1)) }, 413, "at most 1000"],
      ["a second build.started", { events: [started(1), started(2)] }, 400, "has started already"],
    ])("a report with %s is refused, naming what is wrong, and stores nothing", async (_name, body, status, message) => {
      const { call, parts } = await hubApp();
      const response = await call("POST", `/v1/builds/${BUILD}/events`, { token: RW, body });
      expect(response.status).toBe(status);
      expect(((await response.json()) as { error: string }).error).toContain(message);
      expect(await parts.history.lastEventId()).toBe(0);
    });

    test("a report over 4 MiB is refused while it streams, declared or not", async () => {
      const { app } = await hubApp();
      const chunk = new Uint8Array(1024 * 1024).fill(32);
      let sent = 0;
      const endless = new ReadableStream<Uint8Array>({
        pull(controller) {
          sent++;
          if (sent > 64) controller.close();
          else controller.enqueue(chunk);
        },
      });
      const headers = { authorization: `Bearer ${RW}` };
      const response = await app.fetch(new Request(`http://hub.test/v1/builds/${BUILD}/events`, { method: "POST", body: endless, headers, duplex: "half" } as RequestInit));
      expect(response.status).toBe(413);
      expect(sent).toBeLessThan(10); // stopped reading, not buffered whole
      const declared = await app.fetch(new Request(`http://hub.test/v1/builds/${BUILD}/events`, { method: "POST", body: "{}", headers: { ...headers, "content-length": String(64 * 1024 * 1024) } }));
      expect(declared.status).toBe(413);
    });

    test("a bad build id is refused; long strings are clipped, not stored whole", async () => {
      const { call } = await hubApp();
      expect((await call("POST", "/v1/builds/..%2F..%2Fx/events", { token: RW, body: { events: [started(1)] } })).status).toBe(400);
      const long = "x".repeat(100_000);
      expect((await call("POST", `/v1/builds/${BUILD}/events`, { token: RW, body: { events: [started(1, { dockerfile: long, host: long } as Partial<BuildEvent>)] } })).status).toBe(200);
      const build = (await (await call("GET", `/v1/builds/${BUILD}`, { token: RW })).json()) as { dockerfile: string; host: string };
      expect(build.dockerfile.length).toBe(1024);
      expect(build.host.length).toBe(256);
    });
  });

  test("retention drops builds past the age limit and beyond the newest N, with their steps and events", async () => {
    const { parts } = await hubApp();
    for (let i = 0; i < 6; i++) await parts.hub.report(`build-keep-${i}`, "t", { events: wholeBuild("success", { time: 10_000 * (i + 1) } as Partial<BuildEvent>) });
    // Finished times are t + 901 = 1_001_001 for all; started times 10_000 … 60_000.
    expect(await parts.history.prune({ before: 0, keep: 4 })).toBe(2);
    expect((await parts.history.list({ page: 1, perPage: 50 })).builds.map((b) => b.id)).toEqual(["build-keep-5", "build-keep-4", "build-keep-3", "build-keep-2"]);
    expect(await parts.history.get("build-keep-0")).toBeUndefined();
    expect((await parts.history.eventsSince(0, 1000)).some((e) => e.build === "build-keep-0")).toBe(false);
    expect(await parts.history.prune({ before: 2_000_000, keep: 100 })).toBe(4);
    expect((await parts.history.list({ page: 1, perPage: 50 })).total).toBe(0);
  });

  // Only a shared store has other writers; the default's events are all this process's own.
  test.if(!backend.files)("an event another replica stored without a notification still reaches the watchers (the store is read now and then)", async () => {
    const { parts } = await hubApp();
    const seen: { build: string; type: string }[] = [];
    await parts.hub.watch(0, (e) => seen.push(e));
    const sql = new SQL((await backend.db(parts.storage.options.dataDir))!);
    try {
      await sql`INSERT INTO events (build, body) VALUES ('build-silent-0001', ${JSON.stringify(started(1))})`;
    } finally {
      await sql.close();
    }
    const deadline = Date.now() + 15_000;
    while (seen.length === 0 && Date.now() < deadline) await Bun.sleep(50);
    expect(seen).toMatchObject([{ build: "build-silent-0001", type: "build.started" }]);
  }, 20_000);

  test.if(!backend.files)("builds reported to two replicas at once reach a watcher on either whole, each event once, in the order of their ids", async () => {
    const { parts: one } = await hubApp();
    const dataDir = one.storage.options.dataDir;
    const two = await createParts({ dataDir, tokens, log: quiet, ...(await backend.options(dataDir)) });
    open.push(two);
    const seen: { id: number; build: string }[] = [];
    await one.hub.watch(0, (e) => seen.push(e));
    const builds = Array.from({ length: 12 }, (_, i) => `build-race-${String(i).padStart(4, "0")}`);
    await Promise.all(builds.map((build, i) => (i % 2 ? one : two).hub.report(build, "t", { events: wholeBuild("success") })));
    const deadline = Date.now() + 15_000;
    while (seen.length < builds.length * 8 && Date.now() < deadline) await Bun.sleep(50);
    const ids = seen.map((e) => e.id);
    expect(ids.length).toBe(builds.length * 8);
    expect(ids).toEqual([...new Set(ids)].sort((a, b) => a - b));
  }, 30_000);

  test("a build that stopped reporting is ended as failed, with an event watchers see", async () => {
    const { parts } = await hubApp();
    await parts.hub.report("build-dead-0001", "t", { events: wholeBuild("success").slice(0, 3) });
    await parts.hub.report("build-done-0001", "t", { events: wholeBuild("success") });
    const seen: { type: string; build: string }[] = [];
    await parts.hub.watch(0, (e) => seen.push(e));
    expect(await parts.hub.expireStale(Date.now() - 60_000)).toBe(0); // still fresh
    expect(await parts.hub.expireStale(Date.now() + 1)).toBe(1);
    expect(await parts.history.get("build-dead-0001")).toMatchObject({ result: "failed", cached: 1, savedMs: 4000, error: expect.stringContaining("stopped reporting") });
    expect((await parts.history.get("build-done-0001"))!.result).toBe("success");
    expect(seen).toMatchObject([{ type: "build.finished", build: "build-dead-0001" }]);
    expect(await parts.hub.expireStale(Date.now() + 1)).toBe(0);
  });

  describe("live events over a WebSocket", () => {
    async function server() {
      const dataDir = join(work, `ws${++n}`);
      const running = await startServer({ listen: "127.0.0.1:0", dataDir, tokens, log: quiet, ...(await backend.options(dataDir)) });
      open.push(running);
      return running;
    }

    /** Collects a socket's messages; resolves once `count` have arrived. */
    function watch(url: string, token: string | undefined, since = 0) {
      const socket = new WebSocket(`${url.replace("http", "ws")}/v1/events?since=${since}`, token ? { headers: { authorization: `Bearer ${token}` } } : undefined);
      const messages: { id: number; type: string; build: string; seq: number }[] = [];
      const waiters: (() => void)[] = [];
      socket.onmessage = (m) => {
        messages.push(JSON.parse(String(m.data)));
        for (const w of waiters.splice(0)) w();
      };
      const opened = new Promise<void>((resolve, reject) => {
        socket.onopen = () => resolve();
        socket.onerror = () => reject(new Error("the socket did not open"));
      });
      const until = async (count: number) => {
        const deadline = Date.now() + 10_000;
        while (messages.length < count) {
          if (Date.now() > deadline) throw new Error(`got ${messages.length} of ${count} messages`);
          await new Promise<void>((resolve) => (waiters.push(resolve), setTimeout(resolve, 200)));
        }
        return messages;
      };
      return { socket, messages, opened, until };
    }

    test("a watcher gets every event in order; one that reconnects with its last id gets what it missed", async () => {
      const running = await server();
      const first = watch(running.url, RO);
      await first.opened;
      const events = wholeBuild("success");
      await running.hub.report(BUILD, "t", { events: events.slice(0, 4) });
      await first.until(4);
      first.socket.close();
      await running.hub.report(BUILD, "t", { events: events.slice(4) });
      const lastSeen = first.messages.at(-1)!.id;
      const again = watch(running.url, RO, lastSeen);
      const all = await again.until(4);
      expect([...first.messages, ...all].map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      expect(all.map((m) => m.id)).toEqual([5, 6, 7, 8]);
      expect(all.every((m) => m.build === BUILD)).toBe(true);
      again.socket.close();
    });

    test("no token, no socket; a plain GET is told to upgrade", async () => {
      const running = await server();
      const plain = await fetch(`${running.url}/v1/events`, { headers: { authorization: `Bearer ${RO}` } });
      expect(plain.status).toBe(426);
      const denied = await fetch(`${running.url}/v1/events`, { headers: { upgrade: "websocket", connection: "Upgrade", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==", "sec-websocket-version": "13" } });
      expect(denied.status).toBe(401);
    });

    test("a watcher too far behind gets nothing replayed, and is told so (it reloads the lists instead)", async () => {
      const { parts } = await hubApp();
      for (let i = 0; i < 3; i++) await parts.hub.report(`build-far-${i}-x`, "t", { events: wholeBuild("success") });
      const messages: unknown[] = [];
      expect(await parts.hub.watch(1, (e) => messages.push(e), () => {}, 5)).toBe("too-far-behind");
      expect(messages).toEqual([]);
      const stop = await parts.hub.watch(20, (e) => messages.push(e), () => {}, 5);
      expect(typeof stop).toBe("function");
      expect(messages.length).toBe(4);
    });
  });

  describe("the dashboard", () => {
    test("needs a login when tokens are set; the login is an HttpOnly, SameSite=Strict session cookie", async () => {
      const { call } = await hubApp();
      const anonymous = await call("GET", "/");
      expect(await anonymous.text()).toContain('name="token"');
      const wrong = await call("POST", "/login", { body: "token=wrong-token-123", headers: { "content-type": "application/x-www-form-urlencoded" } });
      expect(wrong.status).toBe(401);
      expect(wrong.headers.get("set-cookie")).toBeNull();
      const right = await call("POST", "/login", { body: `token=${RO}`, headers: { "content-type": "application/x-www-form-urlencoded" } });
      expect(right.status).toBe(303);
      const cookie = right.headers.get("set-cookie")!;
      expect(cookie).toContain("HttpOnly");
      expect(cookie).toContain("SameSite=Strict");
      expect(cookie).not.toContain(RO);
      const session = cookie.split(";")[0];
      const page = await call("GET", "/", { headers: { cookie: session } });
      expect(await page.text()).toContain('src="/assets/dashboard.js"');
      expect((await call("GET", "/v1/builds", { headers: { cookie: session } })).status).toBe(200);
      expect((await call("GET", "/v1/stats", { headers: { cookie: session } })).status).toBe(200);
    });

    test("a login form longer than a form is refused unread", async () => {
      const { call } = await hubApp();
      const huge = await call("POST", "/login", { body: `token=${"x".repeat(100_000)}`, headers: { "content-type": "application/x-www-form-urlencoded" } });
      expect(huge.status).toBe(413);
      expect(huge.headers.get("set-cookie")).toBeNull();
    });

    test("a session only reads, and only from the dashboard's own pages", async () => {
      const { call } = await hubApp();
      const login = await call("POST", "/login", { body: `token=${RW}`, headers: { "content-type": "application/x-www-form-urlencoded" } });
      const session = login.headers.get("set-cookie")!.split(";")[0];
      const blob = await call("PUT", `/v1/blobs/${"a".repeat(64)}`, { body: "x", headers: { cookie: session } });
      expect(blob.status).toBe(401);
      const report = await call("POST", `/v1/builds/${BUILD}/events`, { body: { events: [started(1)] }, headers: { cookie: session } });
      expect(report.status).toBe(401);
      const foreign = await call("GET", "/v1/builds", { headers: { cookie: session, origin: "https://evil.example" } });
      expect(foreign.status).toBe(401);
      const foreignLogin = await call("POST", "/login", { body: `token=${RW}`, headers: { "content-type": "application/x-www-form-urlencoded", origin: "https://evil.example" } });
      expect(foreignLogin.status).toBe(403);
      const loggedOut = await call("POST", "/logout", { headers: { cookie: session } });
      expect(loggedOut.status).toBe(303);
      expect((await call("GET", "/v1/builds", { headers: { cookie: session } })).status).toBe(401);
    });

    test("every asset is the server's own: no URL elsewhere, and a CSP that allows nothing else", async () => {
      const { call } = await hubApp();
      const page = await call("GET", "/");
      const csp = page.headers.get("content-security-policy")!;
      expect(csp).toContain("default-src 'none'");
      expect(csp).toContain("script-src 'self'");
      const script = await (await call("GET", "/assets/dashboard.js")).text();
      const style = await (await call("GET", "/assets/dashboard.css")).text();
      expect(script.length).toBeGreaterThan(1000);
      for (const text of [await page.text(), style]) expect(text).not.toMatch(/(https?:)?\/\/[a-z0-9.-]+\.[a-z]{2,}/i);
      // The script's only absolute URLs are the job links builds report (checked to be http(s)).
      expect(script).not.toMatch(/\b(import|fetch)\(\s*["'`]https?:/);
    });
  });

  describe("metrics", () => {
    test("builds by result and their duration are a counter and a histogram; requests have a latency histogram", async () => {
      const { call } = await hubApp();
      await call("POST", `/v1/builds/${BUILD}/events`, { token: RW, body: { events: wholeBuild("success") } });
      await call("POST", `/v1/builds/build-fail-1/events`, { token: RW, body: { events: wholeBuild("failed") } });
      const text = await (await call("GET", "/metrics", { token: RO })).text();
      for (const line of [
        "# TYPE memobuild_builds_total counter",
        'memobuild_builds_total{result="success"} 1',
        'memobuild_builds_total{result="failed"} 1',
        "# TYPE memobuild_build_duration_seconds histogram",
        'memobuild_build_duration_seconds_bucket{le="1",result="success"} 0',
        'memobuild_build_duration_seconds_bucket{le="5",result="success"} 1',
        'memobuild_build_duration_seconds_count{result="failed"} 1',
        'memobuild_build_steps_total{status="cached-remote"} 2',
        'memobuild_build_steps_total{status="executed"} 3',
        "# TYPE memobuild_http_request_duration_seconds histogram",
        "# TYPE memobuild_evictions_total counter",
      ]) {
        expect(text).toContain(line);
      }
      expect(text).toMatch(/memobuild_http_request_duration_seconds_count\{method="POST",route="builds"\} 2/);
    });
  });
});
