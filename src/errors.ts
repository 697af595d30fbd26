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
