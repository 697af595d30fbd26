/** Which operation each instruction kind is. */
import type { Instruction } from "../../frontend/instructions.ts";
import { configOperation } from "./config.ts";
import { fromOperation } from "./from.ts";
import type { Operation, StepPlan, StepScope } from "./operation.ts";
import { runOperation } from "./run.ts";
import { transferOperation } from "./transfer.ts";
import { workdirOperation } from "./workdir.ts";

export type { BuildSettings, Operation, StepPlan, StepScope } from "./operation.ts";

type Kind = Instruction["kind"];

const operations: { [K in Kind]?: Operation<Extract<Instruction, { kind: K }>> } = {
  FROM: fromOperation,
  RUN: runOperation,
  COPY: transferOperation,
  ADD: transferOperation,
  WORKDIR: workdirOperation,
};

/** The step's plan, from the operation of its instruction's kind (config-only kinds share one). */
export function planStep(scope: StepScope): Promise<StepPlan> {
  const instruction = scope.step.instruction;
  // The table pairs each kind with the operation of that kind, which TypeScript cannot see through a lookup.
  const operation = (operations[instruction.kind] ?? configOperation) as Operation;
  return operation(scope, instruction);
}
