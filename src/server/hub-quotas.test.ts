/**
 * What a token can make the build hub store and show (issue 25): every field bounded in bytes,
 * a budget per build, per token and per minute, the history pruned by size (read-only tokens'
 * builds first), and nothing that looks like a credential stored or shown. Sizes, not timings.
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BuildEvent } from "../report/events.ts";
import { createApp } from "./app.ts";
import { STATE_ALLOWANCE, type HubLimits } from "./hub.ts";
import { createLogger } from "../util/log.ts";
import { createParts, type ServerParts } from "./parts.ts";
import { REPORT_QUOTAS } from "./quotas.ts";
import { SqliteHistory } from "./history.ts";
import { BACKENDS } from "../../test/support/backends.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-quotas-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const RW = "read-write-token";
const RO = "read-only-token";
const RO2 = "another-ro-token";
const tokens = [
  { token: RW, role: "rw" as const },
  { token: RO, role: "ro" as const },
  { token: RO2, role: "ro" as const },
];
for (const backend of BACKENDS) describe(`report quotas on ${backend.name}`, () => {
  let n = 0;
  const open: ServerParts[] = [];
  afterEach(async () => {
    for (const parts of open.splice(0)) await parts.close();
  });

  async function hubApp(hubLimits?: HubLimits, webhooks?: Parameters<typeof createParts>[0]["webhooks"]) {
    const dataDir = join(work, `hub${++n}`);
    const parts = await createParts({ dataDir, tokens, log: createLogger({ MEMOBUILD_LOG: "error" }), hubLimits, webhooks, ...(await backend.options(dataDir)) });
    open.push(parts);
    const app = createApp(parts);
    const call = (method: string, path: string, token: string | undefined, body?: unknown) =>
      app.fetch(
        new Request(`http://hub.test${path}`, {
          method,
          body: body === undefined ? undefined : JSON.stringify(body),
          headers: { host: "hub.test", "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
        }),
      );
    const report = (token: string, build: string, events: unknown[]) => call("POST", `/v1/builds/${build}/events`, token, { events });
    return { parts, call, report };
  }

  /** A build of `steps` steps; the Jenkins GIT_URL carries its token, as the attack campaign found. */
  const started = (steps: number, extra: Record<string, unknown> = {}) => ({
    type: "build.started",
    seq: 1,
    time: 1_000_000,
    dockerfile: "Dockerfile",
    platform: "linux/amd64",
    host: "ci-7",
    labels: {},
    ci: { provider: "jenkins", repository: "https://jenkins:11a2b3c4d5e6f7a8b9@git.example.com/org/repo.git", url: "https://ci.example/job/1/?token=s3cr3t-build-trigger" },
    steps: Array.from({ length: steps }, (_, i) => ({ id: `s/${i}`, stage: "s", number: i + 1, name: `[s ${i + 1}/${steps}] RUN step ${i}` })),
    ...extra,
  });
  /** A failed step with a 200 KB output tail: 50 lines of 4000 bytes. */
  const failedWithTail = (seq: number, step: number) => ({ type: "step.updated", seq, time: 1_000_000 + seq, step: `s/${step}`, state: "failed", tail: Array.from({ length: 50 }, (_, i) => `${i}:${"o".repeat(3996)}`) });

  describe("every field is bounded in bytes", () => {
    test("a 200 KB output tail is stored as its last 8 KiB; long names, reasons and labels are clipped or refused", async () => {
      const { report, call } = await hubApp();
      expect((await report(RO, "build-tail-0001", [started(2, { host: "é".repeat(10_000) }), failedWithTail(2, 0), { type: "step.updated", seq: 3, time: 2, step: "s/1", state: "executed", reasons: Array.from({ length: 20 }, () => "r".repeat(5000)) }])).status).toBe(200);
      const build = (await (await call("GET", "/v1/builds/build-tail-0001", RO)).json()) as { host: string; steps: { tail?: string[]; reasons?: string[] }[] };
      const tail = build.steps[0].tail!;
      expect(Buffer.byteLength(JSON.stringify(tail))).toBeLessThanOrEqual(8192);
      expect(tail.at(-1)).toStartWith("49:"); // the end of the output is what is kept
      expect(Buffer.byteLength(JSON.stringify(build.steps[1].reasons))).toBeLessThanOrEqual(4096);
      expect(Buffer.byteLength(build.host)).toBeLessThanOrEqual(256);
      expect(build.host).toMatch(/^é+$/); // never half a character
      const labels = Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`l${i}`, "v".repeat(1024)]));
      expect((await report(RO, "build-labels-01", [started(1, { labels })])).status).toBe(400);
    });
  });

  describe("a read-only token cannot fill the server", () => {
    test("the attack campaign's reports, scaled: a build past its byte budget keeps only step states, then is refused; reading it back is as small", async () => {
      // The minute's budget would stop this flood sooner (a test below): here only the build's counts.
      const { report, call, parts } = await hubApp({ quotas: { ro: { ...REPORT_QUOTAS.ro, perMinute: 1 << 30 }, rw: REPORT_QUOTAS.rw } });
      const build = "build-flood-0001";
      expect((await report(RO, build, [started(400)])).status).toBe(200);
      let seq = 2;
      for (let step = 0; step < 400; step += 10) {
        expect((await report(RO, build, Array.from({ length: 10 }, (_, i) => failedWithTail(seq + i, step + i)))).status).toBe(200);
        seq += 10;
      }
      const limit = REPORT_QUOTAS.ro.perBuild + STATE_ALLOWANCE;
      expect(await parts.history.buildBytes(build)).toBeLessThanOrEqual(limit);
      const read = (await (await call("GET", `/v1/builds/${build}`, RO)).json()) as { steps: { state: string; tail?: string[] }[] };
      expect(read.steps.every((s) => s.state === "failed")).toBe(true); // every state arrived
      expect(read.steps.at(-1)!.tail).toBeUndefined(); // the output past the budget did not
      expect(read.steps[0].tail!.length).toBeGreaterThan(0);
      expect(Buffer.byteLength(JSON.stringify(read))).toBeLessThanOrEqual(limit);
      // Still past it: refused, and the refusal says why.
      let refused: Response | undefined;
      for (let i = 0; i < 10_000 && !refused; i += 500) {
        const states = Array.from({ length: 500 }, (_, j) => ({ type: "step.updated", seq: seq + j, time: 1, step: `s/${(i + j) % 400}`, state: "running" }));
        const answer = await report(RO, build, states);
        if (answer.status === 200) seq += 500;
        else refused = answer;
      }
      expect(refused?.status).toBe(413);
      expect(String(((await refused!.json()) as { error: string }).error)).toContain(`at most ${REPORT_QUOTAS.ro.perBuild} bytes`);
      expect(await parts.history.buildBytes(build)).toBeLessThanOrEqual(limit);
      // The database holds each reported byte about twice (the event log and the build's rows).
      if (backend.name === "sqlite+directory") {
        const db = join(parts.storage.options.dataDir, "history.db");
        const other = new Database(db);
        other.exec("PRAGMA wal_checkpoint(TRUNCATE)"); // the WAL counts writes, not what is kept
        other.close();
        expect(statSync(db).size).toBeLessThan(2 * limit + 1024 * 1024);
      }
    });

    test("a token over its storage budget loses its own oldest builds; other tokens' builds stay", async () => {
      const quotas = { ro: { perBuild: 64 * 1024, perToken: 100 * 1024, perMinute: 1 << 30 }, rw: { ...REPORT_QUOTAS.rw, perMinute: 1 << 30 } };
      const { report, parts } = await hubApp({ quotas });
      expect((await report(RO2, "build-other-0001", [started(1), failedWithTail(2, 0)])).status).toBe(200);
      for (let i = 0; i < 20; i++) expect((await report(RO, `build-mine-${String(i).padStart(4, "0")}`, [started(1), failedWithTail(2, 0)])).status).toBe(200);
      expect(await parts.history.tokenBytes((await parts.history.owner("build-mine-0019"))!)).toBeLessThanOrEqual(100 * 1024);
      expect(await parts.history.get("build-mine-0000")).toBeUndefined();
      expect(await parts.history.get("build-mine-0019")).toBeDefined();
      expect(await parts.history.get("build-other-0001")).toBeDefined();
    });

    test("past its size the history loses its oldest builds, read-only tokens' first", async () => {
      const quotas = { ro: { ...REPORT_QUOTAS.ro, perMinute: 1 << 30 }, rw: { ...REPORT_QUOTAS.rw, perMinute: 1 << 30 } };
      const { report, parts } = await hubApp({ quotas, historyMaxBytes: 60 * 1024 });
      expect((await report(RW, "build-ci-000001", [started(1), failedWithTail(2, 0)])).status).toBe(200);
      for (let i = 0; i < 10; i++) expect((await report(RO, `build-pr-${String(i).padStart(6, "0")}`, [started(1), failedWithTail(2, 0)])).status).toBe(200);
      expect(await parts.history.totalBytes()).toBeLessThanOrEqual(60 * 1024);
      expect(await parts.history.get("build-ci-000001")).toBeDefined(); // older, but a read-write token's
      expect(await parts.history.get("build-pr-000000")).toBeUndefined();
      expect(await parts.history.get("build-pr-000009")).toBeDefined();
      // Retention prunes by size too.
      expect(await parts.history.prune({ before: 0, keep: 1000, maxBytes: 0 })).toBeGreaterThan(0);
      expect(await parts.history.totalBytes()).toBe(0);
    });

    test("a token past its bytes per minute is told 429; another token is not", async () => {
      // Each report is about 200 KB: two fit in the minute's 500 KiB, the third does not.
      const quotas = { ro: { ...REPORT_QUOTAS.ro, perMinute: 500 * 1024 }, rw: REPORT_QUOTAS.rw };
      const { report } = await hubApp({ quotas });
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) statuses.push((await report(RO, `build-rate-${String(i).padStart(4, "0")}`, [started(1), failedWithTail(2, 0)])).status);
      expect(statuses).toEqual([200, 200, 429, 429, 429]);
      expect((await report(RO2, "build-rate-other", [started(1), failedWithTail(2, 0)])).status).toBe(200);
    });
  });

  // Only an SQLite history can be from before byte budgets: PostgreSQL's schema began with them.
  if (backend.name === "sqlite+directory") test("a history from before byte budgets counts its builds' bytes when opened", async () => {
    const { report, parts } = await hubApp();
    expect((await report(RO, "build-legacy-01", [started(1), failedWithTail(2, 0)])).status).toBe(200);
    const bytes = await parts.history.buildBytes("build-legacy-01");
    expect(bytes).toBeGreaterThan(8192);
    const data = parts.storage.options.dataDir;
    await parts.close();
    open.splice(open.indexOf(parts), 1);
    const db = new Database(join(data, "history.db"));
    db.exec("ALTER TABLE builds DROP COLUMN bytes");
    db.close();
    const reopened = new SqliteHistory(data);
    try {
      expect(await reopened.buildBytes("build-legacy-01")).toBe(bytes);
    } finally {
      await reopened.close();
    }
  });

  describe("nothing that looks like a credential is stored or shown", () => {
    test("a repository URL's user:token@ and a URL's token parameter are gone before the build is stored", async () => {
      const { report, call, parts } = await hubApp();
      const name = "RUN curl -H 'Authorization: Bearer abcdefghijklmnop' https://deploy:hunter2hunter2@example.com/x";
      expect((await report(RO, "build-secret-01", [started(1, { steps: [{ id: "s/0", stage: "s", number: 1, name }] })])).status).toBe(200);
      const shown = await (await call("GET", "/v1/builds/build-secret-01", RO)).text();
      for (const secret of ["11a2b3c4d5e6f7a8b9", "s3cr3t-build-trigger", "abcdefghijklmnop", "hunter2hunter2"]) {
        expect(shown).not.toContain(secret);
        expect(JSON.stringify(await parts.history.eventsSince(0, 100))).not.toContain(secret);
      }
      expect(shown).toContain("https://git.example.com/org/repo.git");
    });

    test("GET /v1/stats names where webhooks go, never their URLs", async () => {
      const key = Buffer.alloc(32, 7);
      const hook = "https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX";
      const { report, call } = await hubApp(undefined, { targets: [{ url: hook, events: new Set(["build.finished"] as const) }], key, pollMs: 60_000, retryBaseMs: 60_000 });
      await report(RW, "build-hook-0001", [started(1), { type: "build.finished", seq: 2, time: 3, result: "success", durationMs: 1, executed: 1, cached: 0, savedMs: 0 } as BuildEvent]);
      for (const token of [RO, RW]) {
        const stats = await (await call("GET", "/v1/stats", token)).text();
        expect(stats).not.toContain("XXXXXXXX");
        expect(stats).toContain('"url":"https://hooks.slack.com"');
      }
    });
  });
});
