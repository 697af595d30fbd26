/**
 * A BuildRecord from what the solver returns: the steps (key, status, inputs), the base images by
 * the digest each FROM resolved to, ADD URLs by the digest they served. Only what the plan and
 * the keys already hold goes in: secrets are never inputs of a key, so they cannot leak here.
 */
import type { BuildResult } from "../solver/solver.ts";

/**
 * What a build returns: its steps, and the plan and every step's key inputs (a build run on a
 * worker has them from the local dry run that computed its keys, when that run could plan it).
 */
export type BuildOutcome = Pick<BuildResult, "steps"> & Partial<Pick<BuildResult, "plan" | "inputs">>;
import type { Step } from "../frontend/plan.ts";
import { parseReference } from "../image/reference.ts";
import type { BuildRecord, Dependency, StepRecord } from "./provenance.ts";

/** `pkg:docker/NAMESPACE/NAME@TAG?repository_url=…&platform=…` (the purl BuildKit writes for bases). */
export function dockerPurl(refText: string, platform: string): string {
  const ref = parseReference(refText);
  const version = ref.tag ?? ref.digest ?? "latest";
  const repository = ref.registry === "docker.io" ? ref.repository.replace(/^library\//, "") : ref.repository;
  const query = [...(ref.registry === "docker.io" ? [] : [`repository_url=${encodeURIComponent(`${ref.registry}/${ref.repository}`)}`]), `platform=${encodeURIComponent(platform)}`];
  return `pkg:docker/${repository}@${encodeURIComponent(version)}?${query.join("&")}`;
}

const isUrl = (source: string) => /^https?:\/\//i.test(source);

/** Base images and ADD URLs the build read, each once. */
export function dependenciesOf(result: BuildOutcome, platform: string): Dependency[] {
  const { plan, inputs: allInputs } = result;
  if (!plan || !allInputs) return [];
  const steps = new Map<string, Step>(plan.stages.flatMap((stage) => stage.steps.map((step) => [step.id, step] as [string, Step])));
  const found = new Map<string, Dependency>();
  for (const [id, inputs] of allInputs) {
    const step = steps.get(id);
    if (!step) continue;
    const stage = plan.stages[step.stage]!;
    if (inputs.base && step.index === 0 && stage.base.kind === "image") {
      const digest = inputs.base.replace(/^sha256:/, "");
      found.set(`image:${stage.base.ref}@${digest}`, { uri: dockerPurl(stage.base.ref, platform), digest: { sha256: digest }, name: stage.base.ref });
    }
    const instruction = step.instruction;
    if (inputs.urls && instruction.kind === "ADD") {
      instruction.sources.filter(isUrl).forEach((url, i) => {
        const served = inputs.urls![i];
        if (served) found.set(`url:${url}`, { uri: url, digest: { sha256: served.replace(/^sha256:/, "") } });
      });
    }
  }
  return [...found.values()];
}

/** Every step of the graph with how it was satisfied; with its key's inputs for mode=max. */
export function stepRecords(result: BuildOutcome): StepRecord[] {
  return result.steps.map((step) => {
    const inputs = result.inputs?.get(step.id);
    // The per-file digests are for `explain`; the directory digest already covers them.
    const trimmed = inputs?.context ? { ...inputs, context: { digest: inputs.context.digest } } : inputs;
    const by = { ...(step.signer ? { signer: step.signer } : {}), ...(step.worker ? { worker: step.worker } : {}) };
    return { id: step.id, instruction: step.instruction, key: step.key, status: step.status, ...by, ...(trimmed ? { inputs: trimmed } : {}) };
  });
}

export type RecordBase = Omit<BuildRecord, "dependencies" | "steps">;

export function buildRecord(base: RecordBase, result: BuildOutcome): BuildRecord {
  return { ...base, dependencies: dependenciesOf(result, base.platform), steps: stepRecords(result) };
}

/**
 * Who built it: the worker that ran the build (--builder), else this machine. A build spread
 * over workers was put together by the one that ran its last stage, whose steps come last.
 */
export function builderIdOf(result: BuildOutcome, host: string): string {
  const worker = result.steps.findLast((s) => s.worker && s.status !== "skipped")?.worker;
  return worker ? `https://memobuild.dev/builders/worker/${encodeURIComponent(worker)}` : `https://memobuild.dev/builders/local/${encodeURIComponent(host)}`;
}
