/** Where something is in a Dockerfile: lines and columns are 1-based. */
export interface SourceRange {
  /** The Dockerfile path as the user named it (`-f`). */
  file: string;
  line: number;
  column?: number;
  endLine?: number;
}

/**
 * A problem with the user's Dockerfile or build inputs. Its message reads
 * `PATH:LINE:COL: message`, the form editors and terminals turn into links.
 */
export class DockerfileError extends Error {
  constructor(
    readonly detail: string,
    readonly location: SourceRange,
  ) {
    super(`${location.file}:${location.line}:${location.column ?? 1}: ${detail}`);
    this.name = "DockerfileError";
  }

  /** The same error reported at another place (the ONBUILD parse does not know its file). */
  at(location: SourceRange): DockerfileError {
    return new DockerfileError(this.detail, location);
  }
}
