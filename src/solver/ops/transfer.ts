/**
 * COPY and ADD: keyed on the files they select (with their owner and exclude patterns), the
 * stage or image `--from` names (its key or digest, never its name), and ADD's URLs (their
 * --checksum, or the digest of what they served).
 */
import { isUrl } from "../../executor/download.ts";
import type { Instruction } from "../../frontend/instructions.ts";
import type { StepInputs } from "../keys.ts";
import { layerInputs, baseRequest, fileDigests, nextState, ownerOf, type Operation, type StepScope } from "./operation.ts";
import type { StepRequest } from "../../executor/request.ts";

type Transfer = Extract<Instruction, { kind: "COPY" | "ADD" }>;

export const transferOperation: Operation<Transfer> = async (scope, instruction) => {
  const owner = await ownerOf(scope, instruction.chown, "--chown");
  const inputs = layerInputs(scope);
  const request = { ...baseRequest(scope, instruction), owner };
  // Stryker disable next-line ConditionalExpression: ADD has no `from`; the check is for the type
  const from = instruction.kind === "COPY" ? instruction.from : undefined;
  if (from !== undefined) await readFrom(scope, from, instruction, inputs, request);
  else await readContextAndUrls(scope, instruction, inputs, request);
  return { inputs, request, next: nextState(scope), history: true };
};

/** COPY --from: a local --build-context reads like the main context; a stage or image by its identity. */
async function readFrom(scope: StepScope, from: string, instruction: Transfer, inputs: StepInputs, request: StepRequest) {
  const named = scope.world.localContext(from);
  if (named) {
    const context = await scope.world.namedContext(from, named.dir);
    request.namedContexts[from] = context.digest();
    const selection = context.select(instruction.sources, { excludes: instruction.excludes, owner: request.owner });
    inputs.context = { digest: selection.digest, files: fileDigests(selection.entries) };
    return;
  }
  const source = scope.world.source(from, scope.stage.index, scope.build.platform) ?? scope.fail(`--from=${from}: no such stage, and no image ${from} in the local store`);
  request.sources[from] = source.layers.map((l) => l.diffId);
  inputs.fromStage = source.identity;
}

async function readContextAndUrls(scope: StepScope, instruction: Transfer, inputs: StepInputs, request: StepRequest) {
  const urls = instruction.sources.filter(isUrl);
  if (urls.length > 0 && instruction.kind !== "ADD") scope.fail("COPY does not fetch URLs; use ADD");
  // Stryker disable next-line ConditionalExpression: COPY has no `checksum`; the check is for the type
  const checksum = instruction.kind === "ADD" ? instruction.checksum : undefined;
  if (checksum && urls.length !== 1) scope.fail("--checksum needs exactly one URL source");
  if (urls.length) {
    // With --checksum the key needs no download; without, the content decides.
    const digests = checksum ? [checksum] : await Promise.all(urls.map(async (url) => (await scope.world.downloads.fetch(url)).digest));
    inputs.urls = digests;
    request.downloads = urls.map((url, i) => ({ url, digest: digests[i] }));
  }
  const local = instruction.sources.filter((s) => !isUrl(s));
  if (local.length) {
    const context = await scope.world.context();
    request.context = context.digest();
    const selection = context.select(local, { excludes: instruction.excludes, owner: request.owner });
    inputs.context = { digest: selection.digest, files: fileDigests(selection.entries) };
  }
}
