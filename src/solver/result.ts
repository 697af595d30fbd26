/** How one step of a build was satisfied: what the metadata file, `explain` and the hub read. */
import type { StepStatus } from "./progress.ts";

export interface StepResult {
  id: string;
  stage: string;
  /** As the build output shows it: `[build 5/6] RUN make`. */
  name: string;
  instruction: string;
  key: string;
  status: StepStatus;
  duration_ms: number;
  /** A step that changes only the config (FROM, ENV, ARG...): it never does work, so it never counts as run. */
  config_only?: true;
  /** Why the remote's result for this step was not used (e.g. an untrusted signer). */
  remote_refused?: string;
  /** A result reused from the remote: the key that signed it (its signature verified here). */
  signer?: string;
  /** A multi-platform build: the platform this step was built for (each platform's steps are listed). */
  platform?: string;
  /** A build run on a worker (--builder): the worker's name. */
  worker?: string;
}
