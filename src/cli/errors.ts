/** A mistake in how the command was called: reported in one line, exit code 1 (2 for usage). */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = "UsageError";
  }
}
