/** A mistake in how the command was called: reported in one line, exit code 2 (as for an unknown flag). */
export { UsageError } from "../errors.ts";
