/**
 * The build context as the rest of MemoBuild sees it: which files a build may read (after
 * `.dockerignore`), each with a content digest, and `select()` for what one COPY/ADD reads.
 *
 *   const context = loadContext({ contextDir, dockerfile, statCacheFile });
 *   context.digest();                                  // the whole context
 *   context.select(["src/", "*.json"], { owner });     // entries + digest for one COPY
 */
import { existsSync, lstatSync, statSync } from "node:fs";
import { HostFileError, readRegularFile } from "../util/host-file.ts";
import { join, relative, resolve } from "node:path";
import { blake3Hex } from "../hash/blake3.ts";
import { FileHashError, HashPool, type HashedFile } from "../hash/parallel.ts";
import { IgnoreMatcher, IgnorePatternError, parseIgnoreFile, type IgnorePattern } from "./dockerignore.ts";
import { directoryDigests, entryDigest, walkOrderDigests, ROOT_OWNER, type DigestEntry, type Ownership, type TreeReuse } from "./digest.ts";
import { ContextError } from "./errors.ts";
import { BadPatternError, compileGlob, splitWildcards, type Glob } from "./glob.ts";
import { cleanContextPath, displayPath, fsPath, quotePath, rawFromText, rootBuffer } from "./paths.ts";
import { StatCache } from "./stat-cache.ts";
import { walkContext, type EntryType, type ExcludedEntry, type SkippedEntry, type WalkedEntry, type WalkResult } from "./walk.ts";
import { keepOutOfFTL } from "../util/jit.ts";

export interface ContextEntry extends DigestEntry {
  /** Relative path as a byte string. */
  path: string;
  /** The path as UTF-8 text, for display and matching. */
  name: string;
  type: EntryType;
  mode: number;
  size: number;
  uid: number;
  gid: number;
  /** For a file with other hard links in the context: its inode (`dev:ino`), shared by them all. */
  inode?: string;
}

export interface LoadOptions {
  contextDir: string;
  /** The Dockerfile: `<Dockerfile>.dockerignore` beside it wins over the context's `.dockerignore`. */
  dockerfile?: string;
  /** Where the stat cache lives; without it (or `statCache`) every file is hashed. */
  statCacheFile?: string;
  /** An open stat cache to use (and leave open) instead of a file. */
  statCache?: StatCache;
}

export interface LoadStats {
  files: number;
  /** Files whose content was read and hashed in this load. */
  hashed: number;
  bytesHashed: number;
  /** Files whose digest came from the stat cache. */
  fromCache: number;
}

export interface Selection {
  /**
   * What each source matched: context paths (byte strings, symlinks resolved), in order, and
   * the name it lands under (a symlink named as a source lands under its own name, as BuildKit).
   */
  roots: { source: string; path: string; name: string; type: EntryType }[];
  /** Every entry that lands: the roots and everything below directory roots. */
  entries: ContextEntry[];
  /** BLAKE3 over the sources and the trees they select, as they will land. */
  digest: string;
}

export interface SelectOptions {
  /** `--exclude` patterns, relative to each selected directory. */
  excludes?: string[];
  /** The owner the files will have (`--chown`); root by default. */
  owner?: Ownership;
}

/** Finds the ignore file that applies: `<Dockerfile>.dockerignore`, else `<context>/.dockerignore`. */
export function ignoreFileFor(contextDir: string, dockerfile?: string): string | undefined {
  // By the entry itself: a link there (even a dangling one) is found, and refused by readIgnoreFile.
  const present = (path: string) => lstatSync(path, { throwIfNoEntry: false }) !== undefined;
  if (dockerfile) {
    const specific = `${dockerfile}.dockerignore`;
    if (present(specific)) return specific;
  }
  const general = join(contextDir, ".dockerignore");
  return present(general) ? general : undefined;
}

/** A .dockerignore larger than this is refused unread. */
const MAX_IGNORE_FILE_BYTES = 16 * 1024 * 1024;

/**
 * A .dockerignore's text. It comes with the repository: it must be the file itself (a link
 * could lead to /dev/zero, a FIFO or a file outside), a regular file, read within a limit.
 */
export function readIgnoreFile(path: string, shown: string): string {
  try {
    return readRegularFile(path, { follow: false, limit: MAX_IGNORE_FILE_BYTES, what: shown }).toString("utf8");
  } catch (error) {
    if (error instanceof HostFileError) throw new ContextError(error.message);
    throw error;
  }
}

export class BuildContext {
  private pathIndex?: Map<string, ContextEntry>;

  constructor(
    readonly root: string,
    readonly entries: ContextEntry[],
    readonly excluded: ExcludedEntry[],
    readonly skipped: SkippedEntry[],
    readonly warnings: string[],
    readonly ignoreFile: string | undefined,
    readonly stats: LoadStats,
    /** Every directory's digest for files landing as root, when loadContext made them already. */
    private rootOwnedDigests?: Map<string, Buffer>,
  ) {}

  /** Entries by path, made on first use: a whole-context digest never needs it (~10 ms of a warm 20,000-file digest). */
  get byPath(): Map<string, ContextEntry> {
    return (this.pathIndex ??= new Map(this.entries.map((e) => [e.path, e])));
  }

  /** Every directory's digest for files landing with `owner`; computed once for root. */
  private directoryDigests(owner: Ownership): Map<string, Buffer> {
    const isRoot = owner.uid === ROOT_OWNER.uid && owner.gid === ROOT_OWNER.gid;
    const all = () => walkOrderDigests(this.entries, owner) ?? directoryDigests(this.entries, owner);
    if (!isRoot) return all();
    return (this.rootOwnedDigests ??= all());
  }

  /** Digest of the whole context as `COPY . /dst` would land it. */
  digest(owner: Ownership = ROOT_OWNER): string {
    return this.directoryDigests(owner).get("")!.toString("hex");
  }

  /** What a COPY/ADD with these sources reads, and its digest. */
  select(sources: string[], options: SelectOptions = {}): Selection {
    const owner = options.owner ?? ROOT_OWNER;
    const excludes = options.excludes?.length
      ? new IgnoreMatcher(options.excludes.map((pattern) => (pattern.startsWith("!") ? { pattern: pattern.slice(1), exclusion: true } : { pattern, exclusion: false })))
      : undefined;
    const roots: Selection["roots"] = [];
    const selected = new Map<string, ContextEntry>();
    // The owner and the exclude patterns change what lands, so they are part of the digest.
    const parts: Buffer[] = [Buffer.from(JSON.stringify({ owner, excludes: options.excludes ?? [] }) + "\0", "utf8")];

    for (const source of sources) {
      for (const { path, name } of this.resolveSourceNamed(source)) {
        const root = path === "" ? undefined : this.byPath.get(path)!;
        const type: EntryType = root?.type ?? "dir";
        roots.push({ source, path, name, type });
        let below: ContextEntry[] = [];
        let digest: Buffer;
        if (type === "dir") {
          const prefix = path === "" ? "" : path + "/";
          below = this.entries.filter((e) => e.path.startsWith(prefix) && e.path !== path);
          let contents: Buffer;
          if (excludes) {
            below = below.filter((e) => !excludes.match(displayPath(e.path.slice(prefix.length))).excluded);
            contents = directoryDigests(below, owner, path).get(path)!;
          } else {
            contents = this.directoryDigests(owner).get(path)!;
          }
          // The directory's own mode lands too (on a destination COPY creates).
          digest = root ? entryDigest("", root, owner, contents) : contents;
        } else {
          digest = entryDigest(name, root!, owner);
        }
        for (const entry of [...(root ? [root] : []), ...below]) selected.set(entry.path, entry);
        parts.push(Buffer.from(`${path}\0`, "latin1"), digest);
      }
    }
    const entries = [...selected.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    // Files that land hard-linked to each other land as one inode: that is part of what lands.
    for (const [member, first] of hardLinkGroups(entries)) parts.push(Buffer.from(`link\0${member}\0${first}\0`, "latin1"));
    return { roots, entries, digest: blake3Hex(Buffer.concat(parts)) };
  }

  /**
   * A COPY source → the context paths it names. Wildcards (`*`, `?`, `[…]`) follow Go's
   * filepath.Match (see glob.ts), from the first component that has one, as BuildKit's copy;
   * symlinks on the way are followed inside the context only.
   */
  resolveSource(source: string): string[] {
    return this.resolveSourceNamed(source).map((match) => match.path);
  }

  /** resolveSource with the name each match lands under: its own, before links are followed. */
  resolveSourceNamed(source: string): { path: string; name: string }[] {
    const named = (path: string) => ({ path: this.followSymlinks(path, source), name: path.slice(path.lastIndexOf("/") + 1) });
    const cleaned = cleanContextPath(source);
    if (cleaned.outside) throw new ContextError(`source ${JSON.stringify(source)} is outside the build context`);
    const { prefix, pattern } = splitWildcards(cleaned.path);
    if (pattern !== "") {
      const glob = sourceGlob(pattern, source);
      // The plain components before the first pattern are a directory, taken as they are.
      const base = prefix === "" ? "" : rawFromText(prefix) + "/";
      const matches = this.entries
        .filter((e) => e.path.startsWith(base) && glob.matchesRaw(e.path.slice(base.length)))
        .map((e) => named(e.path));
      // A wildcard that matches nothing copies nothing, as BuildKit's COPY (AllowEmptyWildcard).
      const seen = new Set<string>();
      return matches.filter((m) => !seen.has(`${m.path}\0${m.name}`) && seen.add(`${m.path}\0${m.name}`));
    }
    const raw = rawFromText(cleaned.path);
    if (raw === "") return [{ path: "", name: "" }];
    return [named(raw)];
  }

  /** Resolves each symlink along `path` (all components) without leaving the context. */
  private followSymlinks(path: string, source: string): string {
    let remaining = path.split("/");
    let resolved: string[] = [];
    // The symlink whose target is being resolved, while its components are: a miss there is its fault.
    let via: { link: string; target: string; left: number } | undefined;
    for (let hops = 0; remaining.length > 0; ) {
      const component = remaining.shift()!;
      const candidate = [...resolved, component].join("/");
      const entry = this.byPath.get(candidate);
      if (!entry) throw this.notFound(source, candidate, via);
      if (entry.type !== "symlink") {
        resolved.push(component);
        if (via && --via.left <= 0) via = undefined;
        continue;
      }
      if (++hops > 40) throw new ContextError(`source ${JSON.stringify(source)}: too many levels of symbolic links`);
      const target = entry.linkTarget ?? "";
      const joined = target.startsWith("/") ? target : [...resolved, target].join("/");
      const next = cleanContextPath(joined);
      via = { link: candidate, target, left: next.path === "" ? 0 : next.path.split("/").length };
      if (next.outside && !target.startsWith("/")) {
        throw new ContextError(`source ${JSON.stringify(source)} leads outside the build context through symlink ${quotePath(candidate)}`);
      }
      // An absolute target is read relative to the context root, as BuildKit does.
      resolved = [];
      remaining = [...(next.path === "" ? [] : next.path.split("/")), ...remaining];
    }
    return resolved.join("/");
  }

  /** Why `candidate` (reached from `source`, maybe through a symlink) is not there to copy. */
  private notFound(source: string, candidate: string, via?: { link: string; target: string }): ContextError {
    const named = `source ${JSON.stringify(source)}`;
    const special = this.skipped.find((s) => s.path === candidate);
    if (special) return new ContextError(`${named}: ${quotePath(candidate)} is a ${special.kind}; only files, directories and symlinks can be copied`);
    if (this.isExcluded(candidate)) return new ContextError(`${named} not found in the build context (.dockerignore excludes it)`);
    if (via) {
      const absolute = via.target.startsWith("/") ? ", and an absolute target is read inside the context, as BuildKit does" : "";
      return new ContextError(
        `${named}: symlink ${quotePath(via.link)} points to ${JSON.stringify(via.target)}, which is not in the build context${absolute}`,
      );
    }
    return new ContextError(`${named} not found in the build context`);
  }

  private isExcluded(path: string): boolean {
    return this.excluded.some((e) => path === e.path || path.startsWith(e.path + "/"));
  }
}

/** The compiled pattern of a COPY source, or the reason it is malformed, naming the source. */
function sourceGlob(pattern: string, source: string): Glob {
  try {
    return compileGlob(pattern);
  } catch (error) {
    if (error instanceof BadPatternError) throw new ContextError(`invalid wildcard in ${JSON.stringify(source)}: ${error.message}`);
    throw error;
  }
}

/** A path as messages show it: relative to the working directory when it is below it. */
function shownPath(path: string): string {
  const shown = relative(process.cwd(), path);
  return shown === "" || shown.startsWith("..") ? path : shown;
}

/**
 * Hard links among `entries` (sorted by path): each file that shares its inode with an earlier
 * one → that first path. BuildKit keeps such files linked within one COPY.
 */
export function hardLinkGroups(entries: ContextEntry[]): Map<string, string> {
  const first = new Map<string, string>();
  const links = new Map<string, string>();
  for (const entry of entries) {
    if (!entry.inode) continue;
    const seen = first.get(entry.inode);
    if (seen === undefined) first.set(entry.inode, entry.path);
    else links.set(entry.path, seen);
  }
  return links;
}

function treeReuse(cache: StatCache): TreeReuse {
  return { stored: (dir) => cache.storedTree(dir), record: (dir, tree) => cache.recordTree(dir, tree) };
}

/** Walks the context, hashes what changed since the last load, and returns it. */
export async function loadContext(options: LoadOptions): Promise<BuildContext> {
  const contextDir = resolve(options.contextDir);
  if (!existsSync(contextDir) || !statSync(contextDir).isDirectory()) {
    throw new ContextError(`build context ${options.contextDir} is not a directory`);
  }
  const ignoreFile = ignoreFileFor(contextDir, options.dockerfile);
  let patterns: IgnorePattern[] = [];
  let matcher: IgnoreMatcher;
  try {
    if (ignoreFile) patterns = parseIgnoreFile(readIgnoreFile(ignoreFile, shownPath(ignoreFile)), shownPath(ignoreFile));
    matcher = new IgnoreMatcher(patterns);
  } catch (error) {
    if (error instanceof IgnorePatternError) throw new ContextError(error.message);
    throw error;
  }

  const root = rootBuffer(contextDir);
  const rootText = root.toString("latin1");
  const ownsCache = !options.statCache;
  const cache = options.statCache ?? (options.statCacheFile ? StatCache.open(options.statCacheFile) : StatCache.inMemory());
  const stats: LoadStats = { files: 0, hashed: 0, bytesHashed: 0, fromCache: 0 };
  // Files are looked up as the walk finds them, and those the cache cannot vouch for are hashed
  // from then on, by workers, while the walk goes on. Taken before any file is read.
  const hashedAtMs = Date.now();
  const pool = new HashPool();
  /** Per file, in the walk's order: its cached digest, or its index in the pool. */
  const found: (Uint8Array | number)[] = [];
  const toHash: WalkedEntry[] = [];
  const onFile = (entry: WalkedEntry) => {
    const cached = cache.lookup(entry.parent, entry.base, entry.stats, entry.at);
    if (cached) return void found.push(cached);
    toHash.push(entry);
    found.push(pool.add({ path: fsPath(root, entry.path, rootText), size: entry.stats.size(entry.at) }));
  };
  keepOutOfFTL(onFile); // once per file (see util/jit.ts)
  try {
    let walked: WalkResult;
    let hashed: HashedFile[];
    try {
      walked = walkContext(root, matcher, onFile);
      hashed = await pool.finish();
    } catch (error) {
      pool.abandon();
      cache.discard();
      if (!(error instanceof FileHashError)) throw error;
      const reason = error.code === "EACCES" ? "permission denied" : error.code === "ENOENT" ? "it disappeared during the build" : error.message;
      throw new ContextError(`cannot read ${quotePath(toHash[error.index].path)} in the build context: ${reason}`);
    }
    // The walk's entries are the context's: a file only gains its digest.
    let file = 0;
    const each = (entry: WalkedEntry) => {
      if (entry.type !== "file") return;
      stats.files++;
      const digest = found[file++];
      if (typeof digest !== "number") {
        stats.fromCache++;
        entry.contentDigest = digest;
        return;
      }
      stats.hashed++;
      stats.bytesHashed += hashed[digest].size;
      cache.record(entry.parent, entry.base, entry.stats, entry.at, hashed[digest].digest, hashedAtMs);
      entry.contentDigest = hashed[digest].digest;
    };
    keepOutOfFTL(each); // once per entry (see util/jit.ts)
    walked.entries.forEach(each);
    // With a cache that outlives this load, the directory digests are made now, so the cache
    // stores them (and gives back those still valid) in the same flush as the files they cover.
    const rootOwned = ownsCache && !options.statCacheFile ? undefined : walkOrderDigests(walked.entries, ROOT_OWNER, treeReuse(cache));
    cache.flush();
    return new BuildContext(contextDir, walked.entries, walked.excluded, walked.skipped, walked.warnings, ignoreFile, stats, rootOwned);
  } finally {
    if (ownsCache) cache.close();
  }
}
