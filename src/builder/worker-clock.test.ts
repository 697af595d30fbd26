import { expect, test } from "bun:test";
import { WorkerClock } from "./worker-clock.ts";

const at = (ms: number) => new Date(ms).toISOString();

test("events received in one batch keep the worker's spacing, moved onto this machine's clock", () => {
  const clock = new WorkerClock();
  // The worker's clock runs 1 h ahead; three steps started 0, 2 and 5 s into the job, seen together.
  const ahead = 3_600_000;
  expect(clock.place([at(ahead + 1000), at(ahead + 3000), at(ahead + 6000)], 6050)).toEqual([1050, 3050, 6050]);
  // A later batch, delivered more slowly, keeps the lag learned (it is not the clock that moved).
  expect(clock.place([at(ahead + 7000)], 7500)).toEqual([7050]);
  // A quicker delivery lowers the lag; no event is placed after it was received.
  expect(clock.place([at(ahead + 8000)], 8010)).toEqual([8010]);
});

test("an event without a valid time gets none (the receiver's clock is used)", () => {
  expect(new WorkerClock().place([undefined, "yesterday", 5], 100)).toEqual([undefined, undefined, undefined]);
});
