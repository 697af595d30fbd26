/**
 * Files at host paths that someone else chose: the ONE way MemoBuild writes a file next to a
 * path a user named (an export, `init`'s files, a key, --metadata-file) and reads a file whose
 * path a project or an image controls (memobuild.json, a Dockerfile, .dockerignore, an OCI
 * layout, a secret).
 *
 * Writing: a repository can commit symlinks at any name, also at predictable temporary names
 * (`D.<pid>.partial` for every pid), and a plain open follows them. So the temporary file is
 * created with O_CREAT|O_EXCL|O_NOFOLLOW under a random name in the destination's directory
 * (held open by descriptor, so the directory cannot be swapped in between), its mode set on the
 * descriptor, and renamed over the destination: a link already at the destination is replaced,
 * never written through, and a reader sees the old file or the whole new one.
 *
 * Reading: a path may be a link to /dev/zero (size 0 passes any size check, and reading never
 * ends), to a FIFO (opening it waits forever) or to a token file (a parse error would print it).
 * So the file is opened non-blocking (and without following a final link where one makes no
 * sense), checked to be a regular file on the open descriptor, and read with a byte limit that
 * does not trust stat.
 */
import { closeSync, constants, fchmodSync, fsyncSync, lstatSync, openSync, readlinkSync, readSync, realpathSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { UserError } from "../errors.ts";
import { AT_EMPTY_PATH, AT_FDCWD, closeFd, O_CLOEXEC, O_PATH, openat2, renameat, RESOLVE_BENEATH, RESOLVE_NO_SYMLINKS, statxAt, SystemError, unlinkat } from "../sys/libc.ts";
import { randomHex } from "./random.ts";
import { writeAll } from "./write-all.ts";

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
/** Linux's NAME_MAX: the temporary name keeps a prefix of the destination's name under it. */
const NAME_MAX = 255;

export class HostFileError extends UserError {}

/** What a file mode's type is, in words, for messages. */
function kindOf(mode: number): string {
  switch (mode & S_IFMT) {
    case 0o040000: return "a directory";
    case S_IFLNK: return "a symbolic link";
    case 0o010000: return "a FIFO";
    case 0o020000: return "a character device";
    case 0o060000: return "a block device";
    case 0o140000: return "a socket";
    default: return "of an unknown type";
  }
}

/** The temporary name for `name`: hidden, random, and never longer than a name may be. */
export function temporaryName(name: string): string {
  const suffix = `.${randomHex(8)}.tmp`;
  const room = NAME_MAX - suffix.length - 1;
  const bytes = Buffer.from(name);
  const kept = bytes.length <= room ? name : bytes.subarray(0, room).toString("utf8").replace(/\uFFFD+$/, "");
  return `.${kept}${suffix}`;
}

/** Creates a new file in `dirFd`: exclusively, never through a link; returns its name and descriptor. */
function createTemporary(dirFd: number, name: string): { temp: string; fd: number } {
  for (let attempt = 0; ; attempt++) {
    const temp = temporaryName(name);
    try {
      const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW | O_CLOEXEC;
      return { temp, fd: openat2(dirFd, temp, flags, 0o600, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) };
    } catch (error) {
      // Only a name someone else holds is tried again; 64 random names all taken is no accident.
      if ((error as SystemError).code !== "EEXIST" || attempt >= 63) throw error;
    }
  }
}

/**
 * Writes `path` whole or not at all with mode `mode` (not narrowed by the umask). `content` is
 * the bytes, or a function that writes them to the descriptor it is given.
 */
export function writeFileAtomic(path: string, content: Uint8Array | string | ((fd: number) => void), mode = 0o644): void {
  const dirFd = openDirectory(path);
  try {
    const name = basename(path);
    const { temp, fd } = createTemporary(dirFd, name);
    let open = true;
    let renamed = false;
    try {
      if (typeof content === "function") content(fd);
      else writeAll(fd, typeof content === "string" ? Buffer.from(content) : content);
      fchmodSync(fd, mode); // on the descriptor: nothing by name is changed
      fsyncSync(fd);
      open = false;
      closeSync(fd);
      renameat(dirFd, temp, dirFd, name);
      renamed = true;
    } finally {
      // Closed once only: another thread (the hash workers) may be given the same number after.
      if (open) closeSync(fd);
      if (!renamed) unlinkat(dirFd, temp);
    }
  } finally {
    closeFd(dirFd);
  }
}

/** The directory `path` is to be written in, held open (a link on the way is the user's to make). */
function openDirectory(path: string): number {
  try {
    return openat2(AT_FDCWD, dirname(path), O_PATH | constants.O_DIRECTORY | O_CLOEXEC, 0, 0);
  } catch (error) {
    const code = (error as SystemError).code;
    const why = code === "ENOENT" ? "does not exist" : code === "ENOTDIR" ? "is not a directory" : (error as Error).message;
    throw new HostFileError(`cannot write ${path}: ${dirname(path)} ${why}`);
  }
}

export interface ReadOptions {
  /** What to call the file in messages (default: its path). */
  what?: string;
  /** At most this many bytes; more is an error. */
  limit: number;
  /** Follow a final symbolic link (a path a user typed); default false (a project's or an image's). */
  follow?: boolean;
}

/** Opens a regular file for reading, or says plainly what is there instead. */
export function openRegularFile(path: string, options: { what?: string; follow?: boolean } = {}): number {
  const what = options.what ?? path;
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO returns at once (and is refused below) instead of waiting for a writer.
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | O_CLOEXEC | (options.follow ? 0 : constants.O_NOFOLLOW));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ELOOP" && !options.follow) throw new HostFileError(`${what} is a symbolic link: not followed (name the file itself)`);
    if (code === "ENOENT") throw new HostFileError(`${what} does not exist`);
    throw error;
  }
  try {
    checkRegular(fd, what);
  } catch (error) {
    closeSync(fd);
    throw error;
  }
  return fd;
}

/** Refuses an open descriptor that is not a regular file (checked on the descriptor: no race). */
export function checkRegular(fd: number, what: string) {
  const mode = statxAt(fd, "", AT_EMPTY_PATH)!.mode;
  if ((mode & S_IFMT) !== S_IFREG) throw new HostFileError(`${what} is ${kindOf(mode)}, not a regular file: not reading it`);
}

/** Reads an open file to its end, never more than `limit` bytes, whatever stat says. */
export function readBounded(fd: number, limit: number, tooLarge: () => Error): Buffer {
  const chunks: Buffer[] = [];
  let length = 0;
  const chunk = Buffer.allocUnsafe(Math.min(limit + 1, 64 * 1024));
  for (let n; (n = readSync(fd, chunk, 0, chunk.length, null)) > 0; ) {
    length += n;
    if (length > limit) throw tooLarge();
    chunks.push(Buffer.from(chunk.subarray(0, n)));
  }
  return Buffer.concat(chunks, length);
}

/** A small regular file's bytes: refused when it is anything else, or larger than the limit. */
export function readRegularFile(path: string, options: ReadOptions): Buffer {
  const what = options.what ?? path;
  const fd = openRegularFile(path, options);
  try {
    return readBounded(fd, options.limit, () => new HostFileError(`${what} is larger than ${options.limit} bytes: not reading it`));
  } finally {
    closeSync(fd);
  }
}

const MAX_SYMLINKS = 40; // Linux's limit

function isSymlink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false; // missing, or below a file (ENOTDIR)
  }
}

/**
 * Where `path` leads, symlinks resolved as the kernel would: the longest existing prefix by
 * realpath, a dangling link by its target, and the missing rest appended as it is.
 */
export function kernelPath(path: string, links = 0): string {
  const missing: string[] = [];
  for (let current = path; ; current = dirname(current)) {
    try {
      return join(realpathSync(current), ...missing.reverse());
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ELOOP") throw new HostFileError(`${path}: too many levels of symbolic links`);
      if (code !== "ENOENT" && code !== "ENOTDIR") throw error;
    }
    if (isSymlink(current)) {
      if (links >= MAX_SYMLINKS) throw new HostFileError(`${path}: too many levels of symbolic links`);
      return kernelPath(join(resolve(dirname(current), readlinkSync(current)), ...missing.reverse()), links + 1);
    }
    missing.push(basename(current));
  }
}

/** Whether the resolved path `real` is `dir` or below it (both as kernelPath/realpath give them). */
export function isInside(real: string, dir: string): boolean {
  return real === dir || real.startsWith(dir === "/" ? "/" : dir + "/");
}
