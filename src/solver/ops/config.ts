/**
 * Instructions that change only the image config (ENV, LABEL, USER, CMD, ARG...): keyed on their
 * parent and their text; nothing to execute.
 */
import { applyInstruction } from "../../image/config.ts";
import { baseInputs, nextState, type Operation } from "./operation.ts";

export const configOperation: Operation = async (scope) => {
  const next = nextState(scope);
  applyInstruction(next.config, scope.step.instruction, next.configState);
  // BuildKit records no history for ONBUILD (dockerfile2llb's dispatchOnbuild).
  return { inputs: baseInputs(scope), next, history: scope.step.instruction.kind !== "ONBUILD" };
};
