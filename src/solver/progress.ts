/**
 * Build progress: the solver reports events; a reporter prints them. `plain` prints numbered
 * lines in BuildKit's plain style (output of RUN steps streams live); `json` prints one JSON
 * object per event for tools.
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
  /** plan: every step the target needs, in the graph's order; and the Dockerfile's target stage. */
  steps?: PlannedStep[];
  target?: string;
  /** done: the step's key; for a hit, how long the step took when it ran; for a miss, why. */
  key?: string;
  savedMs?: number;
  layerSize?: number;
  reasons?: string[];
  /** context: the digest of the whole build context (after .dockerignore), once it is read. */
  digest?: string;
  /** error: the failed command's last lines of output. */
  tail?: string[];
}

export type ProgressSink = (event: ProgressEvent) => void;

export function plainProgress(write: (text: string) => void = (t) => process.stderr.write(t)): ProgressSink {
  return (event) => {
    const n = event.number !== undefined ? `#${event.number} ` : "";
    switch (event.type) {
      case "start":
        write(`${n}${event.name}\n`);
        break;
      case "output":
        write(`${n}${event.line}\n`);
        break;
      case "done":
        if (event.status === "executed") write(`${n}DONE ${((event.durationMs ?? 0) / 1000).toFixed(1)}s\n`);
        else if (event.status === "cached-local" || event.status === "cached-remote") write(`${n}CACHED\n`);
        break;
      case "error":
        write(`${n}ERROR ${event.message}\n`);
        break;
      case "warning":
        write(`warning: ${event.message}\n`);
        break;
    }
  };
}

export function jsonProgress(write: (text: string) => void = (t) => process.stdout.write(t)): ProgressSink {
  return (event) => write(jsonLine(event));
}

/** One JSON event per line, with its time first. */
export function jsonLine(event: object): string {
  return JSON.stringify({ time: new Date().toISOString(), ...event }) + "\n";
}

export const silentProgress: ProgressSink = () => {};

/** `-q`: nothing but warnings (on stderr), so stdout holds only the image ID. */
export function quietProgress(write: (text: string) => void = (t) => process.stderr.write(t)): ProgressSink {
  const plain = plainProgress(write);
  return (event) => event.type === "warning" && plain(event);
}
