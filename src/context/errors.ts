/** A problem with the build context: a path outside it, an unreadable file, a bad pattern. */
import { UserError } from "../errors.ts";
export class ContextError extends UserError {
  constructor(message: string) {
    super(message);
  }
}
