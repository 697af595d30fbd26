/**
 * The build hub under load: 20 dashboards watching while 10 builds report at once, against the
 * compiled server. No event is lost or reordered per build, a watcher that drops and reconnects
 * catches up, and the server's memory stays bounded over repeated rounds (figures printed).
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RemoteCache } from "../src/remote/client.ts";
import { BuildReporter } from "../src/report/reporter.ts";
import { startCacheServer } from "./support/server.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-hub-load-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const TOKEN = "hub-load-token";
const WATCHERS = 20;
const BUILDS = 10;
const STEPS = 150;

interface Seen {
  id: number;
  build: string;
  seq: number;
}

/** A dashboard: a WebSocket from `since`, recording what arrives. */
function watcher(url: string, since = 0) {
  const seen: Seen[] = [];
  const socket = new WebSocket(`${url.replace("http", "ws")}/v1/events?since=${since}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  socket.onmessage = (m) => {
    const event = JSON.parse(String(m.data)) as Seen;
    seen.push({ id: event.id, build: event.build, seq: event.seq });
  };
  const opened = new Promise<void>((resolve, reject) => {
    socket.onopen = () => resolve();
    socket.onerror = () => reject(new Error("a watcher could not connect"));
  });
  return { seen, socket, opened };
}

/** One build's progress through the real reporting client: plan, then each step start and done. */
async function reportBuild(url: string, n: number): Promise<string> {
  const remote = new RemoteCache({ url, token: TOKEN, warn: (m) => console.error(m) });
  const reporter = new BuildReporter((id, events) => remote.report(id, events), { dockerfile: `Dockerfile.${n}`, platform: "linux/amd64", host: `ci-${n}`, labels: { n: String(n) } }, { intervalMs: 25 });
  const steps = Array.from({ length: STEPS }, (_, i) => ({ id: `s/${i}`, stage: `stage-${i % 3}`, number: i + 1, name: `RUN step ${i}` }));
  reporter.sink({ type: "plan", target: "s", steps });
  for (const step of steps) {
    reporter.sink({ type: "start", step: step.id, number: step.number });
    if (step.number % 10 === 0) await Bun.sleep(1); // builds interleave
    reporter.sink({ type: "done", step: step.id, number: step.number, status: step.number % 4 ? "cached-local" : "executed", durationMs: 5, savedMs: 100 });
  }
  await reporter.finish({ result: n % 5 ? "success" : "failed" });
  return reporter.id;
}

const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024;
const EVENTS_PER_BUILD = 1 + 2 * STEPS + 1;

/** Every build's events arrived exactly once, in order, with nothing missing. */
function expectComplete(seen: Seen[], builds: string[]) {
  for (const build of builds) {
    const seqs = seen.filter((e) => e.build === build).map((e) => e.seq);
    expect(seqs.length).toBe(EVENTS_PER_BUILD);
    expect(seqs.every((seq, i) => seq === i + 1)).toBe(true);
  }
  const ids = seen.map((e) => e.id);
  expect(new Set(ids).size).toBe(ids.length);
}

test("20 dashboards, 10 builds at once: nothing lost or reordered, a reconnecting watcher catches up, memory bounded", async () => {
  const server = await startCacheServer(join(work, "data"), ["--token", TOKEN]);
  const pid = server.process.pid;
  const figures: string[] = [`server RSS at start ${rssMiB(pid).toFixed(0)} MiB`];
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(pid))), 50);
  try {
    const afterRound: number[] = [];
    for (let round = 1; round <= 3; round++) {
      const watchers = Array.from({ length: WATCHERS }, () => watcher(server.url));
      await Promise.all(watchers.map((w) => w.opened));
      const started = performance.now();
      const reporting = Promise.all(Array.from({ length: BUILDS }, (_, n) => reportBuild(server.url, n)));
      // One dashboard drops mid-round and comes back from the last event it saw.
      await Bun.sleep(100);
      const dropped = watchers[0];
      dropped.socket.close();
      await Bun.sleep(200);
      const builds = await reporting;
      const resumed = watcher(server.url, dropped.seen.at(-1)?.id ?? 0);
      await resumed.opened;
      const expected = BUILDS * EVENTS_PER_BUILD;
      const deadline = Date.now() + 30_000;
      const full = () => watchers.slice(1).every((w) => w.seen.length >= expected) && dropped.seen.length + resumed.seen.length >= expected;
      while (!full()) {
        if (Date.now() > deadline) throw new Error(`round ${round}: watchers have ${watchers.map((w) => w.seen.length).join(",")} of ${expected}`);
        await Bun.sleep(50);
      }
      const seconds = (performance.now() - started) / 1000;
      for (const w of watchers.slice(1)) expectComplete(w.seen, builds);
      expectComplete([...dropped.seen, ...resumed.seen], builds);
      for (const w of [...watchers, resumed]) w.socket.close();
      await Bun.sleep(300);
      afterRound.push(rssMiB(pid));
      figures.push(`round ${round}: ${expected} events x ${WATCHERS} watchers in ${seconds.toFixed(2)} s; RSS after ${afterRound.at(-1)!.toFixed(0)} MiB`);
    }
    figures.push(`peak RSS ${peak.toFixed(0)} MiB`);
    console.log(`hub load: ${figures.join("; ")}`);
    // Bounded: no round leaves much more behind than the one before it, and the peak stays small.
    expect(afterRound[2] - afterRound[1]).toBeLessThan(40);
    expect(peak).toBeLessThan(400);
    const metrics = await (await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
    expect(metrics).toContain(`memobuild_builds_total{result="success"} ${3 * 8}`);
    expect(metrics).toContain("memobuild_event_watchers 0");
  } finally {
    clearInterval(sampler);
    await server.stop();
  }
}, 180_000);
