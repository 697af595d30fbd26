/**
 * COPY and ADD without a container: the files are written straight into a new snapshot
 * directory (the step's layer). Docker's destination rules apply: a relative destination is
 * below WORKDIR; a directory source copies its contents; several sources need a destination
 * directory ending in "/"; a file goes inside an existing directory of the same name.
 * Parent directories that already exist below keep their mode and owner.
 */
import { UserError } from "../errors.ts";
import {
  chmodSync, closeSync, copyFileSync, lchownSync, lstatSync, lutimesSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync,
  readSync, rmSync, symlinkSync, utimesSync, writeFileSync, type Stats,
} from "node:fs";
import { extractLayer } from "../snapshot/extract.ts";
import { IgnoreMatcher } from "../context/dockerignore.ts";
import { isUrl, urlFileName, type Download } from "./download.ts";
import { join, posix } from "node:path";
import type { BuildContext } from "../context/context.ts";
import type { Ownership } from "../context/digest.ts";
import { fsPath } from "../context/paths.ts";
import type { Instruction } from "../frontend/instructions.ts";
import type { LayerView } from "../snapshot/view.ts";

export class CopyError extends UserError {}

type Transfer = Extract<Instruction, { kind: "COPY" | "ADD" }>;

/** One thing to land: a file, directory or symlink with where its bytes come from. */
interface Item {
  /** Path in the image, absolute. */
  target: string;
  /** "archive": a local tar ADD unpacks into `target` (a directory). */
  type: "file" | "dir" | "symlink" | "archive";
  mode: number;
  mtime: number;
  /** On-disk source for files. */
  source?: string | Buffer;
  content?: string;
  linkTarget?: string | Buffer;
}

export interface CopyInputs {
  instruction: Transfer;
  workdir: string;
  /** The image's filesystem below this step (for destination and parent-directory rules). */
  view: LayerView;
  owner: Ownership;
  /** Where sources come from: the build context, or a directory (a stage's or image's rootfs). */
  context?: BuildContext;
  sourceRoot?: string;
  /** ADD's URL sources, already fetched (and checked). */
  downloads?: Download[];
}

export function destinationOf(instruction: Transfer, workdir: string): { path: string; isDir: boolean } {
  const isDir = instruction.dest.endsWith("/") || instruction.dest === "." || instruction.dest.endsWith("/.");
  return { path: posix.resolve(workdir || "/", instruction.dest), isDir };
}

/** Lists what the copy would land, without writing anything. */
export function planCopy(inputs: CopyInputs): Item[] {
  const { instruction } = inputs;
  const dest = destinationOf(instruction, inputs.workdir);
  const items: Item[] = [];
  /** `relative`: the source's path from the context (or source) root, for --parents. */
  const roots: { name: string; relative: string; items: (base: string) => Item[]; isDir: boolean }[] = [];

  for (const download of inputs.downloads ?? []) {
    roots.push({
      name: urlFileName(download.url),
      relative: urlFileName(download.url),
      isDir: false,
      items: (base) => [{ target: base, type: "file", mode: 0o600, mtime: download.mtime, source: download.file }],
    });
  }
  const localSources = instruction.sources.filter((s) => !isUrl(s));
  if (inputs.context && !inputs.sourceRoot && localSources.length > 0) {
    const selection = inputs.context.select(localSources, { excludes: instruction.excludes });
    for (const root of selection.roots) {
      const entry = root.path === "" ? undefined : inputs.context.byPath.get(root.path)!;
      const isDir = (entry?.type ?? "dir") === "dir";
      const prefix = root.path === "" ? "" : root.path + "/";
      const members = isDir ? selection.entries.filter((e) => e.path.startsWith(prefix) && e.path !== root.path) : [entry!];
      const rootBuffer = Buffer.from(inputs.context.root);
      roots.push({
        name: root.path.slice(root.path.lastIndexOf("/") + 1),
        relative: pivoted(root.source, Buffer.from(root.path, "latin1").toString("utf8")),
        isDir,
        items: (base) =>
          members.map((e) => {
            const relative = isDir ? e.path.slice(prefix.length) : "";
            const target = relative ? posix.join(base, Buffer.from(relative, "latin1").toString("utf8")) : base;
            return {
              target,
              type: e.type,
              mode: e.mode,
              mtime: 0,
              source: e.type === "file" ? fsPath(rootBuffer, e.path, inputs.context!.root) : undefined,
              linkTarget: e.type === "symlink" ? Buffer.from(e.linkTarget ?? "", "latin1") : undefined,
            };
          }),
      });
    }
  } else if (inputs.sourceRoot) {
    for (const source of instruction.sources) {
      for (const found of resolveInDirectory(inputs.sourceRoot, source)) {
        const stat = lstatSync(found.path);
        const excluded = instruction.excludes.length ? excludeMatcher(instruction.excludes) : undefined;
        roots.push({
          name: posix.basename(found.relative) || "",
          relative: pivoted(source, found.relative.replace(/^\/+/, "")),
          isDir: stat.isDirectory(),
          items: (base) => listTree(found.path, base, stat, excluded),
        });
      }
    }
  }

  const inlineCount = instruction.inline.length;
  if (roots.length + inlineCount > 1 && !dest.isDir) {
    throw new CopyError(`When using ${instruction.kind} with more than one source file, the destination must be a directory and end with a /`);
  }
  const unpack = instruction.kind === "ADD" && instruction.unpack !== false;
  const parents = instruction.kind === "COPY" && instruction.parents;
  for (const root of roots) {
    const base = parents
      ? posix.join(dest.path, root.relative) // --parents keeps the source's directories
      : root.isDir
        ? dest.path
        : dest.isDir || inputs.view.isDirectory(dest.path)
          ? posix.join(dest.path, root.name)
          : dest.path;
    const rootItems = root.items(base);
    // ADD unpacks a local tar archive (plain, gzip, bzip2 or xz) into the destination directory.
    const fromUrl = inputs.downloads?.some((d) => d.file === rootItems[0]?.source);
    if (unpack && !fromUrl && !root.isDir && rootItems.length === 1 && rootItems[0].type === "file" && rootItems[0].source !== undefined && archiveKind(rootItems[0].source)) {
      items.push({ ...rootItems[0], type: "archive", target: dest.path });
      continue;
    }
    items.push(...rootItems);
  }
  for (const file of instruction.inline) {
    const target = dest.isDir || inputs.view.isDirectory(dest.path) ? posix.join(dest.path, file.name) : dest.path;
    items.push({ target, type: "file", mode: 0o644, mtime: 0, content: file.content });
  }
  return items;
}

/** Wildcards match within one path component (Go's filepath.Match), from `root`. */
function resolveInDirectory(root: string, source: string): { path: string; relative: string }[] {
  const cleaned = posix.normalize("/" + source).replace(/\/+$/, "") || "/";
  if (!/[*?[]/.test(cleaned)) {
    const path = join(root, cleaned);
    try {
      lstatSync(path);
    } catch {
      throw new CopyError(`${source}: no such file or directory in the source`);
    }
    return [{ path, relative: cleaned }];
  }
  const matches = [...new Bun.Glob(cleaned.slice(1)).scanSync({ cwd: root, dot: true, onlyFiles: false, followSymlinks: false })].sort();
  if (matches.length === 0) throw new CopyError(`no files match ${source} in the source`);
  return matches.map((m) => ({ path: join(root, m), relative: "/" + m }));
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

function listTree(path: string, base: string, stat: Stats, excluded?: IgnoreMatcher): Item[] {
  const items: Item[] = [];
  const visit = (current: string, target: string, s: Stats) => {
    if (excluded && target !== base && excluded.match(posix.relative(base, target)).excluded) return;
    const mtime = Math.floor(s.mtimeMs / 1000);
    if (s.isDirectory()) {
      items.push({ target, type: "dir", mode: s.mode & 0o7777, mtime });
      for (const name of readdirSync(current).sort()) visit(join(current, name), posix.join(target, name), lstatSync(join(current, name)));
    } else if (s.isSymbolicLink()) {
      items.push({ target, type: "symlink", mode: 0o777, mtime, linkTarget: readlinkSync(current, { encoding: "buffer" }) });
    } else if (s.isFile()) {
      items.push({ target, type: "file", mode: s.mode & 0o7777, mtime, source: current });
    }
  };
  if (stat.isDirectory()) {
    for (const name of readdirSync(path).sort()) visit(join(path, name), posix.join(base, name), lstatSync(join(path, name)));
  } else visit(path, base, stat);
  return items;
}

type ArchiveKind = "tar" | "gzip" | "bzip2" | "xz";

/** Recognizes an archive by its first bytes, as Docker does. */
export function archiveKind(path: string | Buffer): ArchiveKind | undefined {
  const head = Buffer.alloc(262);
  const fd = openSync(path, "r");
  let n: number;
  try {
    n = readSync(fd, head, 0, head.length, 0);
  } finally {
    closeSync(fd);
  }
  if (n >= 2 && head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (n >= 3 && head.toString("latin1", 0, 3) === "BZh") return "bzip2";
  if (n >= 6 && head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return "xz";
  if (n >= 262 && head.toString("latin1", 257, 262) === "ustar") return "tar";
  return undefined;
}

/** Unpacks an archive into `directory` (inside the layer), safely. */
function unpackArchive(source: string | Buffer, directory: string, owner: Ownership | undefined, scratch: string) {
  const kind = archiveKind(source)!;
  let tar: string | Buffer = source;
  if (kind !== "tar") {
    mkdirSync(scratch, { recursive: true });
    tar = join(scratch, `archive-${Math.random().toString(36).slice(2)}.tar`);
    if (kind === "gzip") writeFileSync(tar, Bun.gunzipSync(readFileSync(source)));
    else {
      const tool = kind === "bzip2" ? "bzip2" : "xz";
      const result = Bun.spawnSync([tool, "-dc"], { stdin: Bun.file(source.toString()), stdout: "pipe", stderr: "pipe" });
      if (result.exitCode !== 0) throw new CopyError(`cannot decompress ${source}: ${result.stderr.toString().trim() || `${tool} is missing`}`);
      writeFileSync(tar, result.stdout);
    }
  }
  try {
    extractLayer(tar.toString(), directory, { whiteouts: false, owner });
  } catch (error) {
    throw new CopyError(`ADD ${source}: ${(error as Error).message}`);
  } finally {
    if (tar !== source) rmSync(scratch, { recursive: true, force: true });
  }
}

/** Writes the copy into `upper` (an empty snapshot directory). */
export function executeCopy(inputs: CopyInputs, upper: string) {
  const items = planCopy(inputs);
  const chmod = inputs.instruction.chmod ? parseInt(inputs.instruction.chmod, 8) : undefined;
  const { uid, gid } = inputs.owner;
  const created = new Set<string>();
  const dest = destinationOf(inputs.instruction, inputs.workdir);

  /** Creates `path` and its ancestors in the layer, each keeping lower metadata where it exists. */
  const ensureDirectories = (path: string) => {
    const parts = path.split("/").filter(Boolean);
    for (let i = 1; i <= parts.length; i++) ensureDirectory("/" + parts.slice(0, i).join("/"));
  };
  const ensureParents = (target: string) => ensureDirectories(posix.dirname(target));
  const ensureDirectory = (path: string) => {
    if (path === "/" || created.has(path)) return;
    created.add(path);
    const local = join(upper, path);
    const below = inputs.view.locate(path);
    mkdirSync(local, { recursive: true });
    if (below?.stat.isDirectory()) {
      lchownSync(local, below.stat.uid, below.stat.gid);
      chmodSync(local, below.stat.mode & 0o7777);
      utimesSync(local, below.stat.atime, below.stat.mtime);
    } else {
      // New directories belong to the --chown owner, like BuildKit's.
      lchownSync(local, uid, gid);
      chmodSync(local, 0o755);
    }
  };

  if (dest.isDir) ensureDirectories(dest.path);
  for (const item of items) {
    ensureParents(item.target);
    const local = join(upper, item.target);
    const mode = chmod ?? item.mode;
    switch (item.type) {
      case "dir":
        mkdirSync(local, { recursive: true });
        created.add(item.target);
        lchownSync(local, uid, gid);
        chmodSync(local, mode);
        break;
      case "file":
        if (item.source !== undefined) copyFileSync(item.source, local);
        else writeFileSync(local, item.content ?? "");
        lchownSync(local, uid, gid);
        chmodSync(local, mode);
        if (item.mtime) utimesSync(local, item.mtime, item.mtime);
        else if (item.source !== undefined) {
          const s = lstatSync(item.source);
          utimesSync(local, s.atime, s.mtime);
        }
        break;
      case "symlink":
        symlinkSync(item.linkTarget ?? "", local);
        lchownSync(local, uid, gid);
        if (item.mtime) lutimesSync(local, item.mtime, item.mtime);
        break;
      case "archive":
        ensureDirectories(item.target);
        unpackArchive(item.source!, local, inputs.instruction.chown ? inputs.owner : undefined, upper + ".scratch");
        break;
    }
  }
}
