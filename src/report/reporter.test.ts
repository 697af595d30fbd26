import { afterAll, afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RemoteCache } from "../remote/client.ts";
import { createLogger } from "../util/log.ts";
import { startServer, type RunningServer } from "../server/server.ts";
import { BuildReporter } from "./reporter.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-reporter-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const TOKEN = "reporter-token";
const servers: RunningServer[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) await server.stop();
});

const info = { dockerfile: "Dockerfile", platform: "linux/amd64", host: "laptop", labels: { team: "web" } };

function client(url: string, warnings: string[]) {
  const remote = new RemoteCache({ url, token: TOKEN, warn: (m) => warnings.push(m), attempts: 2 });
  return new BuildReporter((id, events) => remote.report(id, events), info, { intervalMs: 20, warn: (m) => warnings.push(m) });
}

/** What the solver says during a two-step build: plan, a cached FROM, a RUN that ran. */
function play(reporter: BuildReporter) {
  reporter.sink({ type: "plan", target: "app", steps: [{ id: "app/0", stage: "app", number: 1, name: "FROM x" }, { id: "app/1", stage: "app", number: 2, name: "RUN y" }] });
  reporter.sink({ type: "start", step: "app/0", number: 1 });
  reporter.sink({ type: "done", step: "app/0", number: 1, status: "cached-local", durationMs: 2, savedMs: 3000 });
  reporter.sink({ type: "context", digest: "c".repeat(64) });
  reporter.sink({ type: "start", step: "app/1", number: 2 });
  reporter.sink({ type: "output", step: "app/1", number: 2, line: "compiling" });
  reporter.sink({ type: "done", step: "app/1", number: 2, status: "executed", durationMs: 700, layerSize: 42, reasons: ["files changed: a (content)"] });
}

test("a build's progress reaches the hub as one build with its steps, totals and context", async () => {
  const server = await startServer({ listen: "127.0.0.1:0", dataDir: join(work, "a"), tokens: [{ token: TOKEN, role: "rw" }], log: createLogger({ MEMOBUILD_LOG: "error" }) });
  servers.push(server);
  const warnings: string[] = [];
  const reporter = client(server.url, warnings);
  play(reporter);
  await reporter.finish({ result: "success", image: `sha256:${"e".repeat(64)}` });
  expect(warnings).toEqual([]);
  const build = (await server.hub.store.get(reporter.id))!;
  expect(build).toMatchObject({ result: "success", target: "app", executed: 1, cached: 1, hitRate: 0.5, savedMs: 3000, context: "c".repeat(64), labels: { team: "web" } });
  expect(build.steps.map((s) => [s.id, s.state, s.durationMs])).toEqual([
    ["app/0", "cached-local", 2],
    ["app/1", "executed", 700],
  ]);
  expect(build.steps[1].reasons).toEqual(["files changed: a (content)"]);
  // Output goes as step.log events, before the state that ends its step.
  expect((await server.hub.store.eventsSince(0, 100)).map((e) => e.type)).toEqual(["build.started", ...Array(3).fill("step.updated"), "step.log", "step.updated", "build.finished"]);
  expect(await server.hub.store.stepLog(reporter.id, "app/1")).toMatchObject({ text: "compiling\n", cut: 0 });
});

test("a worker's relayed events (--builder) place the build and each step on the timeline when they happened, not when their batch arrived", async () => {
  const server = await startServer({ listen: "127.0.0.1:0", dataDir: join(work, "relayed"), tokens: [{ token: TOKEN, role: "rw" }], log: createLogger({ MEMOBUILD_LOG: "error" }) });
  servers.push(server);
  const reporter = client(server.url, []);
  // One batch, received now: the worker planned 10 s ago, its RUNs started 1 s and 3 s after that.
  const planned = Date.now() - 10_000;
  const steps = [1, 2].map((n) => ({ id: `app/${n}`, stage: "app", number: n, name: `RUN step ${n}` }));
  reporter.sink({ type: "plan", target: "app", steps, time: planned });
  reporter.sink({ type: "start", step: "app/1", number: 1, time: planned + 1000 });
  reporter.sink({ type: "done", step: "app/1", number: 1, status: "executed", durationMs: 2000, time: planned + 3000 });
  reporter.sink({ type: "start", step: "app/2", number: 2, time: planned + 3000 });
  reporter.sink({ type: "error", step: "app/2", number: 2, message: "exit code 1", time: planned + 3500 });
  await reporter.finish({ result: "failed", error: "exit code 1" });
  const build = (await server.hub.store.get(reporter.id))!;
  // The timeline's bars: each step's offset from the build's start, and its length.
  expect(build.steps.map((s) => [s.started! - build.started, s.durationMs])).toEqual([
    [1000, 2000],
    [3000, 500],
  ]);
});

test("steps that change only the config are reported but count neither as run nor as cached", async () => {
  const server = await startServer({ listen: "127.0.0.1:0", dataDir: join(work, "config-only"), tokens: [{ token: TOKEN, role: "rw" }], log: createLogger({ MEMOBUILD_LOG: "error" }) });
  servers.push(server);
  const reporter = client(server.url, []);
  reporter.sink({ type: "plan", target: "app", steps: [{ id: "app/0", stage: "app", number: 1, name: "FROM x" }, { id: "app/1", stage: "app", number: 2, name: "RUN y" }] });
  reporter.sink({ type: "done", step: "app/0", number: 1, status: "executed", durationMs: 0, configOnly: true });
  reporter.sink({ type: "done", step: "app/1", number: 2, status: "cached-local", durationMs: 1, savedMs: 10 });
  await reporter.finish({ result: "success" });
  const build = (await server.hub.store.get(reporter.id))!;
  expect(build).toMatchObject({ executed: 0, cached: 1, hitRate: 1 });
  // The step says so (the dashboard's live hit rate skips it), and no panel counts it as a miss.
  expect(build.steps.map((s) => [s.id, s.configOnly])).toEqual([["app/0", true], ["app/1", undefined]]);
  const events = await server.hub.store.eventsSince(0, 100);
  expect(events.find((e) => e.type === "step.updated" && e.step === "app/0")).toMatchObject({ state: "executed", configOnly: true });
  expect((await server.hub.store.stats(0)).topMissed).toEqual([]);
});

test("a failed build is reported with the failed step's output", async () => {
  const server = await startServer({ listen: "127.0.0.1:0", dataDir: join(work, "b"), tokens: [{ token: TOKEN, role: "rw" }], log: createLogger({ MEMOBUILD_LOG: "error" }) });
  servers.push(server);
  const reporter = client(server.url, []);
  reporter.sink({ type: "plan", target: "app", steps: [{ id: "app/1", stage: "app", number: 1, name: "RUN false" }] });
  reporter.sink({ type: "start", step: "app/1", number: 1 });
  reporter.sink({ type: "error", step: "app/1", number: 1, message: "exit code 1", tail: ["boom"] });
  await reporter.finish({ result: "failed", error: "Dockerfile:2: RUN false: exit code 1" });
  const build = (await server.hub.store.get(reporter.id))!;
  expect(build).toMatchObject({ result: "failed", error: "Dockerfile:2: RUN false: exit code 1" });
  expect(build.steps[0]).toMatchObject({ state: "failed", tail: ["boom"] });
});

test("with no server, the build is not held up: one warning, and the report is dropped", async () => {
  const warnings: string[] = [];
  const reporter = client("http://127.0.0.1:1", warnings);
  play(reporter);
  const started = performance.now();
  await reporter.finish({ result: "success" });
  expect(performance.now() - started).toBeLessThan(5000);
  expect(warnings.length).toBe(1);
  expect(warnings[0]).toContain("not answering");
});

test("a server that takes the connection and never answers costs at most the close timeout", async () => {
  const silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  try {
    const warnings: string[] = [];
    const remote = new RemoteCache({ url: `http://127.0.0.1:${silent.port}`, warn: (m) => warnings.push(m), attempts: 1 });
    const reporter = new BuildReporter((id, events) => remote.report(id, events), info, { intervalMs: 20, closeTimeoutMs: 300, warn: (m) => warnings.push(m) });
    play(reporter);
    const started = performance.now();
    await reporter.finish({ result: "success" });
    expect(performance.now() - started).toBeLessThan(2000);
    expect(warnings).toEqual(["the build report did not reach the remote cache in time; its history for this build is incomplete"]);
  } finally {
    silent.stop(true);
  }
});

test("when a build fails, every step ends final: the failed one failed, one running cancelled, the rest skipped; the failure is a miss in the hit rate", async () => {
  const server = await startServer({ listen: "127.0.0.1:0", dataDir: join(work, "final"), tokens: [{ token: TOKEN, role: "rw" }], log: createLogger({ MEMOBUILD_LOG: "error" }) });
  servers.push(server);
  const reporter = client(server.url, []);
  const steps = ["RUN cached", "COPY missing .", "RUN other-stage", "RUN later"].map((name, i) => ({ id: `s/${i}`, stage: i === 2 ? "b" : "a", number: i + 1, name }));
  reporter.sink({ type: "plan", steps });
  reporter.sink({ type: "start", step: "s/0", number: 1 });
  reporter.sink({ type: "done", step: "s/0", number: 1, status: "cached-local", durationMs: 1, savedMs: 50 });
  reporter.sink({ type: "start", step: "s/1", number: 2 });
  reporter.sink({ type: "start", step: "s/2", number: 3 });
  // A COPY fails without output of its own: the message is what it has.
  reporter.sink({ type: "error", step: "s/1", number: 2, message: "Dockerfile:3:1: COPY missing .: missing: not found in the build context" });
  await reporter.finish({ result: "failed", error: "Dockerfile:3:1: COPY missing .: missing: not found in the build context" });
  const build = (await server.hub.store.get(reporter.id))!;
  expect(build.steps.map((s) => s.state)).toEqual(["cached-local", "failed", "cancelled", "skipped"]);
  expect(build.hitRate).toBe(0.5);
  expect(build.failedStep).toEqual({ number: 2, name: "COPY missing .", output: ["Dockerfile:3:1: COPY missing .: missing: not found in the build context"] });
});
