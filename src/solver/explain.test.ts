/** Why a step ran: an untrusted submitter's RUN that read its own mount or secret says it keyed apart. */
import { expect, test } from "bun:test";
import { explainStep } from "./explain.ts";
import type { StepInputs } from "./keys.ts";
import type { StepResult } from "./result.ts";

test("a RUN keyed apart for an untrusted submitter says so, and so does a trusted build after it", () => {
  const step = { id: "0/1", stage: "0", name: "[1/1] RUN x", instruction: "RUN --mount=type=cache,target=/c x", status: "executed", key: "k2" } as StepResult;
  const trusted: StepInputs = { parent: "p", instruction: "RUN --mount=type=cache,target=/c x", platform: "linux/amd64" };
  const untrusted: StepInputs = { ...trusted, untrusted: "job-private/0123456789ab" };
  const reasons = (before: StepInputs, now: StepInputs) => explainStep(step, now, new Map([["0/1", { key: "k1", inputs: before }]]), new Map()).reasons;
  const changed = "the untrusted submitter it reads a cache mount, secret or SSH agent of (keyed apart) changed: ";
  expect(reasons(trusted, untrusted)).toEqual([`${changed}none → job-private/0123456789ab`]);
  expect(reasons(untrusted, trusted)).toEqual([`${changed}job-private/0123456789ab → none`]);
});
