/**
 * A failure caused by the user's input or environment (a bad path, a corrupt blob, a missing
 * image), as opposed to a bug: the CLI prints its message on one line and exits 1.
 */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** A mistake in how the command was called (a bad flag value, a missing file it names): exit code 2. */
export class UsageError extends UserError {
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
  }
}

/** A full disk or quota (ENOSPC, EDQUOT) is the environment's doing, not a bug: say so plainly. */
export class DiskFullError extends UserError {}

/** `error` as a DiskFullError when it is one (anything else: undefined). */
export function diskFullError(error: unknown): DiskFullError | undefined {
  const { code, path } = (error ?? {}) as { code?: string; path?: string };
  if (code !== "ENOSPC" && code !== "EDQUOT") return undefined;
  const where = path ? ` (writing ${path})` : "";
  const what = code === "EDQUOT" ? "the disk quota is used up" : "no space left on the device";
  return new DiskFullError(`${what}${where}: free some space, or shrink the cache with \`memobuild cache gc --max-size SIZE\``);
}
