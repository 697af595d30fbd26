/**
 * The remote-execution queue and its secret relay, on each back end: leases, affinity, fair
 * share, cancelling, answers that come too late, and secrets that cross replicas. On PostgreSQL
 * every test runs against two queues on one database (two replicas): what one does, the other
 * sees; on SQLite (one server) both names are the same queue.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { generateKeyPairSync } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BACKENDS, type Backend } from "../../test/support/backends.ts";
import { blake3Hex } from "../hash/blake3.ts";
import { BloomFilter } from "../util/bloom.ts";
import { PgJobQueue } from "./jobs-pg.ts";
import { SqliteJobQueue, type JobQueue, type QueueOptions } from "./jobs.ts";
import { migrate, openPostgres } from "./pg.ts";
import { open, PgSecretRelay, seal } from "./secret-relay-pg.ts";
import { MemoryAgentRelay, MemorySecretRelay, type AgentAsk, type AgentRelay, type SecretRelay } from "./secret-relay.ts";
import { PgAgentRelay } from "./agent-relay-pg.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-jobs-"));
const opened: JobQueue[] = [];
afterAll(async () => {
  for (const queue of opened) await queue.close();
  rmSync(work, { recursive: true, force: true });
});
let stores = 0;
const key = (n: number) => blake3Hex(`key ${n}`);
const worker = (name: string, keys: string[] = []) => ({ name, labels: {}, holds: BloomFilter.of(keys) });

interface Replicas {
  /** Two replicas of one store (one queue twice on SQLite, which has no replicas). */
  a: JobQueue;
  b: JobQueue;
  relayA: SecretRelay;
  relayB: SecretRelay;
  agentsA: AgentRelay;
  agentsB: AgentRelay;
}

async function replicasOf(backend: Backend, options: QueueOptions = { leaseMs: 1000, maxAttempts: 2 }, clocks: (() => number)[] = []): Promise<Replicas> {
  const dir = join(work, `q${++stores}`);
  mkdirSync(dir);
  const url = await backend.db(dir);
  if (url === undefined) {
    const queue = new SqliteJobQueue(dir, options);
    opened.push(queue);
    const relay = new MemorySecretRelay((job) => queue.notify(job));
    const agents = new MemoryAgentRelay((job) => queue.notify(job));
    return { a: queue, b: queue, relayA: relay, relayB: relay, agentsA: agents, agentsB: agents };
  }
  const replica = async (clock?: () => number) => {
    const sql = openPostgres(url, 4);
    await migrate(sql);
    const queue = new PgJobQueue(sql, { ...options, ...(clock ? { clock } : {}) }, true);
    await queue.ready();
    opened.push(queue);
    return { queue, relay: new PgSecretRelay(sql, queue), agents: new PgAgentRelay(sql, queue) };
  };
  const [one, two] = [await replica(clocks[0]), await replica(clocks[1])];
  return { a: one.queue, b: two.queue, relayA: one.relay, relayB: two.relay, agentsA: one.agents, agentsB: two.agents };
}

for (const backend of BACKENDS) describe(`the job queue on ${backend.name}`, () => {
  test("a job goes to the worker that holds most of its steps; among equals, the oldest", async () => {
    const { a: queue, b: other } = await replicasOf(backend);
    const a = await queue.submit("alice", { n: 1 }, [key(1), key(2)], 1);
    const b = await queue.submit("alice", { n: 2 }, [key(3), key(4), key(5)], 2);
    expect((await queue.claim(worker("w1", [key(3), key(4)]), 10))!.id).toBe(b);
    expect(await other.claim(worker("w2"), 10)).toMatchObject({ id: a, definition: { n: 1 } });
    expect(await queue.claim(worker("w3"), 10)).toBeUndefined();
    expect((await other.jobs()).find((j) => j.id === b)).toMatchObject({ worker: "w1", affinity: 2, hints: 3, state: "running", attempts: 1, created: 2, started: 10 });
    expect((await other.workers()).map((w) => ({ name: w.name, running: w.running }))).toEqual([
      { name: "w1", running: [b] },
      { name: "w2", running: [a] },
      { name: "w3", running: [] },
    ]);
  });

  test("a job waits up to 2 s for the idle worker (asking any replica) that holds more of it", async () => {
    const { a, b } = await replicasOf(backend);
    expect(await a.claim(worker("holder", [key(7), key(8)]), 0)).toBeUndefined(); // idle, asking again soon
    const id = await b.submit("alice", {}, [key(7), key(8)], 1);
    expect(await b.claim(worker("stranger"), 100)).toBeUndefined();
    expect((await b.claim(worker("stranger"), 2002))!.id).toBe(id);
    expect(await a.depth()).toBe(0);
  });

  test("fair share: a submitter with builds running waits behind one with none", async () => {
    const { a: queue, b: other } = await replicasOf(backend);
    await queue.submit("flood", {}, [], 1);
    await queue.claim(worker("w1"), 2);
    await queue.submit("flood", {}, [], 3);
    const quiet = await other.submit("quiet", {}, [], 4);
    expect(await queue.depth()).toBe(2);
    expect((await other.claim(worker("w2"), 5))!.id).toBe(quiet);
  });

  test("a worker that stops heartbeating loses the job to another; its late answers change nothing", async () => {
    const { a: queue, b: other } = await replicasOf(backend);
    const id = await queue.submit("alice", {}, [], 0);
    const first = (await queue.claim(worker("w1"), 0))!;
    expect(await queue.heartbeat(id, first.lease, 500)).toBe("ok");
    const second = (await other.claim(worker("w2"), 2000))!; // w1's lease ran out at 1500
    expect(second.id).toBe(id);
    expect(await queue.heartbeat(id, first.lease, 2100)).toBe("lost");
    expect(await queue.holds(id, first.lease)).toBe(false);
    expect(await queue.appendEvents(id, first.lease, [{ type: "late" }])).toBe(false);
    expect(await queue.finish(id, first.lease, { result: { image: "wrong" } }, 2200)).toBe(false);
    expect(await other.appendEvents(id, second.lease, [{ type: "step" }])).toBe(true);
    expect(await queue.finish(id, second.lease, { result: { image: "right" } }, 2300)).toBe(true);
    expect(await queue.finish(id, second.lease, { result: { image: "twice" } }, 2400)).toBe(false);
    const followed = (await other.follow(id, 0))!;
    expect(followed).toMatchObject({ state: "succeeded", result: { image: "right" }, worker: "w2" });
    expect(followed.events).toEqual([
      { seq: 1, event: { type: "warning", message: "worker w1 stopped answering; the build goes to another worker" } },
      { seq: 2, event: { type: "step" } },
    ]);
    expect((await other.follow(id, 1))!.events.map((e) => e.seq)).toEqual([2]);
  });

  test("replicas expiring one lost lease at once tell its follower once and queue it once", async () => {
    const { a, b } = await replicasOf(backend);
    const id = await a.submit("alice", {}, [], 0);
    await a.claim(worker("w1"), 0);
    await Promise.all([a.expire(5000), b.expire(5000), a.expire(5000), b.expire(5000)]);
    expect((await b.follow(id, 0))!.events).toHaveLength(1);
    expect((await a.jobs()).find((j) => j.id === id)).toMatchObject({ state: "queued", attempts: 1 });
  });

  test("claims at once, on every replica, never take one job twice", async () => {
    const { a, b } = await replicasOf(backend, { leaseMs: 60_000 });
    const ids = new Set<string>();
    for (let i = 0; i < 6; i++) ids.add(await a.submit(`s${i % 3}`, { i }, [], i));
    const claims = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).claim(worker(`w${i}`), 100)));
    const taken = claims.filter((c) => c !== undefined).map((c) => c!.id);
    expect(taken.sort()).toEqual([...ids].sort());
    expect(await b.depth()).toBe(0);
  });

  test("a job that outlives every attempt fails, naming why", async () => {
    const { a: queue, b: other } = await replicasOf(backend);
    const id = await queue.submit("alice", {}, [], 0);
    await queue.claim(worker("w1"), 0);
    await other.claim(worker("w2"), 2000);
    await other.expire(4000);
    expect(await queue.follow(id, 0)).toMatchObject({ state: "failed", error: "every worker that took this job stopped answering" });
  });

  test("a finished job and its events are kept a day for late followers, then forgotten", async () => {
    const { a, b } = await replicasOf(backend);
    const id = await a.submit("alice", {}, [], 0);
    const claimed = (await a.claim(worker("w1"), 0))!;
    await a.appendEvents(id, claimed.lease, [{ type: "step" }]);
    await a.finish(id, claimed.lease, { result: {} }, 10);
    await b.expire(10 + 23 * 3600_000);
    expect((await a.follow(id, 0))!.events).toHaveLength(1);
    await b.expire(11 + 24 * 3600_000);
    expect(await a.follow(id, 0)).toBeUndefined();
    expect(await a.jobs()).toEqual([]);
  });

  test("a cancelled job its worker hands back, or stops answering for, ends cancelled and is forgotten a day later", async () => {
    const { a, b } = await replicasOf(backend);
    const handed = await a.submit("alice", {}, [], 0);
    const lost = await a.submit("alice", {}, [], 1);
    const first = (await a.claim(worker("w1"), 2))!;
    const second = (await b.claim(worker("w2"), 2))!;
    expect([first.id, second.id].sort()).toEqual([handed, lost].sort());
    const leaseOf = (id: string) => (first.id === id ? first : second).lease;
    await b.cancel(handed, "alice", 3);
    await b.cancel(lost, "alice", 3);
    expect(await a.release(handed, leaseOf(handed), 4)).toBe(true);
    await b.expire(5000); // the other lease ran out at 1002
    expect((await a.jobs()).map((j) => [j.state, j.finished])).toEqual([
      ["cancelled", 5000],
      ["cancelled", 4],
    ]);
    await b.expire(5001 + 24 * 3600_000);
    expect(await a.jobs()).toEqual([]);
  });

  test("a worker that stops hands its job back, for the next claim, without spending an attempt", async () => {
    const { a, b } = await replicasOf(backend);
    const id = await a.submit("alice", {}, [], 0);
    const claimed = (await a.claim(worker("w1"), 1))!;
    expect(await b.release(id, claimed.lease)).toBe(true);
    expect(await a.release(id, claimed.lease)).toBe(false);
    expect((await b.claim(worker("w2"), 2))!.id).toBe(id);
    expect((await a.jobs())[0]).toMatchObject({ attempts: 1, worker: "w2" });
  });

  test("a worker is idle or busy while heard from within the lease time (its claims, or its job's heartbeats), gone after", async () => {
    const { a, b } = await replicasOf(backend); // leases of 1 s
    await a.submit("alice", {}, [], 0);
    const claimed = (await a.claim(worker("busy"), 10))!;
    await a.claim(worker("idle"), 10);
    const states = async (now: number) => Object.fromEntries((await b.workers(now)).map((w) => [w.name, w.state]));
    expect(await states(500)).toEqual({ busy: "busy", idle: "idle" });
    // Running its job, a worker does not claim: its heartbeats say it is there.
    expect(await b.heartbeat(claimed.id, claimed.lease, 900)).toBe("ok");
    expect(await states(1500)).toEqual({ busy: "busy", idle: "gone" });
    expect(await states(1900)).toEqual({ busy: "gone", idle: "gone" });
  });

  test("a job names the hub build it is and the stage it builds", async () => {
    const { a, b } = await replicasOf(backend);
    const spread = await a.submit("alice", { version: 1, build: "build-spread-1", target: "deps" }, [], 0);
    const whole = await a.submit("alice", { version: 1 }, [], 1);
    const listed = new Map((await b.jobs()).map((j) => [j.id, j]));
    expect(listed.get(spread)).toMatchObject({ build: "build-spread-1", stage: "deps" });
    expect(listed.get(whole)!.build).toBeUndefined();
    expect(listed.get(whole)!.stage).toBeUndefined();
  });

  test("the submitter cancels: a queued job at once, a running one when its worker next heartbeats; nobody else can", async () => {
    const { a: queue, b: other } = await replicasOf(backend);
    const queued = await queue.submit("alice", {}, [], 0);
    const running = await queue.submit("alice", {}, [], 1);
    const claimed = (await queue.claim(worker("w1"), 2))!;
    expect(claimed.id).toBe(queued);
    expect(await other.cancel(running, "mallory")).toBe(false);
    expect(await other.cancel(running, "alice")).toBe(true);
    expect((await queue.follow(running, 0))!.state).toBe("cancelled");
    expect(await other.cancel(queued, "alice")).toBe(true);
    expect(await queue.heartbeat(queued, claimed.lease, 3)).toBe("cancelled");
    expect(await queue.finish(queued, claimed.lease, { error: "cancelled" }, 4)).toBe(true);
    expect((await other.follow(queued, 0))!.state).toBe("cancelled");
  });

  test("long polls on one replica wake for what they wait for when another replica changes it: work to claim, or their job", async () => {
    const { a, b } = await replicasOf(backend);
    const id = await b.submit("alice", {}, []);
    const claimed = (await b.claim(worker("w1")))!;
    let idleWoken = false;
    const idle = a.changed(60_000).then(() => (idleWoken = true));
    const follower = a.changed(60_000, id).then(() => "woken");
    await b.appendEvents(id, claimed.lease, [{ type: "step" }]);
    expect(await Promise.race([follower, Bun.sleep(4000).then(() => "still asleep")])).toBe("woken");
    await Bun.sleep(50);
    expect(idleWoken).toBe(false); // a job's progress is no work for an idle worker
    await b.submit("bob", {}, []);
    expect(await Promise.race([idle.then(() => "woken"), Bun.sleep(4000).then(() => "still asleep")])).toBe("woken");
  });

  test("a secret asked for through one replica is answered through the other: only the ids asked, once", async () => {
    const { a, relayA, relayB } = await replicasOf(backend);
    const job = await a.submit("alice", {}, []);
    expect(await relayA.answer(job, { token: "early" })).toBe(false); // nobody asks yet
    const asked = relayB.ask(job, ["token"], 10_000);
    let asks: string[] | undefined;
    for (let i = 0; i < 100 && !asks; i++) (asks = await relayA.asks(job)) ?? (await Bun.sleep(20));
    expect(asks).toEqual(["token"]);
    expect(await relayA.answer(job, { token: "s3cr3t", other: "not asked" })).toBe(true);
    expect(await asked).toEqual({ token: "s3cr3t" });
    expect(await relayA.answer(job, { token: "again" })).toBe(false);
    expect(await relayA.asks(job)).toBeUndefined();
    // Nobody answers: the worker hears so when its wait ends.
    expect(await relayB.ask(job, ["token"], 300)).toBeUndefined();
  });
  test("each worker's steps run and cached, from the builds it finished on any replica (config-only and skipped steps not counted)", async () => {
    const { a, b } = await replicasOf(backend);
    const steps = (...statuses: string[]) => statuses.map((status, i) => ({ id: `s/${i}`, status, ...(status === "config" ? { status: "cached-local", config_only: true } : {}) }));
    const finished = async (name: string, outcome: { result: unknown } | { error: string }) => {
      await a.submit("alice", {}, [], 1);
      const claimed = (await b.claim(worker(name), 2))!;
      expect(await b.finish(claimed.id, claimed.lease, outcome, 3)).toBe(true);
    };
    await finished("w1", { result: { steps: steps("config", "executed", "cached-local", "cached-remote", "skipped") } });
    await finished("w1", { result: { steps: steps("executed", "executed") } });
    await finished("w2", { result: { steps: steps("cached-remote") } });
    await finished("w2", { error: "the build failed" });
    await finished("w3", { result: { note: "a result without steps counts none" } });
    expect(Object.fromEntries(await a.stepCounts())).toEqual({ w1: { executed: 3, cachedLocal: 1, cachedRemote: 1 }, w2: { executed: 0, cachedLocal: 0, cachedRemote: 1 } });
  });
  test("an ssh agent message asked through one replica is answered through the other, once; in the database only sealed, and gone once read", async () => {
    const { a, agentsA, agentsB } = await replicasOf(backend);
    const job = await a.submit("alice", {}, []);
    const request = Buffer.from("\0\0\0\x05\x11agent-request-bytes").toString("base64");
    const replied = agentsB.ask(job, { agent: "default", conn: "c1", data: request }, 10_000);
    const waitForAsks = async (relay: AgentRelay) => {
      let asks: AgentAsk[] | undefined;
      for (let i = 0; i < 200 && !asks; i++) (asks = await relay.asks(job)) ?? (await Bun.sleep(20));
      return asks;
    };
    const [ask] = (await waitForAsks(agentsA))!;
    expect(ask).toMatchObject({ agent: "default", conn: "c1", data: request });
    // A replica that starts serving the follower later sees the same message.
    expect((await waitForAsks(agentsB))!.map((m) => m.id)).toEqual([ask.id]);
    const sql = a instanceof PgJobQueue ? a.sql : undefined;
    if (sql) {
      const rows = JSON.stringify(await sql`SELECT * FROM job_agent_asks`);
      expect(rows).toContain(ask.id);
      expect(rows).not.toContain(request);
      expect(rows).not.toContain("agent-request-bytes");
    }
    expect(await agentsA.answer("another-job", { [ask.id]: "cmVwbHk=" })).toBe(0);
    expect(await agentsB.answer(job, { [ask.id]: "cmVwbHk=" })).toBe(1);
    expect(await agentsA.answer(job, { [ask.id]: "YWdhaW4=" })).toBe(0);
    expect(await replied).toBe("cmVwbHk=");
    expect(await agentsA.asks(job)).toBeUndefined();
    if (sql) expect(await sql`SELECT * FROM job_agent_asks`).toEqual([]);
    // Nobody answers: the worker hears so when its wait ends.
    expect(await agentsB.ask(job, { agent: "default", conn: "c2", close: true }, 300)).toBeUndefined();
  });
});

// Replicas on hosts whose clocks disagree: only PostgreSQL has replicas (SQLite is one process).
for (const backend of BACKENDS.filter((b) => b.name === "postgres+s3")) {
  test(`replicas whose clocks disagree by an hour agree on leases and asks: they keep ${backend.name}'s time`, async () => {
    const hour = 3600_000;
    const { a: ahead, b: behind, relayA: relayAhead, relayB: relayBehind } = await replicasOf(backend, { leaseMs: 5000 }, [() => Date.now() + hour, () => Date.now() - hour]);
    const id = await behind.submit("alice", {}, []);
    const claimed = (await behind.claim(worker("w1")))!;
    await ahead.expire(); // an hour ahead, this replica would see the lease long gone
    expect(await behind.heartbeat(id, claimed.lease)).toBe("ok");
    expect((await ahead.jobs())[0]).toMatchObject({ state: "running", worker: "w1", attempts: 1 });
    // An ask made through the replica behind is still open for the one ahead.
    const asked = relayBehind.ask(id, ["token"], 10_000);
    let asks: string[] | undefined;
    for (let i = 0; i < 100 && !asks; i++) (asks = await relayAhead.asks(id)) ?? (await Bun.sleep(20));
    expect(asks).toEqual(["token"]);
    expect(await relayAhead.answer(id, { token: "v" })).toBe(true);
    expect(await asked).toEqual({ token: "v" });
  });
}

test("a relayed secret is sealed to the asking replica's key: no other key opens it, and it is not in the box in the clear", () => {
  const asker = generateKeyPairSync("x25519");
  const publicKey = asker.publicKey.export({ type: "spki", format: "der" }).toString("base64");
  const box = seal({ token: "s3cr3t-value" }, publicKey, "job-1", "ask-1");
  expect(JSON.stringify(box)).not.toContain("s3cr3t");
  expect(open(box, asker.privateKey, "job-1", "ask-1")).toEqual({ token: "s3cr3t-value" });
  expect(() => open(box, generateKeyPairSync("x25519").privateKey, "job-1", "ask-1")).toThrow();
  expect(() => open(box, asker.privateKey, "job-2", "ask-1")).toThrow(); // bound to its job and ask
});

