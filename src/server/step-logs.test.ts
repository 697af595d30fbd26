/**
 * Every step's output in the build hub: reported by the client as it comes (secrets masked
 * there), kept per step within a bound (the tail, when there was more), read at
 * GET /v1/builds/{id}/steps/{n}/log with no escape sequence of the build's, within the build's
 * byte budget, and gone with the build when the history's retention drops it.
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { STEP_LOG_MAX, type BuildEvent } from "../report/events.ts";
import { BuildReporter } from "../report/reporter.ts";
import { createApp } from "./app.ts";
import { createLogger } from "../util/log.ts";
import { createParts, type ServerParts } from "./parts.ts";
import { BACKENDS } from "../../test/support/backends.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-step-logs-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const RW = "step-logs-rw-token";
const RO = "step-logs-ro-token";
const BUILD = "build-logs-0001";

const started: BuildEvent = {
  type: "build.started",
  seq: 1,
  time: 1_000_000,
  dockerfile: "Dockerfile",
  platform: "linux/amd64",
  host: "ci-1",
  labels: {},
  steps: [
    { id: "app/0", stage: "app", number: 1, name: "[app 1/2] FROM base" },
    { id: "app/1", stage: "app", number: 2, name: "[app 2/2] RUN make" },
  ],
};

for (const backend of BACKENDS) describe(`step logs on ${backend.name}`, () => {
  let n = 0;
  const open: ServerParts[] = [];
  afterEach(async () => {
    for (const parts of open.splice(0)) await parts.close();
  });

  async function hub() {
    const dataDir = join(work, `hub${++n}`);
    const parts = await createParts({ dataDir, tokens: [{ token: RW, role: "rw" }, { token: RO, role: "ro" }], log: createLogger({ MEMOBUILD_LOG: "error" }), ...(await backend.options(dataDir)) });
    open.push(parts);
    const app = createApp(parts);
    const call = (method: string, path: string, token: string, body?: unknown) =>
      app.fetch(new Request(`http://hub.test${path}`, { method, headers: { host: "hub.test", authorization: `Bearer ${token}` }, body: body === undefined ? undefined : JSON.stringify(body) }));
    const report = async (events: BuildEvent[], token = RW, build = BUILD) => {
      const response = await call("POST", `/v1/builds/${build}/events`, token, { events });
      expect(response.status).toBe(200);
    };
    const log = (path: string) => call("GET", path, RO);
    return { parts, call, report, log };
  }

  test("a step's output is read back as it was printed, appended as it comes, terminal controls taken out", async () => {
    const { report, log } = await hub();
    await report([started, { type: "step.updated", seq: 2, time: 1, step: "app/1", state: "running" }, { type: "step.log", seq: 3, time: 2, step: "app/1", text: "compiling a.c\n" }]);
    const first = await log(`/v1/builds/${BUILD}/steps/2/log`);
    expect(first.headers.get("content-type")).toBe("text/plain; charset=utf-8");
    expect(decodeURIComponent(first.headers.get("memobuild-step")!)).toBe("[app 2/2] RUN make");
    expect(await first.text()).toBe("compiling a.c\n");
    expect(first.headers.get("memobuild-last-event")).toBe("3");
    await report([{ type: "step.log", seq: 4, time: 3, step: "app/1", text: "\x1b]2;pwned\x07\x1b[31mwarning\x1b[0m: b.c\n" }]);
    expect(await (await log(`/v1/builds/${BUILD}/steps/2/log`)).text()).toBe("compiling a.c\nwarning: b.c\n");
    // A step that printed nothing has an empty log; a step that is not there, and a build that is not, are 404.
    expect(await (await log(`/v1/builds/${BUILD}/steps/1/log`)).text()).toBe("");
    expect((await log(`/v1/builds/${BUILD}/steps/3/log`)).status).toBe(404);
    expect((await log("/v1/builds/build-not-here/steps/1/log")).status).toBe(404);
  });

  test("a step keeps its last STEP_LOG_MAX characters and says how many went before", async () => {
    const { report, log } = await hub();
    const line = (i: number) => `line ${String(i).padStart(6, "0")} ${"x".repeat(50)}\n`;
    const events: BuildEvent[] = [started];
    let all = "";
    for (let chunk = 0; chunk < 6; chunk++) {
      let text = "";
      for (let i = chunk * 1000; i < (chunk + 1) * 1000; i++) text += line(i);
      all += text;
      events.push({ type: "step.log", seq: events.length + 1, time: 2, step: "app/1", text });
    }
    await report(events);
    const body = await (await log(`/v1/builds/${BUILD}/steps/2/log`)).text();
    const cut = all.length - STEP_LOG_MAX;
    expect(cut).toBeGreaterThan(0);
    expect(body).toBe(`[… ${cut} characters of earlier output not kept …]\n${all.slice(-STEP_LOG_MAX)}`);
    expect(body).toEndWith(line(5999));
  });

  test("a build over its budget keeps its states and drops its output; retention drops its logs with it", async () => {
    const { parts, report, log } = await hub();
    const big = "y".repeat(60_000) + "\n";
    const events: BuildEvent[] = [started];
    // A read-only token's build may hold 2 MiB: 40 such chunks are more.
    for (let i = 0; i < 40; i++) events.push({ type: "step.log", seq: events.length + 1, time: 2, step: "app/1", text: big });
    events.push({ type: "step.updated", seq: events.length + 1, time: 3, step: "app/1", state: "executed", durationMs: 5 });
    for (const batch of [events.slice(0, 20), events.slice(20)]) await report(batch, RO, "build-logs-ro-1");
    const build = (await (await log("/v1/builds/build-logs-ro-1")).json()) as { steps: { state: string }[] };
    expect(build.steps[1].state).toBe("executed");
    const kept = await (await log("/v1/builds/build-logs-ro-1/steps/2/log")).text();
    expect(kept.length).toBeGreaterThan(0);
    expect(kept.length).toBeLessThanOrEqual(STEP_LOG_MAX + 100);
    expect(await parts.history.buildBytes("build-logs-ro-1")).toBeLessThan(2 * 1024 * 1024 + 512 * 1024);

    expect(await parts.history.prune({ before: Number.MAX_SAFE_INTEGER, keep: 0 })).toBe(1);
    expect((await log("/v1/builds/build-logs-ro-1/steps/2/log")).status).toBe(404);
    expect(await parts.history.stepLog("build-logs-ro-1", "app/1")).toBeUndefined();
  });

  test("the client masks its secrets' values before the output leaves; the hub shows them masked", async () => {
    const { call, log } = await hub();
    const secret = "s3cr3t-value-42";
    const reporter = new BuildReporter(
      async (id, events) => (await call("POST", `/v1/builds/${id}/events`, RW, { events })).ok,
      { dockerfile: "Dockerfile", platform: "linux/amd64", host: "dev", labels: {} },
      { intervalMs: 5, secrets: [Buffer.from(`${secret}\nsecond-line-of-it\n`)] },
    );
    reporter.sink({ type: "plan", target: "app", steps: started.type === "build.started" ? started.steps : [] });
    reporter.sink({ type: "start", step: "app/1", number: 2 });
    reporter.sink({ type: "output", step: "app/1", number: 2, line: `token=${secret} and second-line-of-it` });
    reporter.sink({ type: "output", step: "app/1", number: 2, line: "done" });
    reporter.sink({ type: "done", step: "app/1", number: 2, status: "executed", durationMs: 3 });
    await reporter.finish({ result: "success" });
    const text = await (await log(`/v1/builds/${reporter.id}/steps/2/log`)).text();
    expect(text).toBe("token=**** and ****\ndone\n");
  });
});
