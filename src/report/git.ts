/**
 * Which repository, branch and commit a build context comes from, for the build hub, read from
 * the repository's own files WITHOUT running git: git on a checked-out project runs what its
 * config says (core.fsmonitor, hooks, aliases), and a build must not run a project's commands
 * outside its sandbox.
 *
 * A project's .git is hostile territory like the rest of it. So:
 * - `.git` itself is used when it is a directory, or a `gitdir:` file (worktrees, submodules)
 *   whose git directory names this checkout back (a worktree's `gitdir` file, a submodule's
 *   core.worktree): a `.git` that is a link, or a gitdir file pointing at any other directory,
 *   gives nothing.
 * - Every file below a git directory is opened by openat2 with RESOLVE_BENEATH and
 *   RESOLVE_NO_SYMLINKS (git writes no links there): a link planted as HEAD, config or a ref
 *   leads nowhere; each read is bounded, non-blocking and of regular files only.
 * - What is read is taken only in the shapes git writes (hex object ids, ref names, `url =`):
 *   anything else is dropped, never quoted.
 *
 * Dirty, decided here: a file git tracks was changed or removed in the checkout (as
 * `git describe --dirty` says it, without staged-but-uncommitted changes, which would need the
 * object database; untracked files do not count). Each index entry is compared by type, size
 * and mtime seconds; an entry that differs (or whose mtime is not older than the index, git's
 * "racily clean" case, to the nanosecond when git recorded them) has its content hashed as git
 * does, so touching a file is not a change. An index larger than INDEX_LIMIT, one that does not
 * parse, or more than HASH_BUDGET bytes to hash leaves `dirty` unknown: the build never waits
 * long on it.
 */
import { closeSync, constants, readSync, realpathSync } from "node:fs";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, closeFd, O_CLOEXEC, O_PATH, openat2, readlinkat, RESOLVE_BENEATH, RESOLVE_NO_SYMLINKS, statxAt } from "../sys/libc.ts";
import { checkRegular, readBounded } from "../util/host-file.ts";
import { redactCredentials } from "../util/redact.ts";

export interface GitInfo {
  /** The remote's URL, credentials taken out. */
  repository?: string;
  /** Undefined when HEAD is detached. */
  branch?: string;
  commit?: string;
  /** Undefined when it could not be decided (see above). */
  dirty?: boolean;
}

const SMALL_LIMIT = 4096;
const CONFIG_LIMIT = 1024 * 1024;
const PACKED_REFS_LIMIT = 16 * 1024 * 1024;
export const INDEX_LIMIT = 64 * 1024 * 1024;
/** Bytes of tracked files hashed at most (those whose stat data does not settle it). */
export const HASH_BUDGET = 256 * 1024 * 1024;
/** Directories above the context looked at for a .git (a context is often a repository's subdirectory). */
const MAX_DEPTH = 64;

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const S_IFGITLINK = 0o160000;

const OBJECT_ID = /^([0-9a-f]{40}|[0-9a-f]{64})$/;

/** A ref name as git allows it (check-ref-format's rules that matter here). */
function validRef(name: string): boolean {
  return (
    name.length <= 255 &&
    /^refs\/[^\x00-\x20\x7f~^:?*[\\]+$/.test(name) &&
    !name.split("/").some((part) => part === "" || part.startsWith(".") || part.endsWith(".lock")) &&
    !name.includes("..") &&
    !name.includes("@{")
  );
}

/** A directory opened for *at() calls, never through a final link. */
function openDir(dirFd: number, path: string, resolveFlags: number): number | undefined {
  try {
    return openat2(dirFd, path, O_PATH | constants.O_DIRECTORY | O_CLOEXEC | constants.O_NOFOLLOW, 0, resolveFlags);
  } catch {
    return undefined;
  }
}

/** A regular file below `dirFd`, no link followed, at most `limit` bytes; undefined otherwise. */
function readBelow(dirFd: number, path: string, limit: number): Buffer | undefined {
  let fd: number;
  try {
    fd = openat2(dirFd, path, constants.O_RDONLY | constants.O_NONBLOCK | O_CLOEXEC, 0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
  } catch {
    return undefined;
  }
  try {
    checkRegular(fd, path);
    return readBounded(fd, limit, () => new Error(`${path} is larger than ${limit} bytes`));
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

const textBelow = (dirFd: number, path: string, limit = SMALL_LIMIT) => readBelow(dirFd, path, limit)?.toString("utf8");

/** A git repository found for a directory: its checkout, and its git directories held open. */
interface Repository {
  worktree: string;
  /** HEAD and the index. */
  gitFd: number;
  /** Refs, packed-refs and config (the same as gitFd but in a linked worktree). */
  commonFd: number;
}

function close(repo: Repository) {
  closeFd(repo.gitFd);
  if (repo.commonFd !== repo.gitFd) closeFd(repo.commonFd);
}

/** The repository `dir` is in: the nearest `.git` at it or above, or undefined. */
function findRepository(dir: string): Repository | undefined {
  // The context as the user named it, links resolved (the user's own path, not the project's).
  let current: string;
  try {
    current = realpathSync(dir);
  } catch {
    return undefined;
  }
  for (let depth = 0; depth < MAX_DEPTH; depth++) {
    const stat = statxAt(AT_FDCWD, join(current, ".git"), AT_SYMLINK_NOFOLLOW);
    if (stat) return openRepository(current, stat.mode & S_IFMT);
    const parent = dirname(current);
    if (parent === current) return undefined;
    current = parent;
  }
  return undefined;
}

function openRepository(worktree: string, type: number): Repository | undefined {
  if (type === S_IFDIR) {
    const gitFd = openDir(AT_FDCWD, join(worktree, ".git"), 0);
    return gitFd === undefined ? undefined : { worktree, gitFd, commonFd: gitFd };
  }
  if (type !== S_IFREG) return undefined; // a link (or anything else) named .git is not followed
  const worktreeFd = openDir(AT_FDCWD, worktree, 0);
  if (worktreeFd === undefined) return undefined;
  const gitfile = (() => {
    try {
      return textBelow(worktreeFd, ".git");
    } finally {
      closeFd(worktreeFd);
    }
  })();
  const match = /^gitdir: (.+?)\s*$/.exec(gitfile ?? "");
  if (!match) return undefined;
  const gitDir = resolve(worktree, match[1]);
  const gitFd = openDir(AT_FDCWD, gitDir, 0);
  if (gitFd === undefined) return undefined;
  const common = linkedGitDirectory(gitFd, gitDir, worktree);
  if (common === undefined) {
    closeFd(gitFd);
    return undefined;
  }
  return { worktree, gitFd, commonFd: common };
}

/**
 * A gitdir file's directory is used only when it names this checkout back: a linked worktree's
 * `gitdir` file holds the path of this `.git` file, a submodule's config has core.worktree
 * leading here. Returns the descriptor of the directory that holds refs and config.
 */
function linkedGitDirectory(gitFd: number, gitDir: string, worktree: string): number | undefined {
  const back = textBelow(gitFd, "gitdir")?.trim();
  if (back !== undefined) {
    if (!samePath(resolve(gitDir, back), join(worktree, ".git"))) return undefined;
    const commondir = textBelow(gitFd, "commondir")?.trim();
    if (commondir === undefined) return gitFd;
    // A worktree's git directory is COMMON/worktrees/NAME: anywhere else is not git's layout.
    const common = isAbsolute(commondir) ? commondir : resolve(gitDir, commondir);
    if (!samePath(dirname(gitDir), join(common, "worktrees"))) return undefined;
    return openDir(AT_FDCWD, common, 0);
  }
  const config = parseConfig(textBelow(gitFd, "config", CONFIG_LIMIT) ?? "");
  const core = config.get("core")?.get("worktree");
  return core !== undefined && samePath(resolve(gitDir, core), worktree) ? gitFd : undefined;
}

/** Whether two paths lead to the same place (git writes real paths; a context may be named through a link). */
function samePath(a: string, b: string): boolean {
  try {
    return realpathSync(a) === realpathSync(b);
  } catch {
    return false;
  }
}

/** Sections of a git config (`remote.origin` for `[remote "origin"]`), each its keys (lower case) and last values. */
export function parseConfig(text: string): Map<string, Map<string, string>> {
  const sections = new Map<string, Map<string, string>>();
  let section: Map<string, string> | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    const header = /^\[([A-Za-z0-9.-]+)(?:\s+"((?:[^"\\]|\\.)*)")?\]/.exec(line);
    if (header) {
      const name = header[2] === undefined ? header[1].toLowerCase() : `${header[1].toLowerCase()}.${header[2].replace(/\\(.)/g, "$1")}`;
      section = sections.get(name) ?? new Map();
      sections.set(name, section);
      continue;
    }
    const entry = /^([A-Za-z][A-Za-z0-9-]*)\s*=\s*(.*)$/.exec(line);
    if (!entry || !section) continue;
    section.set(entry[1].toLowerCase(), configValue(entry[2]));
  }
  return sections;
}

/** A value with its comment taken off and its quotes and escapes undone. */
function configValue(text: string): string {
  let out = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "\\" && i + 1 < text.length) out += { n: "\n", t: "\t", b: "\b" }[text[++i]] ?? text[i];
    else if (c === '"') quoted = !quoted;
    else if ((c === "#" || c === ";") && !quoted) break;
    else out += c;
  }
  return out.trim();
}

/** The object id a ref points at: its loose file, else packed-refs; a symbolic ref followed a few times. */
function resolveRef(repo: Repository, ref: string, depth = 0): string | undefined {
  if (!validRef(ref) || depth > 5) return undefined;
  const loose = textBelow(repo.commonFd, ref)?.trim();
  if (loose !== undefined) {
    if (OBJECT_ID.test(loose)) return loose;
    const symbolic = /^ref: (\S+)$/.exec(loose);
    return symbolic ? resolveRef(repo, symbolic[1], depth + 1) : undefined;
  }
  const packed = readBelow(repo.commonFd, "packed-refs", PACKED_REFS_LIMIT)?.toString("utf8") ?? "";
  for (const line of packed.split("\n")) {
    const [id, name] = line.trim().split(" ");
    if (name === ref && OBJECT_ID.test(id)) return id;
  }
  return undefined;
}

/** The repository, branch, commit and dirty flag of the checkout `dir` is in; undefined outside a repository. */
export function gitInfo(dir: string, options: { hashBudget?: number } = {}): GitInfo | undefined {
  const repo = findRepository(dir);
  if (!repo) return undefined;
  try {
    const info: GitInfo = {};
    const head = textBelow(repo.gitFd, "HEAD")?.trim() ?? "";
    const symbolic = /^ref: (\S+)$/.exec(head);
    if (symbolic && validRef(symbolic[1])) {
      if (symbolic[1].startsWith("refs/heads/")) info.branch = symbolic[1].slice("refs/heads/".length);
      info.commit = resolveRef(repo, symbolic[1]);
    } else if (OBJECT_ID.test(head)) info.commit = head;
    const config = parseConfig(textBelow(repo.commonFd, "config", CONFIG_LIMIT) ?? "");
    const remote = (info.branch && config.get(`branch.${info.branch}`)?.get("remote")) || "origin";
    const url = config.get(`remote.${remote}`)?.get("url") ?? [...config].find(([name, keys]) => name.startsWith("remote.") && keys.has("url"))?.[1].get("url");
    if (url) info.repository = redactCredentials(url).slice(0, 1024);
    const sha256 = config.get("extensions")?.get("objectformat")?.toLowerCase() === "sha256";
    const dirty = checkoutChanged(repo, sha256 ? "sha256" : "sha1", options.hashBudget ?? HASH_BUDGET);
    if (dirty !== undefined) info.dirty = dirty;
    return info;
  } finally {
    close(repo);
  }
}

/** What to call the project: the remote's repository name, else the context directory's name. */
export function projectName(contextDir: string, git: GitInfo | undefined): string {
  const fromUrl = git?.repository
    ?.replace(/[?#].*$/, "")
    .replace(/\/+$/, "")
    .split(/[/:]/)
    .at(-1)
    ?.replace(/\.git$/, "");
  return (fromUrl || basename(resolve(contextDir))).slice(0, 200);
}

// ---- the index, against the checkout

interface IndexEntry {
  path: string;
  mode: number;
  size: number;
  mtime: number;
  /** 0 when git did not record nanoseconds. */
  mtimeNs: number;
  oid: string;
  stage: number;
  /** assume-unchanged or skip-worktree: git does not look at the file either. */
  ignored: boolean;
}

/** The index's entries (versions 2, 3 and 4), or undefined when it is not one git wrote. */
export function parseIndex(data: Buffer, hashBytes: 20 | 32): IndexEntry[] | undefined {
  if (data.length < 12 || data.toString("latin1", 0, 4) !== "DIRC") return undefined;
  const version = data.readUInt32BE(4);
  if (version < 2 || version > 4) return undefined;
  const count = data.readUInt32BE(8);
  const entries: IndexEntry[] = [];
  let offset = 12;
  let previous = "";
  for (let i = 0; i < count; i++) {
    const fixed = 40 + hashBytes + 2;
    if (offset + fixed > data.length) return undefined;
    const flags = data.readUInt16BE(offset + 40 + hashBytes);
    const extended = version >= 3 && (flags & 0x4000) !== 0 ? data.readUInt16BE(offset + fixed) : 0;
    const start = offset + fixed + (version >= 3 && flags & 0x4000 ? 2 : 0);
    let path: string;
    let next: number;
    if (version === 4) {
      const varint = readVarint(data, start);
      if (!varint || varint.value > previous.length) return undefined;
      const end = data.indexOf(0, varint.next);
      if (end < 0) return undefined;
      path = previous.slice(0, previous.length - varint.value) + data.toString("utf8", varint.next, end);
      next = end + 1;
    } else {
      const end = data.indexOf(0, start);
      if (end < 0) return undefined;
      path = data.toString("utf8", start, end);
      next = offset + ((end - offset + 8) & ~7);
    }
    entries.push({
      path,
      mode: data.readUInt32BE(offset + 24),
      size: data.readUInt32BE(offset + 36),
      mtime: data.readUInt32BE(offset + 8),
      mtimeNs: data.readUInt32BE(offset + 12),
      oid: data.toString("hex", offset + 40, offset + 40 + hashBytes),
      stage: (flags >> 12) & 3,
      ignored: (flags & 0x8000) !== 0 || (extended & 0x4000) !== 0,
    });
    previous = path;
    offset = next;
  }
  return entries;
}

function readVarint(data: Buffer, at: number): { value: number; next: number } | undefined {
  let i = at;
  if (i >= data.length) return undefined;
  let byte = data[i++];
  let value = byte & 127;
  while (byte & 128) {
    if (i >= data.length || value > 1 << 24) return undefined;
    byte = data[i++];
    value = ((value + 1) << 7) | (byte & 127);
  }
  return { value, next: i };
}

/** A path git could have written: relative, no `..`, no `.git`, no empty part. */
const safePath = (path: string) => path !== "" && !path.startsWith("/") && !path.includes("\0") && path.split("/").every((part) => part !== "" && part !== "." && part !== ".." && part.toLowerCase() !== ".git");

/** Whether a tracked file differs from the index; undefined when that cannot be told. */
function checkoutChanged(repo: Repository, algorithm: "sha1" | "sha256", budget: number): boolean | undefined {
  const data = readBelow(repo.gitFd, "index", INDEX_LIMIT);
  if (!data) return undefined;
  const entries = parseIndex(data, algorithm === "sha1" ? 20 : 32);
  if (!entries || entries.some((e) => !safePath(e.path))) return undefined;
  const indexTime = statxAt(repo.gitFd, "index", AT_SYMLINK_NOFOLLOW)?.mtime ?? [0, 0];
  const root = openDir(AT_FDCWD, repo.worktree, 0);
  if (root === undefined) return undefined;
  const dirs = new Map<string, number | undefined>();
  const check: Check = { root, dirs, indexTime, algorithm, budget };
  try {
    return entries.some((entry) => !entry.ignored && entryChanged(check, entry));
  } catch (error) {
    if (error instanceof OverBudget) return undefined;
    throw error;
  } finally {
    for (const fd of dirs.values()) if (fd !== undefined) closeFd(fd);
    closeFd(root);
  }
}

class OverBudget extends Error {}

interface Check {
  root: number;
  /** Parent directories opened so far (undefined: gone, or below a link). */
  dirs: Map<string, number | undefined>;
  indexTime: [number, number];
  algorithm: "sha1" | "sha256";
  /** Bytes that may still be hashed. */
  budget: number;
}

/** Whether git would call the entry racily clean: changed in the same instant the index was written. */
function racy(entry: IndexEntry, [seconds, nanoseconds]: [number, number]): boolean {
  const indexSeconds = seconds % 2 ** 32;
  if (entry.mtime !== indexSeconds) return entry.mtime > indexSeconds;
  return entry.mtimeNs === 0 || entry.mtimeNs >= nanoseconds;
}

function entryChanged(check: Check, entry: IndexEntry): boolean {
  const { root, dirs } = check;
  if (entry.stage !== 0) return true; // a merge conflict
  const type = entry.mode & S_IFMT;
  if (type === S_IFGITLINK || type === S_IFDIR) return false; // a submodule, a sparse directory: their own checkouts
  const parent = dirname(entry.path);
  if (!dirs.has(parent)) dirs.set(parent, parent === "." ? openDir(root, ".", RESOLVE_BENEATH) : openDir(root, parent, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS));
  const dirFd = dirs.get(parent);
  if (dirFd === undefined) return true; // gone, or below a link (git counts that as gone too)
  const name = basename(entry.path);
  const stat = statxAt(dirFd, name, AT_SYMLINK_NOFOLLOW);
  if (!stat || (stat.mode & S_IFMT) !== type) return true;
  // Nanoseconds compared when git recorded them (a same-size edit within the second is a change).
  const sameStat = stat.size % 2 ** 32 === entry.size && stat.mtime[0] % 2 ** 32 === entry.mtime && (entry.mtimeNs === 0 || stat.mtime[1] === entry.mtimeNs);
  if (sameStat && !racy(entry, check.indexTime)) return false;
  check.budget -= stat.size;
  if (check.budget < 0) throw new OverBudget();
  return contentId(dirFd, name, type, stat.size, check.algorithm) !== entry.oid;
}

/** The object id git gives the file's content (a blob of the bytes, or of a link's target). */
function contentId(dirFd: number, name: string, type: number, size: number, algorithm: "sha1" | "sha256"): string | undefined {
  const hasher = new Bun.CryptoHasher(algorithm);
  if (type === S_IFLNK) {
    const target = readlinkat(dirFd, name);
    return hasher.update(`blob ${target.length}\0`).update(target).digest("hex");
  }
  let fd: number;
  try {
    fd = openat2(dirFd, name, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW | O_CLOEXEC, 0, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
  } catch {
    return undefined;
  }
  try {
    const stat = statxAt(fd, "", AT_EMPTY_PATH);
    if (!stat || (stat.mode & S_IFMT) !== S_IFREG || stat.size !== size) return undefined;
    hasher.update(`blob ${size}\0`);
    const chunk = Buffer.allocUnsafe(256 * 1024);
    let left = size;
    for (let n; left > 0 && (n = readSync(fd, chunk, 0, Math.min(chunk.length, left), null)) > 0; left -= n) hasher.update(chunk.subarray(0, n));
    return left === 0 ? hasher.digest("hex") : undefined;
  } finally {
    closeSync(fd);
  }
}
