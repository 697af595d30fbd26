/** A problem with the build context: a path outside it, an unreadable file, a bad pattern. */
export class ContextError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ContextError";
  }
}
