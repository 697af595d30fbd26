/**
 * A directory treated as `/`: the ONE way MemoBuild touches an image's file system (a rootfs, a
 * snapshot, a layer being written, an archive being unpacked, a mount's source).
 *
 * Any path in such a tree may be a symlink planted by a Dockerfile, a layer or a context, and
 * may change between a check and its use. So paths are never joined onto the root and handed to
 * the host: every lookup is openat2(2) relative to the root's file descriptor with
 * RESOLVE_IN_ROOT (symlinks followed, absolute ones re-rooted, `..` clamped at the root, as the
 * kernel would if the root were `/`), and every change is an *at() call on the parent
 * directory's descriptor that never follows the last component. The semantics follow runc's
 * securejoin and BuildKit's continuity `fs.RootPath`: a path whose tail does not exist yet
 * resolves lexically from its last existing directory (so `COPY x /link/` writes where the link
 * points, even when that directory is still to be made).
 *
 * Paths in and out are `string` (UTF-8 text) or `Buffer` (raw bytes, for names that are not
 * UTF-8). Names returned (readdir, readlink, resolve) are Buffers.
 */
import { chmodSync, closeSync, constants, fchmodSync, fchownSync, futimesSync, readdirSync, readSync } from "node:fs";
import { basename, dirname } from "node:path";
import { UserError } from "../errors.ts";
import {
  AT_EMPTY_PATH, AT_REMOVEDIR, AT_SYMLINK_NOFOLLOW, closeFd, O_CLOEXEC, copyFileRange, fchownat, getXattr, linkat, mkdirat, mknodat, O_PATH, openat2,
  readlinkat, RESOLVE_BENEATH, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, RESOLVE_NO_XDEV, setXattrFollow, statxAt,
  symlinkat, SystemError, unlinkat, utimensat, type RawStat,
} from "../sys/libc.ts";
import { writeAll } from "../util/write-all.ts";
import { readBounded } from "../util/host-file.ts";

export type PathArg = string | Buffer;

const S_IFMT = 0o170000;
const MAX_SYMLINKS = 40; // Linux's limit

/** A file's metadata (statx), never following a final symlink unless asked. */
export class Stat {
  constructor(private readonly raw: RawStat) {}
  get mode() { return this.raw.mode; }
  get uid() { return this.raw.uid; }
  get gid() { return this.raw.gid; }
  get size() { return this.raw.size; }
  get nlink() { return this.raw.nlink; }
  get ino() { return this.raw.ino; }
  get dev() { return this.raw.dev; }
  get rdevMajor() { return this.raw.rdevMajor; }
  get rdevMinor() { return this.raw.rdevMinor; }
  /** [seconds, nanoseconds] */
  get atime() { return this.raw.atime; }
  get mtime() { return this.raw.mtime; }
  isDirectory() { return (this.raw.mode & S_IFMT) === 0o040000; }
  isFile() { return (this.raw.mode & S_IFMT) === 0o100000; }
  isSymbolicLink() { return (this.raw.mode & S_IFMT) === 0o120000; }
  isCharacterDevice() { return (this.raw.mode & S_IFMT) === 0o020000; }
  isBlockDevice() { return (this.raw.mode & S_IFMT) === 0o060000; }
  isFIFO() { return (this.raw.mode & S_IFMT) === 0o010000; }
  isSocket() { return (this.raw.mode & S_IFMT) === 0o140000; }
  /** An overlayfs whiteout: a 0/0 character device. */
  isWhiteout() { return this.isCharacterDevice() && this.raw.rdevMajor === 0 && this.raw.rdevMinor === 0; }
}

export class RootPathError extends UserError {}

// Stryker disable next-line Regex: an ASCII string converts to itself; the test only skips converting it
const ASCII = /^[\x00-\x7f]*$/;
/** Internally a path is a "byte string": one JS character per byte (latin1). */
const toRaw = (path: PathArg): string => (typeof path === "string" ? (ASCII.test(path) ? path : Buffer.from(path, "utf8").toString("latin1")) : path.toString("latin1"));
/** What the libc wrappers take: the plain string when ASCII, else the bytes. */
const sys = (raw: string): string | Buffer => (ASCII.test(raw) ? raw : Buffer.from(raw, "latin1"));
const components = (raw: string) => raw.split("/").filter((part) => part !== "" && part !== ".");
const display = (raw: string) => Buffer.from(raw, "latin1").toString("utf8");

export interface Owner {
  uid: number;
  gid: number;
}

export interface NewEntry {
  mode: number;
  owner?: Owner;
  /** Modification (and access) time in seconds; omitted: now. */
  mtime?: number;
}

export class Root {
  private constructor(
    /** The host directory this root is, for messages only. */
    readonly path: string,
    private fd: number,
    /** openat2 resolve flags for lookups from the root. */
    private readonly resolve: number,
  ) {}

  /**
   * Opens `directory` (a trusted host path: a store or staging directory) as a root.
   * `symlinks: "none"` refuses every symlink on a lookup (a build context, a single layer read
   * on its own); the default follows them inside the root.
   */
  static open(directory: string, options: { symlinks?: "in-root" | "none" } = {}): Root {
    const fd = openat2(-100, directory, O_PATH | constants.O_DIRECTORY | O_CLOEXEC, 0, 0);
    const resolve = options.symlinks === "none" ? RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS : RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    return new Root(directory, fd, resolve);
  }

  /** Runs `use` with a root opened on `directory`, closing it after. */
  static with<T>(directory: string, use: (root: Root) => T, options?: { symlinks?: "in-root" | "none" }): T {
    const root = Root.open(directory, options);
    try {
      return use(root);
    } finally {
      root.close();
    }
  }

  /** The metadata of an open descriptor (of a file opened through a root, say). */
  static statDescriptor(fd: number): Stat {
    return new Stat(statxAt(fd, "", AT_EMPTY_PATH)!);
  }

  /**
   * The last parent directory looked up, kept open: a COPY writes thousands of files into the
   * same few directories. Dropped by anything that could change how a path resolves (a link
   * made, a directory or link removed or replaced).
   */
  private parent?: { path: string; fd: number };

  /** Set when an operation may have changed how the cached parent's path resolves. */
  // Stryker disable next-line BooleanLiteral: starting stale only drops a parent not yet cached
  private staleParent = false;

  private forgetParent() {
    if (this.parent) closeFd(this.parent.fd);
    this.parent = undefined;
  }

  close() {
    this.forgetParent();
    // Stryker disable next-line ConditionalExpression,EqualityOperator: closing -1 again fails harmlessly; the root is never fd 0
    if (this.fd >= 0) closeFd(this.fd);
    this.fd = -1;
  }

  // ---- lookups

  /** Opens `path` (looked up in the root) with `flags`; the caller closes the descriptor. */
  open(path: PathArg, flags: number, mode = 0): number {
    const relative = components(toRaw(path)).join("/") || ".";
    return openat2(this.fd, sys(relative), flags | O_CLOEXEC, mode, this.resolve);
  }

  /** The entry at `path` itself (a final symlink is not followed); undefined when absent. */
  lstat(path: PathArg): Stat | undefined {
    const raw = toRaw(path);
    if (components(raw).length === 0) return new Stat(statxAt(this.fd, "", AT_EMPTY_PATH)!);
    try {
      return this.atParent(raw, (dirFd, name) => {
        const found = statxAt(dirFd, sys(name), AT_SYMLINK_NOFOLLOW);
        return found && new Stat(found);
      });
    } catch (error) {
      if (missing(error)) return undefined;
      throw error;
    }
  }

  /** What `path` leads to, symlinks followed inside the root; undefined when absent. */
  stat(path: PathArg): Stat | undefined {
    let fd: number;
    try {
      fd = this.open(path, O_PATH);
    } catch (error) {
      if (missing(error)) return undefined;
      throw error;
    }
    try {
      return new Stat(statxAt(fd, "", AT_EMPTY_PATH)!);
    } finally {
      closeFd(fd);
    }
  }

  /**
   * Where `path` really is: an absolute path in the root with no symlink on it, as the kernel
   * would resolve it if the root were `/`. Components that do not exist resolve lexically, so
   * a dangling link leads to where its target would be. The final component is followed
   * unless `followFinal` is false.
   */
  resolvePath(path: PathArg, followFinal = true): Buffer {
    const pending = components(toRaw(path));
    const resolved: string[] = [];
    const dirFds: number[] = [];
    const current = () => (dirFds.length ? dirFds[dirFds.length - 1] : this.fd);
    let exists = true;
    let links = 0;
    try {
      while (pending.length > 0) {
        const part = pending.shift()!;
        if (part === "..") {
          if (resolved.pop() !== undefined && exists) closeFd(dirFds.pop()!);
          else if (!exists && resolved.length === dirFds.length) exists = true;
          continue;
        }
        if (!exists || (pending.length === 0 && !followFinal)) {
          resolved.push(part); // lexically: nothing there to follow, or the final name as it is
          continue;
        }
        const stat = statxAt(current(), sys(part), AT_SYMLINK_NOFOLLOW);
        if (stat && (stat.mode & S_IFMT) === 0o120000) {
          if (++links > MAX_SYMLINKS) throw new RootPathError(`${display(toRaw(path))}: too many levels of symbolic links in ${this.path}`);
          const target = readlinkat(current(), sys(part)).toString("latin1");
          if (target.startsWith("/")) {
            resolved.length = 0;
            for (const fd of dirFds.splice(0)) closeFd(fd);
          }
          pending.unshift(...components(target));
          continue;
        }
        resolved.push(part);
        // Stryker disable next-line ConditionalExpression,EqualityOperator: a descriptor for the last directory is only not needed
        if (stat && (stat.mode & S_IFMT) === 0o040000 && pending.length > 0) {
          dirFds.push(openat2(current(), sys(part), O_PATH | constants.O_DIRECTORY | constants.O_NOFOLLOW | O_CLOEXEC, 0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS));
        } else exists = false; // a file or nothing: what follows is lexical
      }
    } finally {
      for (const fd of dirFds) closeFd(fd);
    }
    return Buffer.from("/" + resolved.join("/"), "latin1");
  }

  /** Names in the directory at `path` (symlinks followed in the root), unsorted. */
  readdir(path: PathArg): Buffer[] {
    const fd = this.open(path, constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      return readdirSync(`/proc/self/fd/${fd}`, { encoding: "buffer" }) as Buffer[];
    } finally {
      closeSync(fd);
    }
  }

  readlink(path: PathArg): Buffer {
    return this.atParent(toRaw(path), (dirFd, name) => readlinkat(dirFd, sys(name)));
  }

  /**
   * A small file's bytes (/etc/passwd, /etc/group), symlinks followed inside the root;
   * undefined when absent or not a regular file. More than `limit` bytes is an error: an image
   * cannot make us read gigabytes into memory.
   */
  readFile(path: PathArg, limit = 16 * 1024 * 1024): Buffer | undefined {
    let fd: number;
    try {
      fd = this.open(path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (error) {
      if (missing(error) || (error as SystemError).code === "ELOOP") return undefined;
      throw error;
    }
    try {
      const stat = statxAt(fd, "", AT_EMPTY_PATH)!;
      if ((stat.mode & S_IFMT) !== 0o100000) return undefined;
      // Read to the end, whatever stat says (procfs says 0), and never past the limit.
      return readBounded(fd, limit, () => new RootPathError(`${display(toRaw(path))} in ${this.path} is larger than ${limit} bytes: not reading it`));
    } finally {
      closeSync(fd);
    }
  }

  /** Opens a regular file for reading; `follow: false` refuses a final symlink. */
  openFile(path: PathArg, follow = true): number {
    const raw = toRaw(path);
    if (follow) return this.open(Buffer.from(raw, "latin1"), constants.O_RDONLY | constants.O_NONBLOCK);
    return this.atParent(raw, (dirFd, name) =>
      openat2(dirFd, sys(name), constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW | O_CLOEXEC, 0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS),
    );
  }

  getXattr(path: PathArg, name: string): Buffer | undefined {
    return this.withEntry(toRaw(path), (fd) => getXattr(`/proc/self/fd/${fd}`, name, true));
  }

  // ---- changes (a final symlink is never followed)

  /**
   * Makes `path` and its missing parents as directories (symlinks on the way followed inside
   * the root, as `mkdir -p` would with the root as `/`). Returns what it created, as resolved
   * paths, parents first.
   */
  mkdirAll(path: PathArg, entry: NewEntry = { mode: 0o755 }): Buffer[] {
    const resolved = components(this.resolvePath(path).toString("latin1"));
    const created: Buffer[] = [];
    const fds: number[] = [];
    try {
      let dirFd = this.fd;
      for (let i = 0; i < resolved.length; i++) {
        const name = sys(resolved[i]);
        let stat = statxAt(dirFd, name, AT_SYMLINK_NOFOLLOW);
        // Stryker disable next-line ConditionalExpression: making one that is there fails EEXIST, handled below
        if (!stat) {
          try {
            mkdirat(dirFd, name, 0o700);
            const made = Buffer.from("/" + resolved.slice(0, i + 1).join("/"), "latin1");
            this.applyAt(dirFd, resolved[i], entry, true);
            created.push(made);
          } catch (error) {
            // Made by another process since the statx above (a race no test can time).
            // Stryker disable next-line ConditionalExpression,StringLiteral,EqualityOperator,BlockStatement
            if ((error as SystemError).code !== "EEXIST") throw error;
          }
          stat = statxAt(dirFd, name, AT_SYMLINK_NOFOLLOW);
        }
        if (!stat || (stat.mode & S_IFMT) !== 0o040000) {
          throw new RootPathError(`cannot create directory /${display(resolved.slice(0, i + 1).join("/"))}: a file that is not a directory is in the way`);
        }
        dirFd = openat2(dirFd, name, O_PATH | constants.O_DIRECTORY | constants.O_NOFOLLOW | O_CLOEXEC, 0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
        fds.push(dirFd);
      }
    } finally {
      for (const fd of fds) closeFd(fd);
    }
    return created;
  }

  /** Creates a directory (its parent must exist); an existing directory is kept as it is. */
  mkdir(path: PathArg, entry: NewEntry): boolean {
    return this.atParent(toRaw(path), (dirFd, name) => {
      const existing = statxAt(dirFd, sys(name), AT_SYMLINK_NOFOLLOW);
      if (existing && (existing.mode & S_IFMT) === 0o040000) return false;
      if (existing) unlinkat(dirFd, sys(name), 0);
      mkdirat(dirFd, sys(name), 0o700);
      this.applyAt(dirFd, name, entry, true);
      return true;
    });
  }

  /**
   * Writes a new regular file at `path`, replacing what is there unless it is a directory.
   * The bytes come from `content`, from `chunks` as they arrive, or from the open file `from`
   * (`size` bytes).
   */
  writeFile(path: PathArg, source: { content: Uint8Array | string } | { chunks: Iterable<Uint8Array> } | { from: number; size: number }, entry: NewEntry) {
    this.atParent(toRaw(path), (dirFd, name) => {
      this.clearAt(dirFd, name);
      const fd = openat2(
        dirFd,
        sys(name),
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW | O_CLOEXEC,
        0o600,
        RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
      );
      try {
        // Stryker disable next-line ConditionalExpression,EqualityOperator,StringLiteral: writeSync writes a string as UTF-8 too
        if ("content" in source) writeAll(fd, typeof source.content === "string" ? Buffer.from(source.content) : source.content);
        else if ("chunks" in source) for (const chunk of source.chunks) writeAll(fd, chunk);
        else copyContent(source.from, fd, source.size);
        // chown first: it clears setuid/setgid bits, which chmod then sets.
        if (entry.owner) fchownSync(fd, entry.owner.uid, entry.owner.gid);
        fchmodSync(fd, entry.mode & 0o7777);
        if (entry.mtime !== undefined) futimesSync(fd, entry.mtime, entry.mtime);
      } finally {
        closeSync(fd);
      }
    });
  }

  symlink(target: PathArg, path: PathArg, entry: Omit<NewEntry, "mode"> = {}) {
    this.atParent(toRaw(path), (dirFd, name) => {
      this.clearAt(dirFd, name);
      symlinkat(sys(toRaw(target)), dirFd, sys(name));
      this.applyAt(dirFd, name, { mode: 0o777, ...entry }, false);
    });
  }

  /** A hard link at `path` to the entry at `existing` (itself, not what a symlink there points to). */
  link(existing: PathArg, path: PathArg) {
    // The existing entry's directory gets its own descriptor: the new path's lookup may replace
    // the cached parent, and with it a descriptor still in use.
    const parts = components(toRaw(existing));
    const oldName = parts.pop();
    if (oldName === undefined || oldName === "..") throw new RootPathError(`cannot link to ${display(toRaw(existing)) || "/"}`);
    const oldDirFd = parts.length ? this.open(Buffer.from(parts.join("/"), "latin1"), O_PATH | constants.O_DIRECTORY) : this.fd;
    try {
      const stat = statxAt(oldDirFd, sys(oldName), AT_SYMLINK_NOFOLLOW);
      if (!stat) throw new RootPathError(`cannot link to ${display(toRaw(existing))}: it does not exist`);
      if ((stat.mode & S_IFMT) === 0o040000) throw new RootPathError(`cannot link to ${display(toRaw(existing))}: it is a directory`);
      this.atParent(toRaw(path), (newDirFd, newName) => {
        this.clearAt(newDirFd, newName);
        linkat(oldDirFd, sys(oldName), newDirFd, sys(newName), 0);
      });
    } finally {
      if (oldDirFd !== this.fd) closeFd(oldDirFd);
    }
  }

  /** A device, FIFO or (0/0 character device) overlay whiteout. */
  mknod(path: PathArg, mode: number, major = 0, minor = 0, entry: Omit<NewEntry, "mode"> = {}) {
    this.atParent(toRaw(path), (dirFd, name) => {
      this.clearAt(dirFd, name);
      mknodat(dirFd, sys(name), mode, major, minor);
      this.applyAt(dirFd, name, { mode: mode & 0o7777, ...entry }, true);
    });
  }

  /** Sets owner, then mode (never on a symlink), then times, of the entry itself. */
  setAttributes(path: PathArg, entry: Partial<NewEntry>) {
    this.atParent(toRaw(path), (dirFd, name) => {
      const stat = statxAt(dirFd, sys(name), AT_SYMLINK_NOFOLLOW);
      if (!stat) throw new RootPathError(`${display(toRaw(path))} does not exist in ${this.path}`);
      this.applyAt(dirFd, name, entry, (stat.mode & S_IFMT) !== 0o120000);
    });
  }

  setXattr(path: PathArg, name: string, value: Buffer) {
    this.withEntry(toRaw(path), (fd) => setXattrFollow(`/proc/self/fd/${fd}`, name, value));
  }

  /** Removes the entry at `path` (a directory must be empty); false when there was nothing. */
  remove(path: PathArg): boolean {
    return this.atParent(toRaw(path), (dirFd, name) => {
      const stat = statxAt(dirFd, sys(name), AT_SYMLINK_NOFOLLOW);
      if (!stat) return false;
      if ((stat.mode & S_IFMT) !== 0o100000) this.staleParent = true;
      unlinkat(dirFd, sys(name), (stat.mode & S_IFMT) === 0o040000 ? AT_REMOVEDIR : 0);
      return true;
    });
  }

  /**
   * Removes `path` and everything below it without following a symlink and without crossing
   * into another file system (a mount left behind is refused, never emptied).
   */
  removeAll(path: PathArg) {
    const raw = toRaw(path);
    if (components(raw).length === 0) {
      // Stryker disable next-line StringLiteral: "" names the root too
      const fd = this.open(".", constants.O_RDONLY | constants.O_DIRECTORY);
      try {
        removeChildren(fd, this.path);
      } finally {
        closeSync(fd);
      }
      return;
    }
    this.atParent(raw, (dirFd, name) => this.clearAt(dirFd, name));
  }

  // ---- helpers

  /** Runs `use` with the parent directory of `raw` (looked up in the root) and the last name. */
  private atParent<T>(raw: string, use: (dirFd: number, name: string) => T): T {
    const parts = components(raw);
    const name = parts.pop();
    if (name === undefined || name === "..") throw new RootPathError(`${display(raw) || "/"} does not name an entry below ${this.path}`);
    try {
      // Both only save a lookup: the root opened as "" is the root, and opening the parent again finds the same one.
      // Stryker disable next-line ConditionalExpression
      if (parts.length === 0) return use(this.fd, name);
      const dirPath = parts.join("/");
      // Stryker disable next-line ConditionalExpression
      if (this.parent?.path !== dirPath) {
        const fd = this.open(Buffer.from(dirPath, "latin1"), O_PATH | constants.O_DIRECTORY);
        this.forgetParent();
        this.parent = { path: dirPath, fd };
      }
      return use(this.parent.fd, name);
    } finally {
      if (this.staleParent) {
        // Stryker disable next-line BooleanLiteral: staying stale only drops the next parent too
        this.staleParent = false;
        this.forgetParent();
      }
    }
  }

  /** Runs `use` with an O_PATH descriptor of the entry itself (a symlink is refused). */
  private withEntry<T>(raw: string, use: (fd: number) => T): T {
    const fd =
      components(raw).length === 0
        ? openat2(this.fd, ".", O_PATH | O_CLOEXEC, 0, 0)
        : this.atParent(raw, (dirFd, name) => openat2(dirFd, sys(name), O_PATH | constants.O_NOFOLLOW | O_CLOEXEC, 0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS));
    try {
      if ((statxAt(fd, "", AT_EMPTY_PATH)!.mode & S_IFMT) === 0o120000) throw new RootPathError(`${display(raw)} is a symlink`);
      return use(fd);
    } finally {
      closeFd(fd);
    }
  }

  /** Owner, mode and times of `name` in `dirFd`; mode only when `chmod` (not for symlinks). */
  private applyAt(dirFd: number, name: string, entry: Partial<NewEntry>, chmod: boolean) {
    if (entry.owner) fchownat(dirFd, sys(name), entry.owner.uid, entry.owner.gid, AT_SYMLINK_NOFOLLOW);
    if (chmod && entry.mode !== undefined) {
      const fd = openat2(dirFd, sys(name), O_PATH | constants.O_NOFOLLOW | O_CLOEXEC, 0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
      try {
        // The magic link names exactly the inode just opened without following anything.
        chmodSync(`/proc/self/fd/${fd}`, entry.mode & 0o7777);
      } finally {
        closeFd(fd);
      }
    }
    if (entry.mtime !== undefined) utimensat(dirFd, sys(name), [entry.mtime, 0], [entry.mtime, 0], AT_SYMLINK_NOFOLLOW);
  }

  /** Removes whatever is at `name`, a directory with all below it. */
  private clearAt(dirFd: number, name: string) {
    const stat = statxAt(dirFd, sys(name), AT_SYMLINK_NOFOLLOW);
    if (!stat) return;
    // Stryker disable next-line ConditionalExpression: marking a file's removal stale too only drops the parent
    if ((stat.mode & S_IFMT) !== 0o100000) this.staleParent = true;
    if ((stat.mode & S_IFMT) !== 0o040000) {
      unlinkat(dirFd, sys(name), 0);
      return;
    }
    const fd = openChildDirectory(dirFd, sys(name), display(name));
    try {
      removeChildren(fd, display(name));
    } finally {
      closeSync(fd);
    }
    unlinkat(dirFd, sys(name), AT_REMOVEDIR);
  }

}

/**
 * Directories made (or found) once while writing many entries into a root (a COPY, a layer
 * being unpacked): each parent is resolved and made the first time only. An entry that
 * replaces one of them (a file or link where a directory was) forgets it and what was below.
 */
export class EnsuredDirectories {
  private readonly known = new Set<string>();
  constructor(
    private readonly root: Root,
    private readonly entry: NewEntry,
  ) {}

  /** Makes `path` (a byte string) and its parents as needed. */
  ensure(path: string) {
    // Stryker disable next-line ConditionalExpression,LogicalOperator,StringLiteral: making "/" again is a no-op
    if (path === "/" || path === "" || this.known.has(path)) return;
    this.root.mkdirAll(Buffer.from(path, "latin1"), this.entry);
    // Every parent is known too, so forgetting a parent (replaced by a file) forgets its children.
    // Stryker disable next-line EqualityOperator,StringLiteral: indexOf from 1 never answers 0; more prefixes known only means fewer checks
    for (let end = path.indexOf("/", 1); end > 0; end = path.indexOf("/", end + 1)) this.known.add(path.slice(0, end));
    this.known.add(path);
  }

  /** `path` is a directory now (made by the caller). */
  add(path: string) {
    this.known.add(path);
  }

  /** Something else is about to be written at `path`. */
  forget(path: string) {
    // Forgetting more than asked only makes directories be checked again; the first line keeps
    // a layer of many files from scanning the set for each one.
    // Stryker disable next-line ConditionalExpression
    if (!this.known.has(path)) return;
    // Stryker disable next-line ConditionalExpression,StringLiteral
    for (const known of [...this.known]) if (known === path || known.startsWith(path + "/")) this.known.delete(known);
  }
}

/** Empties the directory open as `dirFd`, never leaving its file system. */
function removeChildren(dirFd: number, label: string) {
  const own = statxAt(dirFd, "", AT_EMPTY_PATH)!.dev;
  for (const entry of readdirSync(`/proc/self/fd/${dirFd}`, { encoding: "buffer" }) as Buffer[]) {
    const stat = statxAt(dirFd, entry, AT_SYMLINK_NOFOLLOW);
    // Stryker disable next-line ConditionalExpression: only an entry removed since readdir is missing
    if (!stat) continue;
    if ((stat.mode & S_IFMT) !== 0o040000) {
      unlinkat(dirFd, entry, 0);
      continue;
    }
    // Also refused by RESOLVE_NO_XDEV when opened; this says so before trying.
    // Stryker disable next-line ConditionalExpression
    if (stat.dev !== own) throw mountPointError(`${label}/${entry.toString()}`);
    // Stryker disable next-line StringLiteral: the label is shown only for EXDEV, which the dev check above already answers
    const child = openChildDirectory(dirFd, entry, `${label}/${entry.toString()}`);
    try {
      removeChildren(child, `${label}/${entry.toString()}`);
    } finally {
      closeSync(child);
    }
    unlinkat(dirFd, entry, AT_REMOVEDIR);
  }
}

const mountPointError = (label: string) => new RootPathError(`${label} is a mount point: not removing what is mounted there`);

/** Opens a child directory for removal: never through a link, never across a mount (also a bind of the same file system). */
function openChildDirectory(dirFd: number, name: string | Buffer, label: string): number {
  try {
    return openat2(dirFd, name, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW | O_CLOEXEC, 0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV);
  } catch (error) {
    // Stryker disable next-line ConditionalExpression: only a race (the directory removed meanwhile) fails otherwise
    if ((error as SystemError).code === "EXDEV") throw mountPointError(label);
    throw error;
  }
}

/** Copies `size` bytes from one descriptor to another: in the kernel when it can. */
function copyContent(from: number, to: number, size: number) {
  // The fallback copies the same bytes; copy_file_range is only faster.
  // Stryker disable next-line ConditionalExpression,LogicalOperator
  if (size === 0 || copyFileRange(from, to, size)) return;
  // Stryker disable next-line MethodExpression: a bigger buffer only uses more memory
  const buffer = Buffer.allocUnsafe(Math.min(size, 1 << 20));
  for (;;) {
    const n = readSync(from, buffer, 0, buffer.length, null);
    if (n === 0) break;
    writeAll(to, buffer.subarray(0, n));
  }
}

function missing(error: unknown): boolean {
  const code = (error as SystemError).code;
  return code === "ENOENT" || code === "ENOTDIR";
}

/** Removes a host directory that MemoBuild owns (a snapshot, a staging directory) safely. */
export function removeTree(directory: string) {
  const name = basename(directory);
  // "/" or "." would mean emptying the parent itself: never what a caller owns.
  if (name === "" || name === "." || name === "..") throw new RootPathError(`not removing ${JSON.stringify(directory)}: it names no directory below a parent`);
  try {
    // Stryker disable next-line ObjectLiteral,StringLiteral: one name below the parent: no lookup could follow a link either way
    Root.with(dirname(directory), (root) => root.removeAll(name), { symlinks: "none" });
  } catch (error) {
    if (!missing(error)) throw error;
  }
}
