/**
 * RUN: keyed on its command, its environment (ENV and the build args in scope), its network
 * mode, the sandbox options, and what its mounts read: each context file a bind mount selects, and the key of each
 * stage (or digest of each image) a bind or cache mount names with `from=`.
 */
import { blake3Hex } from "../../hash/blake3.ts";
import { effectiveNetwork, type NetworkMode } from "../../executor/network.ts";
import type { Instruction } from "../../frontend/instructions.ts";
import { layerInputs, baseRequest, fileDigests, nextState, type Operation, type StepScope } from "./operation.ts";

type Run = Extract<Instruction, { kind: "RUN" }>;

export const runOperation: Operation<Run> = async (scope, instruction) => {
  const network = effectiveNetwork(instruction.network, scope.build.network);
  checkEntitlements(instruction, network, scope);
  // The network a RUN had decides what it could fetch: each mode keys apart. "none" stays out,
  // so keys made when every RUN was offline still mean what they did.
  const inputs = { ...layerInputs(scope), env: scope.step.runEnv, ...(network !== "none" ? { network } : {}), ...(scope.build.sandboxKey ? { sandbox: scope.build.sandboxKey } : {}) };
  // Stryker disable next-line LogicalOperator,ArrayDeclaration: the planner gives every RUN its environment
  const request = { ...baseRequest(scope, instruction), env: scope.step.runEnv ?? [] };
  const digests: string[] = [];
  const files: Record<string, string> = {};
  const sourceKeys: string[] = [];
  for (const mount of instruction.mounts) {
    if (mount.type !== "bind" && mount.type !== "cache") continue;
    const named = mount.from !== undefined ? scope.world.localContext(mount.from) : undefined;
    if (mount.from !== undefined && !named) {
      const source = scope.world.source(mount.from, scope.stage.index, scope.build.platform) ?? scope.fail(`--mount from=${mount.from}: no such stage, and no image ${mount.from} in the local store`);
      request.sources[mount.from] = source.layers.map((l) => l.diffId);
      sourceKeys.push(source.identity);
      continue;
    }
    if (mount.type === "cache") continue; // a cache mount reads no context: it is only ever seeded from a stage or image
    const context = named ? await scope.world.namedContext(mount.from!, named.dir) : await scope.world.context();
    if (named) request.namedContexts[mount.from!] = context.digest();
    else request.context = context.digest();
    // Stryker disable next-line StringLiteral: "" selects the whole context too
    const selection = context.select([mount.source || "."]);
    digests.push(selection.digest);
    Object.assign(files, fileDigests(selection.entries));
  }
  // Every mount counts: the key changes when any of them does.
  const read = {
    ...(digests.length ? { context: { digest: digests.length === 1 ? digests[0] : blake3Hex(digests.join(",")), files } } : {}),
    ...(sourceKeys.length ? { fromStage: sourceKeys.join(",") } : {}),
  };
  return { inputs: { ...inputs, ...read, ...untrustedReads(instruction, scope) }, request, next: nextState(scope), history: true };
};

/**
 * A cache mount's contents, a secret's and an SSH agent's answers are in no key. An untrusted
 * submitter fills them as it likes (an earlier RUN of its own writes the mount), so a RUN of
 * its build that reads one keys apart by that submitter: else its result, written by a trusted
 * worker, would be the team's hit for the same step.
 */
function untrustedReads(instruction: Run, scope: StepScope): { untrusted?: string } {
  const { untrusted } = scope.build;
  if (untrusted === undefined || !instruction.mounts.some((mount) => mount.type === "cache" || mount.type === "secret" || mount.type === "ssh")) return {};
  return { untrusted };
}


/** A step that reaches outside the sandbox needs the consent of whoever runs the build. */
function checkEntitlements(instruction: Run, network: NetworkMode, scope: StepScope) {
  const { allow } = scope.build;
  if (network === "host" && !allow.has("network.host")) {
    const who = instruction.network === "host" ? "RUN --network=host" : "--network host";
    scope.fail(`${who} uses the host's network: run the build with --allow network.host to let it`);
  }
  if (instruction.security === "insecure" && !allow.has("security.insecure")) {
    scope.fail("RUN --security=insecure runs a privileged container: run the build with --allow security.insecure to let it");
  }
}
