import { describe, expect, test } from "bun:test";
import type { StepResult } from "../solver/result.ts";
import type { SpreadJob } from "./spread-plan.ts";
import { mergeSteps } from "./spread-run.ts";

const step = (id: string, status: StepResult["status"], worker: string) => ({ id, stage: id.split("/")[0], status, worker }) as StepResult;
const image = { manifest: { blake3: "", digest: "", size: 0 }, config: { blake3: "", digest: "", size: 0 }, layers: [] };

describe("the steps of a build spread over workers", () => {
  const a: SpreadJob = { stage: "a", owns: ["a"], after: [], hints: [] };
  const final: SpreadJob = { owns: ["2"], after: ["a"], hints: [] };

  test("each step once, in the build's order, from the job that owns its stage", () => {
    const outcomes = new Map([
      [a, { image, steps: [step("a/0", "executed", "w1"), step("a/1", "executed", "w1"), step("2/0", "skipped", "w1")] }],
      [final, { image, steps: [step("a/0", "cached-local", "w2"), step("a/1", "cached-remote", "w2"), step("2/0", "executed", "w2")] }],
    ]);
    expect(mergeSteps([a, final], outcomes).map((s) => [s.id, s.status, s.worker])).toEqual([
      ["a/0", "executed", "w1"],
      ["a/1", "executed", "w1"],
      ["2/0", "executed", "w2"],
    ]);
  });

  test("a step the build's own job ran after all is recorded as run there", () => {
    const outcomes = new Map([
      [a, { image, steps: [step("a/0", "cached-remote", "w1"), step("a/1", "cached-remote", "w1"), step("2/0", "skipped", "w1")] }],
      [final, { image, steps: [step("a/0", "cached-local", "w2"), step("a/1", "executed", "w2"), step("2/0", "executed", "w2")] }],
    ]);
    expect(mergeSteps([a, final], outcomes).map((s) => [s.id, s.status, s.worker])).toEqual([
      ["a/0", "cached-remote", "w1"],
      ["a/1", "executed", "w2"],
      ["2/0", "executed", "w2"],
    ]);
  });
});
