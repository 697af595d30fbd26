/** How a step's failure reaches the user: one error naming the step's file, line and text. */
import { diskFullError, UserError } from "../errors.ts";
import { RunFailedError } from "../executor/run.ts";
import { DockerfileError } from "../frontend/errors.ts";
import type { Step } from "../frontend/plan.ts";

/** A failure with the step that failed: instruction, location and the output's last lines. */
export class BuildError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/** `Dockerfile:7:1: RUN make: <message>`. */
export function stepError(step: Step, message: string): BuildError {
  const location = step.instruction.location;
  return new BuildError(`${location.file}:${location.line}:${location.column ?? 1}: ${step.text.split("\n")[0]}: ${message}`);
}

/**
 * What an error thrown while solving a step becomes: errors about the input name the step;
 * a failed RUN also gives its last output (its own code is in the message; the build exits 1,
 * as buildx does). Anything else is a bug, and stays as it is.
 */
export function stepFailure(step: Step, error: unknown): { error: unknown; run?: { message: string; tail: string[] } } {
  if (error instanceof BuildError || error instanceof DockerfileError) return { error };
  if (error instanceof RunFailedError) {
    const tail = error.tail.length ? `\n  last output:\n${error.tail.map((l) => `    ${l}`).join("\n")}` : "";
    return { error: stepError(step, `${error.message}${tail}`), run: { message: error.message, tail: error.tail } };
  }
  if (error instanceof UserError) return { error: stepError(step, error.message) };
  const diskFull = diskFullError(error);
  return { error: diskFull ? stepError(step, diskFull.message) : error };
}
