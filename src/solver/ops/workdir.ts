/**
 * WORKDIR: changes the config, and makes its directory (and missing parents) owned by the USER,
 * as BuildKit does; "/" makes no layer. The owner is part of the key.
 */
import type { Instruction } from "../../frontend/instructions.ts";
import { applyInstruction, workdirAfter } from "../../image/config.ts";
import { layerInputs, baseRequest, nextState, ownerOf, type Operation } from "./operation.ts";
import { configOperation } from "./config.ts";

export const workdirOperation: Operation<Extract<Instruction, { kind: "WORKDIR" }>> = async (scope, instruction) => {
  const parent = scope.parent!;
  if (workdirAfter(parent.config, instruction.path) === "/") return configOperation(scope, instruction);
  const owner = await ownerOf(scope, parent.config.config.User, "USER");
  const next = nextState(scope);
  applyInstruction(next.config, instruction, next.configState);
  return {
    inputs: { ...layerInputs(scope), owner: `${owner.uid}:${owner.gid}` },
    request: { ...baseRequest(scope, instruction), owner },
    next,
    history: true,
  };
};
