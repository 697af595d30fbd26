/** Which operation each instruction kind is. */
import type { Instruction } from "../../frontend/instructions.ts";
import { configOperation } from "./config.ts";
import { fromOperation } from "./from.ts";
import type { Operation } from "./operation.ts";
import { runOperation } from "./run.ts";
import { transferOperation } from "./transfer.ts";
import { workdirOperation } from "./workdir.ts";

export type { BuildSettings, Operation, StepPlan, StepScope } from "./operation.ts";

const operations: Partial<Record<Instruction["kind"], Operation>> = {
  FROM: fromOperation,
  RUN: runOperation,
  COPY: transferOperation,
  ADD: transferOperation,
  WORKDIR: workdirOperation,
};

export const operationFor = (kind: Instruction["kind"]): Operation => operations[kind] ?? configOperation;
