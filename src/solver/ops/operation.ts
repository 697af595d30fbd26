/**
 * Steps as operations, as BuildKit's `solver.Op` has CacheMap and Exec: each instruction kind
 * says what it reads and what its key is made of, and (when it changes the file system) the
 * plain-data request that executes it. The solver walks the graph and never asks which kind a
 * step is.
 */
import type { Ownership } from "../../context/digest.ts";
import type { NetworkMode } from "../../executor/network.ts";
import type { Sandbox } from "../../executor/sandbox.ts";
import { resolveUser } from "../../snapshot/view.ts";
import type { StepRequest } from "../../executor/request.ts";
import type { Instruction } from "../../frontend/instructions.ts";
import type { Stage, Step } from "../../frontend/plan.ts";
import { formatPlatform, runsNatively, type Platform } from "../../frontend/platform.ts";
import { keyText, type StepInputs } from "../keys.ts";
import { copyState, diffIds, type StageState } from "../state.ts";
import type { BuildWorld } from "../world.ts";

/** What an operation is given: the step, the state it starts from, and the build around it. */
export interface StepScope {
  step: Step;
  stage: Stage;
  /** The stage as the previous step left it; none for FROM. */
  parent?: StageState;
  world: BuildWorld;
  build: BuildSettings;
  /** Throws the step's error, with its location. */
  fail: (message: string) => never;
}

/** Build-wide settings an operation may put in a key or a request. */
export interface BuildSettings {
  platform: Platform;
  network: NetworkMode;
  sandbox?: Sandbox;
  /** The sandbox as it enters RUN keys (only when given). */
  sandboxKey?: string;
  epoch?: number;
  /** What the person running the build consents to: network.host, security.insecure. */
  allow: ReadonlySet<string>;
  /**
   * The submitter of a build its machine does not trust. Its cache mounts, secrets and SSH
   * agents are its own to fill, and no key covers them: a RUN that reads one keys apart by this,
   * so its result is never a hit of anyone else's build with the same key otherwise.
   */
  untrusted?: string;
}

export interface StepPlan {
  inputs: StepInputs;
  /** How to execute the step when it misses; config-only steps have none. */
  request?: StepRequest;
  /** The stage after the step, before the layer it makes (if any) is added; its key is the solver's. */
  next: Omit<StageState, "key">;
  /** Whether the step adds a history entry (FROM and ONBUILD add none). */
  history: boolean;
}

/** An operation of one kind of instruction (the table in index.ts hands it only that kind). */
export type Operation<I extends Instruction = Instruction> = (scope: StepScope, instruction: I) => Promise<StepPlan>;

/** The inputs every step after FROM starts with: its parent, its text as keyed, the platform. */
export function baseInputs(scope: StepScope): StepInputs {
  return { parent: scope.parent!.key, instruction: keyText(scope.step.instruction), platform: formatPlatform(scope.build.platform) };
}

/**
 * The inputs of a step that makes a layer: SOURCE_DATE_EPOCH clamps the layer's file times, so it
 * keys the layer (absent without it, so keys of builds without it are unchanged).
 */
export function layerInputs(scope: StepScope): StepInputs {
  return { ...baseInputs(scope), ...(scope.build.epoch !== undefined ? { epoch: scope.build.epoch } : {}) };
}

/** A request with what every layer step carries; the operation adds what it reads. */
export function baseRequest(scope: StepScope, instruction: StepRequest["instruction"]): StepRequest {
  const parent = scope.parent!;
  return {
    instruction,
    config: parent.config,
    // Stryker disable next-line ArrayDeclaration: only RUN reads the environment, and sets its own
    env: [],
    lowers: diffIds(parent.layers),
    sources: {},
    namedContexts: {},
    owner: { uid: 0, gid: 0 },
    downloads: [],
    ...(scope.build.epoch !== undefined ? { epoch: scope.build.epoch } : {}),
    network: scope.build.network,
    ...(scope.build.sandbox ? { sandbox: scope.build.sandbox } : {}),
    // Named only when the executor must emulate it, so requests for this machine stay as they were.
    ...(runsNatively(scope.build.platform) ? {} : { platform: formatPlatform(scope.build.platform) }),
  };
}

/** The parent's state, copied for the step to change. */
export const nextState = (scope: StepScope) => copyState(scope.parent!);

/** The per-file digests a step read, for `explain` (capped so huge contexts stay cheap). */
export function fileDigests(entries: { name: string; type: string; mode: number; contentDigest?: Uint8Array; linkTarget?: string }[]): Record<string, string> {
  const files: Record<string, string> = {};
  // Stryker disable next-line MethodExpression: a memory cap for explain's details; the key covers every file
  for (const entry of entries.slice(0, 5000)) {
    files[entry.name] =
      entry.type === "file" ? `${entry.mode.toString(8)}:${Buffer.from(entry.contentDigest!).toString("hex").slice(0, 16)}` : `${entry.type}:${entry.mode.toString(8)}:${entry.linkTarget ?? ""}`;
  }
  return files;
}

/** The uid:gid a user (a name, or ids) stands for in the stage's /etc/passwd and /etc/group. */
export async function ownerOf(scope: StepScope, user: string | undefined, what: string): Promise<Ownership> {
  // Stryker disable next-line ConditionalExpression: a shortcut; resolveUser gives root for no user too
  if (!user) return { uid: 0, gid: 0 };
  if (/^\d+(:\d+)?$/.test(user)) {
    const [uid, gid] = user.split(":");
    return { uid: Number(uid), gid: Number(gid ?? uid) };
  }
  const read = await scope.world.reader(scope.parent!);
  try {
    const found = resolveUser(user, read);
    return { uid: found.uid, gid: found.gid };
  } catch (error) {
    return scope.fail(`${what}=${user}: ${(error as Error).message}`);
  }
}
