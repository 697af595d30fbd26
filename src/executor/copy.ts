/**
 * COPY and ADD without a container. Files are written into `root`: the image's file system as
 * it will be after the step (an overlay whose upper directory becomes the layer, or the bare
 * layer for --link). Every read and write goes through the root-confined file system, so a
 * symlink in the base, in the context or in a stage is followed inside the image only.
 *
 * Docker's destination rules apply: a relative destination is below WORKDIR; the destination
 * named in the Dockerfile is resolved through symlinks as BuildKit does (`COPY a /linkdir/`
 * writes where the link points; `COPY a /link-to-file` writes through it); a directory source
 * copies its contents; several sources need a destination directory ending in "/"; a file
 * goes inside an existing directory of the same name. Entries below the destination replace
 * what is there (a symlink is replaced, not written through). New parent directories get
 * mode 0755 and the --chown owner; existing ones keep theirs.
 *
 * Paths here are byte strings (one character per byte, see context/paths.ts): names that are
 * not ASCII or not UTF-8 land exactly as they were read.
 */
import { closeSync, openSync } from "node:fs";
import { posix } from "node:path";
import { diskFullError, UserError } from "../errors.ts";
import type { BuildContext } from "../context/context.ts";
import type { Ownership } from "../context/digest.ts";
import { IgnoreMatcher } from "../context/dockerignore.ts";
import { BadPatternError, compileGlob, hasWildcards, type Glob } from "../context/glob.ts";
import { displayPath, quotePath, rawFromText } from "../context/paths.ts";
import type { Instruction } from "../frontend/instructions.ts";
import { EnsuredDirectories, Root, type Stat } from "../rootfs/root.ts";
import { extractInto } from "../snapshot/extract.ts";
import { decompressArchive, archiveKindOf } from "./archive.ts";
import { isUrl, urlFileName, type Download } from "./download.ts";

export class CopyError extends UserError {}

type Transfer = Extract<Instruction, { kind: "COPY" | "ADD" }>;

/** Where an item's bytes come from. */
type ItemSource = { context: string } | { stage: string } | { host: string } | { content: string };

/** One thing to land: a file, directory or symlink. */
interface Item {
  /** Path in the image, absolute, a byte string. */
  target: string;
  /** "archive": a local tar ADD unpacks into `target` (a directory). */
  type: "file" | "dir" | "symlink" | "archive";
  mode: number;
  /** Seconds; undefined: the source's own time. */
  mtime?: number;
  /** The owner it keeps without --chown (files from a stage keep theirs, as in BuildKit). */
  owner?: Ownership;
  source?: ItemSource;
  linkTarget?: string;
  /** Files with the same key are one inode in the source: the first lands, the rest link to it. */
  hardLinkKey?: string;
}

export interface CopyInputs {
  instruction: Transfer;
  workdir: string;
  /** The image's file system the step writes into. */
  root: Root;
  /** The --chown owner (root when not given). */
  owner: Ownership;
  /** Where sources come from: the build context, or (COPY --from) a stage's or image's file system. */
  context?: BuildContext;
  source?: Root;
  /** ADD's URL sources, already fetched (and checked). */
  downloads?: Download[];
  /** A private directory for decompressing archives. */
  scratch: string;
}

const raw = (path: string) => Buffer.from(path, "latin1");

export function destinationOf(instruction: Transfer, workdir: string): { path: string; isDir: boolean } {
  const isDir = instruction.dest.endsWith("/") || instruction.dest === "." || instruction.dest.endsWith("/.");
  return { path: rawFromText(posix.resolve(workdir || "/", instruction.dest)), isDir };
}

interface SourceRoot {
  name: string;
  /** The source's path from the context (or stage) root, for --parents. */
  relative: string;
  isDir: boolean;
  items: (base: string) => Item[];
}

/** Lists what the copy would land, without writing anything. */
function planCopy(inputs: CopyInputs, files: SourceFiles): Item[] {
  const { instruction, root } = inputs;
  const dest = destinationOf(instruction, inputs.workdir);
  const roots = [...downloadRoots(inputs.downloads ?? []), ...(inputs.source ? stageRoots(inputs, inputs.source) : contextRoots(inputs))];
  if (roots.length + instruction.inline.length > 1 && !dest.isDir) {
    throw new CopyError(`When using ${instruction.kind} with more than one source file, the destination must be a directory and end with a /`);
  }
  // The destination as named is followed through symlinks inside the image (BuildKit's RootPath).
  const resolvedDest = root.resolvePath(raw(dest.path)).toString("latin1");
  const destIsDir = dest.isDir || (root.stat(raw(resolvedDest))?.isDirectory() ?? false);
  const unpack = instruction.kind === "ADD" && instruction.unpack !== false;
  const parents = instruction.kind === "COPY" && instruction.parents;
  const items: Item[] = [];
  for (const source of roots) {
    const base = parents ? posix.join(resolvedDest, source.relative) : source.isDir ? resolvedDest : destIsDir ? posix.join(resolvedDest, source.name) : resolvedDest;
    const rootItems = source.items(base);
    const only = rootItems[0];
    // ADD unpacks a local tar archive (plain, gzip, bzip2 or xz) into the destination directory.
    if (unpack && !source.isDir && rootItems.length === 1 && only.type === "file" && only.source && !("host" in only.source) && inputs.source === undefined) {
      if (files.with(only.source, (fd) => archiveKindOf(fd)) !== undefined) {
        items.push({ ...only, type: "archive", target: resolvedDest });
        continue;
      }
    }
    if (source.isDir) items.push({ target: base, type: "dir", mode: -1 });
    items.push(...rootItems);
  }
  for (const file of instruction.inline) {
    const name = rawFromText(file.name);
    items.push({ target: destIsDir ? posix.join(resolvedDest, name) : resolvedDest, type: "file", mode: 0o644, mtime: 0, source: { content: file.content } });
  }
  return items;
}

function downloadRoots(downloads: Download[]): SourceRoot[] {
  return downloads.map((download) => ({
    name: rawFromText(urlFileName(download.url)),
    relative: rawFromText(urlFileName(download.url)),
    isDir: false,
    items: (base) => [{ target: base, type: "file", mode: 0o600, mtime: download.mtime, source: { host: download.file } }],
  }));
}

function contextRoots(inputs: CopyInputs): SourceRoot[] {
  const { instruction, context } = inputs;
  const local = instruction.sources.filter((s) => !isUrl(s));
  if (!context || local.length === 0) return [];
  const selection = context.select(local, { excludes: instruction.excludes });
  return selection.roots.map((root) => {
    const entry = root.path === "" ? undefined : context.byPath.get(root.path)!;
    const isDir = (entry?.type ?? "dir") === "dir";
    const prefix = root.path === "" ? "" : root.path + "/";
    const members = isDir ? selection.entries.filter((e) => e.path.startsWith(prefix) && e.path !== root.path) : [entry!];
    return {
      name: root.name,
      relative: pivoted(rawFromText(root.source), root.path),
      isDir,
      items: (base: string) =>
        members.map((e) => ({
          target: isDir ? posix.join(base, e.path.slice(prefix.length)) : base,
          type: e.type,
          mode: e.mode,
          source: e.type === "file" ? { context: e.path } : undefined,
          linkTarget: e.type === "symlink" ? (e.linkTarget ?? "") : undefined,
          hardLinkKey: e.inode,
        })),
    };
  });
}

function stageRoots(inputs: CopyInputs, source: Root): SourceRoot[] {
  const { instruction } = inputs;
  const excluded = instruction.excludes.length ? excludeMatcher(instruction.excludes) : undefined;
  const roots: SourceRoot[] = [];
  for (const text of instruction.sources) {
    for (const found of matchInRoot(source, rawFromText(text), text)) {
      // A symlink named as the source is followed (BuildKit copies what it points to).
      const real = source.resolvePath(raw(found)).toString("latin1");
      const stat = source.lstat(raw(real));
      if (!stat) throw new CopyError(`${text}: no such file or directory in the source`);
      roots.push({
        name: posix.basename(found),
        relative: pivoted(rawFromText(text), found.replace(/^\/+/, "")),
        isDir: stat.isDirectory(),
        items: (base) => listTree(source, real, base, stat, excluded),
      });
    }
  }
  return roots;
}

/**
 * A source path or wildcard in `root`. As BuildKit's copy: the components before the first one
 * with a wildcard are a plain path; from there each component is a Go filepath.Match pattern
 * (see context/glob.ts) matched against the names of the directories reached so far.
 */
function matchInRoot(root: Root, pattern: string, text: string): string[] {
  const parts = posix.normalize("/" + pattern).split("/").filter(Boolean);
  const first = parts.findIndex(hasWildcards);
  const plain = "/" + (first < 0 ? parts : parts.slice(0, first)).join("/");
  if (first < 0) {
    if (!root.lstat(raw(plain))) throw new CopyError(`${text}: no such file or directory in the source`);
    return [plain];
  }
  let candidates = [plain];
  for (const part of parts.slice(first)) {
    const glob = componentGlob(part, text);
    candidates = candidates.flatMap((c) => {
      if (!root.stat(raw(c))?.isDirectory()) return [];
      return root.readdir(raw(c)).map((n) => n.toString("latin1")).filter((n) => glob.matchesRaw(n)).sort().map((n) => posix.join(c, n));
    });
  }
  if (candidates.length === 0) throw new CopyError(`no files match ${text} in the source`);
  return candidates;
}

/** One component's pattern (a byte string), or a CopyError naming the source and the reason. */
function componentGlob(part: string, text: string): Glob {
  try {
    return compileGlob(Buffer.from(part, "latin1"));
  } catch (error) {
    if (error instanceof BadPatternError) throw new CopyError(`bad pattern in ${JSON.stringify(text)}: ${error.message}`);
    throw error;
  }
}

/**
 * The part of a source path --parents keeps: all of it, or what follows a `/./` pivot
 * (`COPY --parents ./build/./bin/app /dst/` lands `/dst/bin/app`).
 */
function pivoted(source: string, path: string): string {
  const pivot = source.indexOf("/./");
  if (pivot < 0) return path;
  const prefix = posix.normalize(source.slice(0, pivot)).replace(/^\.?\/*/, "");
  return prefix && path.startsWith(prefix + "/") ? path.slice(prefix.length + 1) : path;
}

function excludeMatcher(patterns: string[]): IgnoreMatcher {
  return new IgnoreMatcher(patterns.map((p) => (p.startsWith("!") ? { pattern: p.slice(1), exclusion: true } : { pattern: p, exclusion: false })));
}

/** The entries of a stage's tree at `path` (never following a symlink below it), landing at `base`. */
function listTree(source: Root, path: string, base: string, stat: Stat, excluded?: IgnoreMatcher): Item[] {
  const items: Item[] = [];
  const item = (from: string, target: string, s: Stat): Item | undefined => {
    const common = { target, mode: s.mode & 0o7777, mtime: s.mtime[0], owner: { uid: s.uid, gid: s.gid } };
    if (s.isDirectory()) return { ...common, type: "dir" };
    if (s.isSymbolicLink()) return { ...common, type: "symlink", linkTarget: source.readlink(raw(from)).toString("latin1") };
    if (s.isFile()) return { ...common, type: "file", source: { stage: from }, ...(s.nlink > 1 ? { hardLinkKey: `${s.dev}:${s.ino}` } : {}) };
    return undefined; // devices, FIFOs and sockets are not copied
  };
  const visit = (from: string, target: string, s: Stat) => {
    if (excluded && excluded.match(displayPath(posix.relative(base, target))).excluded) return;
    const found = item(from, target, s);
    if (!found) return;
    items.push(found);
    if (s.isDirectory()) visitChildren(from, target);
  };
  const visitChildren = (from: string, target: string) => {
    const names = source.readdir(raw(from)).map((n) => n.toString("latin1")).sort();
    for (const name of names) {
      const child = posix.join(from, name);
      const childStat = source.lstat(raw(child));
      if (childStat) visit(child, posix.join(target, name), childStat);
    }
  };
  if (stat.isDirectory()) visitChildren(path, base);
  else {
    const found = item(path, base, stat);
    if (found) items.push(found);
  }
  return items;
}

/**
 * Opens the files items come from: context files through a root that follows no links (the
 * walk saw a regular file; a link or FIFO put there since is refused), stage files through the
 * stage's root, downloads by their own path. The context root is opened once per copy.
 */
class SourceFiles {
  private contextRoot?: Root;
  constructor(private readonly inputs: CopyInputs) {}

  /** Runs `use` with the open, regular source file and its metadata. */
  with<T>(source: ItemSource, use: (fd: number, stat: Stat) => T): T {
    const fd = this.open(source);
    try {
      const stat = Root.statDescriptor(fd);
      if (!stat.isFile()) throw new CopyError(`${this.describe(source)} is not a regular file any more`);
      return use(fd, stat);
    } finally {
      closeSync(fd);
    }
  }

  close() {
    this.contextRoot?.close();
  }

  private open(source: ItemSource): number {
    if ("stage" in source) return this.inputs.source!.openFile(raw(source.stage), false);
    if ("host" in source) return openSync(source.host, "r");
    if (!("context" in source)) throw new Error("inline content has no file");
    try {
      this.contextRoot ??= Root.open(this.inputs.context!.root, { symlinks: "none" });
      return this.contextRoot.openFile(raw(source.context), false);
    } catch (error) {
      throw new CopyError(`${quotePath(source.context)} in the build context cannot be read: ${(error as Error).message}`);
    }
  }

  private describe(source: ItemSource): string {
    return "context" in source ? quotePath(source.context) : "stage" in source ? displayPath(source.stage) : "host" in source ? source.host : "inline content";
  }
}

/** Writes the copy into `inputs.root`. */
export function executeCopy(inputs: CopyInputs) {
  const files = new SourceFiles(inputs);
  try {
    writeItems(inputs, planCopy(inputs, files), files);
  } finally {
    files.close();
  }
}

function writeItems(inputs: CopyInputs, items: Item[], files: SourceFiles) {
  const { root, instruction } = inputs;
  const chmod = instruction.chmod ? parseInt(instruction.chmod, 8) : undefined;
  const chown = instruction.chown ? inputs.owner : undefined;
  // A wildcard that matched nothing lands nothing, not even the destination (BuildKit).
  if (items.length === 0) return;
  const dest = destinationOf(instruction, inputs.workdir);
  const directories = new EnsuredDirectories(root, { mode: 0o755, owner: inputs.owner });

  if (dest.isDir) directories.ensure(root.resolvePath(raw(dest.path)).toString("latin1"));
  const landed = new Map<string, string>(); // hard-link key → where its first file landed
  for (const item of items) {
    const target = raw(item.target);
    const owner = chown ?? item.owner ?? inputs.owner;
    directories.ensure(posix.dirname(item.target));
    if (item.type === "dir") {
      // The destination of a directory source (mode -1) keeps what it has, or is made new.
      if (item.mode < 0) directories.ensure(item.target);
      else {
        directories.forget(item.target);
        if (!root.mkdir(target, { mode: chmod ?? item.mode, owner })) root.setAttributes(target, { owner, mode: chmod ?? item.mode });
        directories.add(item.target);
      }
      continue;
    }
    directories.forget(item.target);
    const mode = chmod ?? item.mode;
    switch (item.type) {
      case "file":
        if (item.hardLinkKey && landed.has(item.hardLinkKey)) {
          root.link(raw(landed.get(item.hardLinkKey)!), target);
          break;
        }
        if (item.hardLinkKey) landed.set(item.hardLinkKey, item.target);
        if (item.source && "content" in item.source) {
          root.writeFile(target, { content: item.source.content }, { mode, owner, mtime: item.mtime });
        } else {
          files.with(item.source!, (fd, stat) => root.writeFile(target, { from: fd, size: stat.size }, { mode, owner, mtime: item.mtime || stat.mtime[0] }));
        }
        break;
      case "symlink":
        root.symlink(raw(item.linkTarget ?? ""), target, { owner, mtime: item.mtime });
        break;
      case "archive":
        directories.ensure(item.target);
        files.with(item.source!, (fd) => unpackArchive(fd, inputs, item.target, chown));
        break;
    }
  }
}

/** Unpacks the archive open as `fd` into `directory` of the root. */
function unpackArchive(fd: number, inputs: CopyInputs, directory: string, owner: Ownership | undefined) {
  let tar: ReturnType<typeof decompressArchive> | undefined;
  try {
    tar = decompressArchive(fd, inputs.scratch);
    extractInto(tar.path, inputs.root, { whiteouts: false, owner, base: directory });
  } catch (error) {
    throw new CopyError(`${inputs.instruction.kind} ${inputs.instruction.sources.join(" ")}: ${(diskFullError(error) ?? (error as Error)).message}`);
  } finally {
    tar?.remove();
  }
}
