/** A mistake in how the command was called: reported in one line, exit code 2 (as for an unknown flag). */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
    this.name = "UsageError";
  }
}
