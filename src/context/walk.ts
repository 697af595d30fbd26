/**
 * Walks a build context: every directory, regular file and symlink that `.dockerignore` keeps,
 * with its lstat. Symlinks are never followed (a link is recorded with its target), so loops
 * and links out of the context cannot make the walk escape or spin. Sockets, FIFOs and devices
 * are skipped with a warning; an unreadable directory is an error naming it.
 */
import { lstatSync, readdirSync, readlinkSync, type BigIntStats, type Dirent } from "node:fs";
import type { IgnoreMatcher, IgnorePattern } from "./dockerignore.ts";
import { ContextError } from "./errors.ts";
import { displayPath, fsPath, quotePath } from "./paths.ts";

export type EntryType = "file" | "dir" | "symlink";

export interface WalkedEntry {
  /** Relative path as a byte string (see paths.ts), slash-separated, no leading "./". */
  path: string;
  type: EntryType;
  stat: BigIntStats;
  /** Symlink target as a byte string. */
  linkTarget?: string;
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

function typeOf(dirent: Dirent): EntryType | "special" {
  if (dirent.isDirectory()) return "dir";
  if (dirent.isFile()) return "file";
  if (dirent.isSymbolicLink()) return "symlink";
  return "special";
}

function specialKind(dirent: Dirent): string {
  if (dirent.isSocket()) return "socket";
  if (dirent.isFIFO()) return "named pipe";
  if (dirent.isBlockDevice()) return "block device";
  if (dirent.isCharacterDevice()) return "character device";
  return "special file";
}

function ioError(action: string, raw: string, error: unknown): ContextError {
  const code = (error as NodeJS.ErrnoException).code;
  const reason = code === "EACCES" ? "permission denied" : code === "ENOENT" ? "no such file or directory" : (error as Error).message;
  return new ContextError(`cannot ${action} ${quotePath(raw) || "."} in the build context: ${reason}`);
}

const byName = (a: Dirent, b: Dirent) => {
  const x = a.name as unknown as string;
  const y = b.name as unknown as string;
  return x < y ? -1 : x > y ? 1 : 0;
};

export function walkContext(root: Buffer, matcher: IgnoreMatcher): WalkResult {
  const rootText = root.toString("latin1");
  const entries: WalkedEntry[] = [];
  const excluded: ExcludedEntry[] = [];
  const skipped: SkippedEntry[] = [];
  const warnings: string[] = [];

  /** Walks `dir`; returns whether anything below it was included. */
  const walk = (dir: string): boolean => {
    let children: Dirent[];
    try {
      children = readdirSync(fsPath(root, dir, rootText), { encoding: "latin1", withFileTypes: true }) as Dirent[];
    } catch (error) {
      throw ioError("read directory", dir, error);
    }
    let includedAny = false;
    children.sort(byName);
    for (const child of children) {
      const name = child.name as unknown as string;
      const path = dir === "" ? name : `${dir}/${name}`;
      const type = typeOf(child);
      if (type === "special") {
        skipped.push({ path, kind: specialKind(child) });
        warnings.push(`skipping ${specialKind(child)} ${quotePath(path)}: only files, directories and symlinks are sent`);
        continue;
      }
      const verdict = matcher.empty ? { excluded: false } : matcher.match(displayPath(path));
      if (verdict.excluded) {
        // An excluded directory is still searched when an exception could re-include below it;
        // it is then sent too (as the parent of what was re-included).
        if (type === "dir" && matcher.hasExclusions && matcher.exceptionCouldMatchBelow(displayPath(path))) {
          const position = entries.length;
          if (walk(path)) {
            entries.splice(position, 0, statEntry(root, rootText, path, type));
            includedAny = true;
            continue;
          }
        }
        excluded.push({ path, type, decidedBy: verdict.decidedBy });
        continue;
      }
      entries.push(statEntry(root, rootText, path, type));
      includedAny = true;
      if (type === "dir") walk(path);
    }
    return includedAny;
  };

  walk("");
  return { entries, excluded, skipped, warnings };
}

function statEntry(root: Buffer, rootText: string, path: string, type: EntryType): WalkedEntry {
  const full = fsPath(root, path, rootText);
  let stat: BigIntStats;
  try {
    stat = lstatSync(full, { bigint: true });
  } catch (error) {
    throw ioError("stat", path, error);
  }
  if (type !== "symlink") return { path, type, stat };
  let linkTarget: string;
  try {
    linkTarget = readlinkSync(full, { encoding: "latin1" }) as string;
  } catch (error) {
    throw ioError("read symlink", path, error);
  }
  return { path, type, stat, linkTarget };
}
