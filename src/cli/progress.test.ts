import { expect, test } from "bun:test";
import { jsonLine } from "./progress.ts";

test("--progress json: a worker's relayed event keeps the time it happened, as ISO text like every event's", () => {
  const line = JSON.parse(jsonLine({ type: "start", step: "s/1", time: Date.UTC(2026, 0, 2, 3, 4, 5) }));
  expect(line).toEqual({ time: "2026-01-02T03:04:05.000Z", type: "start", step: "s/1" });
  expect(Object.keys(line)[0]).toBe("time");
  expect(Date.parse(JSON.parse(jsonLine({ type: "plan" })).time)).not.toBeNaN();
});
