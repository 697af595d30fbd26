/**
 * What a build tells the build hub (`memobuild serve`): the wire format shared by the reporting
 * client and the server that checks, stores and broadcasts it. `seq` numbers a build's events
 * from 1, so a batch sent twice is taken once and a reader sees them in order.
 */
/** The CI system a build ran in (read from its environment by ci.ts). */
export interface CiMetadata {
  provider: string;
  repository?: string;
  branch?: string;
  commit?: string;
  url?: string;
}

/** The git checkout a build's context is in (read by git.ts, never by running git). */
export interface GitMetadata {
  /** The remote's URL, without credentials. */
  repository?: string;
  branch?: string;
  commit?: string;
  /** A tracked file differs from the commit's; undefined when it could not be told. */
  dirty?: boolean;
}

/**
 * queued and running are states of a build in progress; the others are final: when a build
 * ends each of its steps is executed, cached, failed, skipped (an earlier step failed, so it
 * never started) or cancelled (it was running when another step failed).
 */
export const STEP_STATES = ["queued", "running", "executed", "cached-local", "cached-remote", "failed", "skipped", "cancelled"] as const;
export type StepState = (typeof STEP_STATES)[number];
export const FINAL_STATES: readonly StepState[] = ["executed", "cached-local", "cached-remote", "failed", "skipped", "cancelled"];

export interface ReportedStep {
  id: string;
  stage: string;
  number: number;
  name: string;
}

/** What a build is: where it came from, what it builds, and who built it. */
export interface BuildInfo {
  dockerfile: string;
  /** The target stage's name (undefined for the last, unnamed stage). */
  target?: string;
  platform: string;
  host: string;
  labels: Record<string, string>;
  ci?: CiMetadata;
  /** The repository's name (from its remote), else the context directory's name. */
  project?: string;
  git?: GitMetadata;
  /** Who ran it: the local user (SUDO_USER under sudo), or the CI's actor. */
  user?: string;
  /** The names given with -t. */
  tags?: string[];
  /** The command line, secret values and tokens masked: what reruns the build. */
  command?: string[];
  /** The name of the token that reported it (`TOKEN rw name=ci`): set by the hub, never by a client. */
  tokenName?: string;
}

export interface BuildStarted extends BuildInfo {
  type: "build.started";
  seq: number;
  time: number;
  steps: ReportedStep[];
}

export interface StepUpdated {
  type: "step.updated";
  seq: number;
  time: number;
  step: string;
  state: StepState;
  durationMs?: number;
  /** A hit: how long the step took when it ran. */
  savedMs?: number;
  layerSize?: number;
  /** A miss: why (as `memobuild explain` says it). */
  reasons?: string[];
  /** A failure: the last lines of the step's output. */
  tail?: string[];
  /** The worker that ran or reused the step (a build run with --builder). */
  worker?: string;
  /** FROM, ENV, ARG…: nothing ran, so the step is neither a hit nor a miss (nor a run). */
  configOnly?: true;
}

export interface BuildFinished {
  type: "build.finished";
  seq: number;
  time: number;
  result: "success" | "failed";
  error?: string;
  image?: string;
  context?: string;
  durationMs: number;
  executed: number;
  cached: number;
  savedMs: number;
}

/**
 * What a step printed since its last `step.log`: lines, each ending in a newline, secrets'
 * values masked by the client (it holds them). Over a step's bound the client sends the tail,
 * after a line saying how much it left out; the hub keeps the last STEP_LOG_MAX characters.
 */
export interface StepLog {
  type: "step.log";
  seq: number;
  time: number;
  step: string;
  text: string;
}

/** Characters of one step's log the hub keeps (the tail, when there was more). */
export const STEP_LOG_MAX = 128 * 1024;
/** Characters one step.log event may carry. */
export const LOG_CHUNK_MAX = 64 * 1024;

export type BuildEvent = BuildStarted | StepUpdated | StepLog | BuildFinished;

// ---- builds as the hub gives them back (GET /v1/builds, the dashboard)

export interface BuildSummary extends BuildInfo {
  id: string;
  token: string;
  result: "running" | "success" | "failed";
  started: number;
  finished?: number;
  image?: string;
  context?: string;
  error?: string;
  durationMs?: number;
  executed: number;
  cached: number;
  /** cached / (cached + executed + failed): steps the cache decided; undefined before any was. */
  hitRate?: number;
  /** A failed build: the step that failed (its number in the step list and its name). */
  failedStep?: { number: number; name: string; output?: string[] };
  savedMs: number;
}

export interface BuildStep extends ReportedStep {
  state: StepState;
  /** When it started running (the reporter's clock). */
  started?: number;
  durationMs?: number;
  savedMs?: number;
  layerSize?: number;
  reasons?: string[];
  tail?: string[];
  /** The worker that ran or reused it (a build run with --builder). */
  worker?: string;
  /** Changes only the image's config (FROM, ENV…): never counted as a hit, a miss or a run. */
  configOnly?: true;
}
