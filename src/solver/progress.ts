/**
 * Build progress: the solver reports events; what prints them (cli/progress.ts, the tty
 * display) and what reports them to the hub (report/) take them from a sink.
 */

export type StepStatus = "executed" | "cached-local" | "cached-remote" | "skipped";

/** A step of the graph, as the `plan` event lists them before anything runs. */
export interface PlannedStep {
  id: string;
  stage: string;
  number: number;
  name: string;
}

export interface ProgressEvent {
  type: "plan" | "context" | "start" | "output" | "done" | "error" | "warning";
  step?: string;
  number?: number;
  name?: string;
  status?: StepStatus;
  line?: string;
  durationMs?: number;
  message?: string;
  /** plan: every step the target needs, in the graph's order; and the target stage's name (none for the last, unnamed one). */
  steps?: PlannedStep[];
  target?: string;
  /** done: the step's key; for a hit, how long the step took when it ran; for a miss, why. */
  key?: string;
  savedMs?: number;
  layerSize?: number;
  /** done: the step changes only the config (FROM, ENV, ARG...), so it never counts as run or cached. */
  configOnly?: boolean;
  reasons?: string[];
  /** context: the digest of the whole build context (after .dockerignore), once it is read. */
  digest?: string;
  /** error: the failed command's last lines of output. */
  tail?: string[];
  /** done: the worker that ran or reused the step (a build run with --builder). */
  worker?: string;
  /** When it happened (ms, this machine's clock), for an event relayed from a worker; else it happened as it is received. */
  time?: number;
}

export type ProgressSink = (event: ProgressEvent) => void;

export const silentProgress: ProgressSink = () => {};
