/** The remote-execution queue: leases, affinity, fair share, cancelling, and answers that come too late. */
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { blake3Hex } from "../hash/blake3.ts";
import { BloomFilter } from "../util/bloom.ts";
import { JobQueue } from "./jobs.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-jobs-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let queues = 0;
const key = (n: number) => blake3Hex(`key ${n}`);
const worker = (name: string, keys: string[] = []) => ({ name, labels: {}, holds: BloomFilter.of(keys) });

function queueIn(): JobQueue {
  const dir = join(work, `q${++queues}`);
  mkdirSync(dir);
  return new JobQueue(dir, { leaseMs: 1000, maxAttempts: 2 });
}

test("a job goes to the worker that holds most of its steps; among equals, the oldest", () => {
  const queue = queueIn();
  const a = queue.submit("alice", { n: 1 }, [key(1), key(2)], 1);
  const b = queue.submit("alice", { n: 2 }, [key(3), key(4), key(5)], 2);
  expect(queue.claim(worker("w1", [key(3), key(4)]), 10)!.id).toBe(b);
  expect(queue.claim(worker("w2"), 10)!.id).toBe(a);
  expect(queue.claim(worker("w3"), 10)).toBeUndefined();
  expect(queue.jobs().find((j) => j.id === b)).toMatchObject({ worker: "w1", affinity: 2, hints: 3, state: "running" });
});

test("fair share: a submitter with builds running waits behind one with none", () => {
  const queue = queueIn();
  queue.submit("flood", {}, [], 1);
  queue.claim(worker("w1"), 2);
  queue.submit("flood", {}, [], 3);
  const other = queue.submit("quiet", {}, [], 4);
  expect(queue.claim(worker("w2"), 5)!.id).toBe(other);
});

test("a worker that stops heartbeating loses the job to another; its late answers change nothing", () => {
  const queue = queueIn();
  const id = queue.submit("alice", {}, [], 0);
  const first = queue.claim(worker("w1"), 0)!;
  expect(queue.heartbeat(id, first.lease, 500)).toBe("ok");
  const second = queue.claim(worker("w2"), 2000)!; // w1's lease ran out at 1500
  expect(second.id).toBe(id);
  expect(queue.heartbeat(id, first.lease, 2100)).toBe("lost");
  expect(queue.appendEvents(id, first.lease, [{ type: "late" }])).toBe(false);
  expect(queue.finish(id, first.lease, { result: { image: "wrong" } }, 2200)).toBe(false);
  expect(queue.finish(id, second.lease, { result: { image: "right" } }, 2300)).toBe(true);
  const followed = queue.follow(id, 0)!;
  expect(followed).toMatchObject({ state: "succeeded", result: { image: "right" } });
  expect(followed.events.map((e) => e.event)).toEqual([{ type: "warning", message: "worker w1 stopped answering; the build goes to another worker" }]);
});

test("a job that outlives every attempt fails, naming why", () => {
  const queue = queueIn();
  const id = queue.submit("alice", {}, [], 0);
  queue.claim(worker("w1"), 0);
  queue.claim(worker("w2"), 2000);
  queue.expire(4000);
  expect(queue.follow(id, 0)).toMatchObject({ state: "failed", error: "every worker that took this job stopped answering" });
});

test("the submitter cancels: a queued job at once, a running one when its worker next heartbeats; nobody else can", () => {
  const queue = queueIn();
  const queued = queue.submit("alice", {}, [], 0);
  const running = queue.submit("alice", {}, [], 1);
  const claimed = queue.claim(worker("w1"), 2)!;
  expect(claimed.id).toBe(queued);
  expect(queue.cancel(running, "mallory")).toBe(false);
  expect(queue.cancel(running, "alice")).toBe(true);
  expect(queue.follow(running, 0)!.state).toBe("cancelled");
  expect(queue.cancel(queued, "alice")).toBe(true);
  expect(queue.heartbeat(queued, claimed.lease, 3)).toBe("cancelled");
  expect(queue.finish(queued, claimed.lease, { error: "cancelled" }, 4)).toBe(true);
  expect(queue.follow(queued, 0)!.state).toBe("cancelled");
});
