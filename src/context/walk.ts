/**
 * Walks a build context: every directory, regular file and symlink that `.dockerignore` keeps,
 * with its lstat. Symlinks are never followed (a link is recorded with its target), so loops
 * and links out of the context cannot make the walk escape or spin. Sockets, FIFOs and devices
 * are skipped with a warning; an unreadable directory is an error naming it.
 */
import type { IgnoreMatcher, IgnorePattern } from "./dockerignore.ts";
import { ContextError } from "./errors.ts";
import { displayPath, quotePath } from "./paths.ts";
import { closeFd, ENOENT, linkTargetAt, openSubdirectory, scanDirectory, type ScannedDirectory, type StatTable } from "./scan.ts";
import { AT_FDCWD, SystemError } from "../sys/libc.ts";
import { keepOutOfFTL } from "../util/jit.ts";

export type EntryType = "file" | "dir" | "symlink";

/**
 * One included entry, as the walk found it and as the context keeps it (it is the context's
 * ContextEntry: loadContext only adds a file's digest). Its stat fields are read from its
 * directory's table when asked: a second object per entry, with the stat copied field by field
 * and its display name decoded, was ~7 ms of a warm 20,000-file digest that never reads them.
 */
export class WalkedEntry {
  /** Content digest of a file (32 bytes), once loadContext has it. */
  contentDigest?: Uint8Array;
  private shown?: string;

  constructor(
    /** Relative path as a byte string (see paths.ts), slash-separated, no leading "./". */
    readonly path: string,
    /** The directory it is in ("" for the root) and its own name: the stat cache's key. */
    readonly parent: string,
    readonly base: string,
    readonly type: EntryType,
    /** Its lstat: entry `at` of its directory's table. */
    readonly stats: StatTable,
    readonly at: number,
    /** Symlink target as a byte string. */
    readonly linkTarget?: string,
  ) {}

  /** The path as UTF-8 text, for display and matching. */
  get name(): string {
    return (this.shown ??= displayPath(this.path));
  }
  /** Permission and special bits (mode & 0o7777). */
  get mode(): number {
    return this.stats.mode(this.at) & 0o7777;
  }
  /** A file's size (0 for directories and symlinks). */
  get size(): number {
    return this.type === "file" ? this.stats.size(this.at) : 0;
  }
  get uid(): number {
    return this.stats.uid(this.at);
  }
  get gid(): number {
    return this.stats.gid(this.at);
  }
  /** For a file with other hard links: its inode (`dev:ino`), shared by them all. */
  get inode(): string | undefined {
    return this.type === "file" && this.stats.nlink(this.at) > 1 ? this.stats.inode(this.at) : undefined;
  }
}

export interface ExcludedEntry {
  path: string;
  type: EntryType;
  decidedBy?: IgnorePattern;
}

/** A socket, FIFO or device the walk did not send (so a COPY naming it can say why). */
export interface SkippedEntry {
  path: string;
  kind: string;
}

export interface WalkResult {
  /** Included entries: each directory before its contents, siblings sorted by name bytes. */
  entries: WalkedEntry[];
  /** Excluded entries at the top of each excluded subtree (what the walker did not descend). */
  excluded: ExcludedEntry[];
  skipped: SkippedEntry[];
  warnings: string[];
}

function ioError(action: string, raw: string, error: unknown): ContextError {
  const code = error instanceof SystemError ? error.code : (error as NodeJS.ErrnoException).code;
  const reason = code === "EACCES" ? "permission denied" : code === "ENOENT" ? "no such file or directory" : (error as Error).message;
  return new ContextError(`cannot ${action} ${quotePath(raw) || "."} in the build context: ${reason}`);
}

/** Lists and stats the directory `name` of the open directory `parentFd`, keeping it open for its children. */
function openAndScan(parentFd: number, name: string, path: string, follow = false): { fd: number; scanned: ScannedDirectory } {
  let fd: number;
  try {
    fd = openSubdirectory(parentFd, name, follow);
  } catch (error) {
    throw ioError("read directory", path, error);
  }
  try {
    return { fd, scanned: scanDirectory(fd, path) };
  } catch (error) {
    closeFd(fd);
    throw ioError("read directory", path, error);
  }
}

/**
 * Walks the context from `root` (an absolute path, as bytes). Each directory is opened relative
 * to its parent's descriptor (O_NOFOLLOW) and scanned once; children are stated by name
 * inside it, so no path is resolved from the root again. `onFile` is told of each included
 * file as it is found, in the order of `entries`.
 */
export function walkContext(root: Buffer, matcher: IgnoreMatcher, onFile?: (entry: WalkedEntry) => void): WalkResult {
  const entries: WalkedEntry[] = [];
  const excluded: ExcludedEntry[] = [];
  const skipped: SkippedEntry[] = [];
  const warnings: string[] = [];

  /** Walks the directory `dir` (open as `fd`); returns whether anything below it was included. */
  const walk = (fd: number, dir: string, { names, stats }: ScannedDirectory): boolean => {
    let includedAny = false;
    for (let at = 0; at < names.length; at++) {
      const name = names[at];
      const path = dir === "" ? name : `${dir}/${name}`;
      // Gone between the listing and its stat: as if never listed, as a later listing would be.
      if (stats.error(at) === ENOENT) continue;
      if (stats.error(at) !== 0) throw ioError("stat", path, new SystemError("stat", path, stats.error(at)));
      const type = stats.kind(at);
      if (type === "special") {
        skipped.push({ path, kind: stats.specialKind(at) });
        warnings.push(`skipping ${stats.specialKind(at)} ${quotePath(path)}: only files, directories and symlinks are sent`);
        continue;
      }
      const verdict = matcher.empty ? undefined : matcher.match(displayPath(path));
      if (verdict?.excluded) {
        // An excluded directory is still searched when an exception could re-include below it;
        // it is then sent too (as the parent of what was re-included).
        if (type === "dir" && matcher.hasExclusions && matcher.exceptionCouldMatchBelow(displayPath(path))) {
          const position = entries.length;
          if (descend(fd, name, path)) {
            entries.splice(position, 0, walked(fd, dir, name, path, type, stats, at));
            includedAny = true;
            continue;
          }
        }
        excluded.push({ path, type, decidedBy: verdict.decidedBy });
        continue;
      }
      const entry = walked(fd, dir, name, path, type, stats, at);
      entries.push(entry);
      includedAny = true;
      if (type === "dir") descend(fd, name, path);
      else if (type === "file") onFile?.(entry);
    }
    return includedAny;
  };
  keepOutOfFTL(walk); // once per entry (see util/jit.ts)
  const descend = (parentFd: number, name: string, path: string): boolean => {
    const { fd, scanned } = openAndScan(parentFd, name, path);
    try {
      return walk(fd, path, scanned);
    } finally {
      closeFd(fd);
    }
  };

  const { fd, scanned } = openAndScan(AT_FDCWD, root.toString("latin1"), "", true);
  try {
    walk(fd, "", scanned);
  } finally {
    closeFd(fd);
  }
  return { entries, excluded, skipped, warnings };
}

function walked(fd: number, parent: string, base: string, path: string, type: EntryType, stats: StatTable, at: number): WalkedEntry {
  return new WalkedEntry(path, parent, base, type, stats, at, type === "symlink" ? readLink(fd, base, path) : undefined);
}

function readLink(fd: number, name: string, path: string): string {
  try {
    return linkTargetAt(fd, name);
  } catch (error) {
    throw ioError("read symlink", path, error);
  }
}

// Called once per entry of a context (see util/jit.ts).
keepOutOfFTL(walked, openAndScan);
const getter = (name: keyof WalkedEntry) => Object.getOwnPropertyDescriptor(WalkedEntry.prototype, name)!.get!;
keepOutOfFTL(getter("mode")); // once per entry by the directory digests
