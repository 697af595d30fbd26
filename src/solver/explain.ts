/**
 * Why a step hits or misses: its inputs now against the inputs of the same step in the last
 * build of this Dockerfile and target. The answer names what changed: files (added, removed,
 * content, mode), build args and environment, the base image's digest, a stage it reads, the
 * instruction itself, or only its parent.
 */
import type { StepInputs } from "./keys.ts";
import type { StepResult } from "./result.ts";

export interface Explanation {
  id: string;
  /** As the build output shows the step: `[build 5/6] RUN make`. */
  name: string;
  instruction: string;
  /** FROM, ENV, ARG...: the step changes only the config, so it never runs anything. */
  configOnly: boolean;
  hit: boolean;
  reasons: string[];
  /** Conflicts the remote cache recorded for this step's key (non-determinism, or an attack). */
  conflicts?: string[];
  /** The worker that ran or reused the step in the last build, when that build ran with --builder. */
  worker?: string;
}

function diffRecords(before: Record<string, string>, after: Record<string, string>): string[] {
  const changes: string[] = [];
  for (const [path, now] of Object.entries(after)) {
    const was = before[path];
    if (was === undefined) changes.push(`${path} (added)`);
    else if (was !== now) {
      const [wasMode] = was.split(":");
      const [nowMode] = now.split(":");
      changes.push(`${path} (${wasMode !== nowMode && was.slice(wasMode.length) === now.slice(nowMode.length) ? "mode" : "content"})`);
    }
  }
  for (const path of Object.keys(before)) if (!(path in after)) changes.push(`${path} (removed)`);
  return changes;
}

function list(items: string[], limit = 8): string {
  return items.length <= limit ? items.join(", ") : `${items.slice(0, limit).join(", ")} and ${items.length - limit} more`;
}

export function explainSteps(
  steps: StepResult[],
  now: Map<string, StepInputs>,
  last: Map<string, { key: string; inputs: unknown; worker?: string }>,
): Explanation[] {
  const keyOwner = new Map<string, KeyOwner>();
  for (const step of steps) keyOwner.set(step.key, step);
  return steps.filter((s) => s.status !== "skipped").map((step) => explainStep(step, now.get(step.id)!, last, keyOwner));
}

/** The step a key belongs to, to name a parent or a stage read. */
export type KeyOwner = Pick<StepResult, "stage" | "name">;

/** One step's explanation; `keyOwner` names the steps (by key) its parent or source may be. */
export function explainStep(
  step: StepResult,
  current: StepInputs,
  last: Map<string, { key: string; inputs: unknown; worker?: string }>,
  keyOwner: Map<string, KeyOwner>,
): Explanation {
  const hit = step.status !== "executed";
  const previous = last.get(step.id);
  const reasons: string[] = [];
  const about = { id: step.id, name: step.name, instruction: step.instruction, configOnly: step.config_only === true, hit, ...(previous?.worker ? { worker: previous.worker } : {}) };
  if (hit) return { ...about, reasons: [step.status === "cached-remote" ? "cached in the remote cache" : "cached"] };
  if (step.remote_refused) reasons.push(step.remote_refused);
  if (!previous) {
    reasons.push("no earlier build of this step to compare with (first build, or the stage was renamed or moved)");
    return { ...about, reasons };
  }
  const before = previous.inputs as StepInputs;
  if (before.instruction !== current.instruction) reasons.push(`the instruction changed (was: ${before.instruction.split("\n")[0]})`);
  if (before.base !== current.base) reasons.push(`the base image changed: ${before.base ?? "none"} → ${current.base ?? "none"}`);
  if (before.platform !== current.platform) reasons.push(`the platform changed: ${before.platform} → ${current.platform}`);
  if (before.fromStage !== current.fromStage) {
    const source = current.fromStage ? keyOwner.get(current.fromStage) : undefined;
    reasons.push(`the stage or image it reads changed${source ? ` (${source.stage})` : ""}`);
  }
  if (before.context?.digest !== current.context?.digest) {
    const changes = diffRecords(before.context?.files ?? {}, current.context?.files ?? {});
    reasons.push(changes.length ? `files changed: ${list(changes)}` : "the files it reads changed (owner or exclude patterns)");
  }
  // Keys made before the network entered them had none: no network, as RUN had then.
  if ((before.network ?? "none") !== (current.network ?? "none")) reasons.push(`the network changed: ${before.network ?? "none"} → ${current.network ?? "none"}`);
  if (before.sandbox !== current.sandbox) reasons.push(`--add-host, --shm-size or --ulimit changed: ${before.sandbox ?? "none"} → ${current.sandbox ?? "none"}`);
  if (before.untrusted !== current.untrusted) {
    reasons.push(`the untrusted submitter it reads a cache mount, secret or SSH agent of (keyed apart) changed: ${before.untrusted ?? "none"} → ${current.untrusted ?? "none"}`);
  }
  if (before.epoch !== current.epoch) reasons.push(`SOURCE_DATE_EPOCH changed: ${before.epoch ?? "none"} → ${current.epoch ?? "none"}`);
  if (before.owner !== current.owner) reasons.push(`the owner of the directory it makes changed: ${before.owner ?? "none"} → ${current.owner ?? "none"}`);
  if (JSON.stringify(before.urls ?? []) !== JSON.stringify(current.urls ?? [])) reasons.push("a URL it adds served different content (or its --checksum changed)");
  const envBefore = new Map(before.env ?? []);
  const envNow = new Map(current.env ?? []);
  const envChanged = [...new Set([...envBefore.keys(), ...envNow.keys()])].filter((k) => envBefore.get(k) !== envNow.get(k)).sort();
  if (envChanged.length) reasons.push(`build args or environment changed: ${list(envChanged)}`);
  if (reasons.length === 0 && before.parent !== current.parent) {
    const parent = current.parent ? keyOwner.get(current.parent) : undefined;
    reasons.push(`its parent step changed${parent ? ` (${parent.name})` : ""}`);
  }
  if (reasons.length === 0) reasons.push("same inputs as the last build, but the result is no longer in the cache (pruned, or built with another cache)");
  return { ...about, reasons };
}
