/**
 * A cache mount's directory as a list of files, and the changes that bring it to a version.
 *
 * The directory was written by RUN steps, so it is hostile like any rootfs: it is read and
 * changed only through `Root` with symlinks refused (a planted link never leads a write or a
 * read outside). Only regular files are shared; symlinks, devices and empty directories stay
 * local. Hashes are kept beside the directory with each file's size and mtime, so a file
 * unchanged since the last look is not read again.
 */
import { closeSync, openSync } from "node:fs";
import { hashFile } from "../hash/blake3.ts";
import { Root } from "../rootfs/root.ts";
import type { MountFile } from "./mount-manifest.ts";

export interface LocalFile extends MountFile {
  /** mtime as "seconds.nanoseconds": with the size, says the hash is still right. */
  mtime: string;
}

const decoder = new TextDecoder("utf-8", { fatal: true });

/** Every regular file under `directory`, hashed (reusing `known` hashes for files unchanged since). */
export function listFiles(directory: string, known: Map<string, LocalFile> = new Map()): Map<string, LocalFile> {
  const files = new Map<string, LocalFile>();
  Root.with(
    directory,
    (root) => {
      const visit = (dir: string) => {
        for (const raw of root.readdir(dir || ".")) {
          let name: string;
          try {
            name = decoder.decode(raw);
          } catch {
            continue; // a name that is not UTF-8 cannot go in a manifest: it stays local
          }
          const path = dir ? `${dir}/${name}` : name;
          const stat = root.lstat(path);
          if (!stat) continue;
          if (stat.isDirectory()) visit(path);
          else if (stat.isFile()) files.set(path, describe(root, path, stat.size, `${stat.mtime[0]}.${stat.mtime[1]}`, stat.mode & 0o777, known.get(path)));
        }
      };
      visit("");
    },
    { symlinks: "none" },
  );
  return files;
}

function describe(root: Root, path: string, size: number, mtime: string, mode: number, known: LocalFile | undefined): LocalFile {
  if (known && known.size === size && known.mtime === mtime) return { ...known, mode };
  const fd = root.openFile(path, false);
  try {
    const hashed = hashFile(`/proc/self/fd/${fd}`);
    return { path, mode, size: hashed.size, mtime, blake3: hashed.digest.toString("hex") };
  } finally {
    closeSync(fd);
  }
}

/** The manifest's view of local files: sorted by path, without local-only fields. */
export function manifestFiles(files: Map<string, LocalFile>): MountFile[] {
  return [...files.values()].map(({ path, mode, blake3, size }) => ({ path, mode, blake3, size })).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

export const sameFiles = (a: MountFile[], b: MountFile[]) =>
  a.length === b.length && a.every((file, i) => file.path === b[i].path && file.mode === b[i].mode && file.blake3 === b[i].blake3 && file.size === b[i].size);

/** What bringing `local` to `target` takes: files to write (content differs or is absent) and to remove. */
export function plan(local: Map<string, LocalFile>, target: MountFile[]): { write: MountFile[]; chmod: MountFile[]; remove: string[] } {
  const wanted = new Set(target.map((file) => file.path));
  const write: MountFile[] = [];
  const chmod: MountFile[] = [];
  for (const file of target) {
    const have = local.get(file.path);
    if (!have || have.blake3 !== file.blake3) write.push(file);
    else if (have.mode !== file.mode) chmod.push(file);
  }
  return { write, chmod, remove: [...local.keys()].filter((path) => !wanted.has(path)) };
}

/**
 * Applies a plan: `contentOf(hash)` is a verified file on the host with that content. Whatever
 * is in a written file's way (a file where a directory goes, a link, a directory where a file
 * goes) is removed first. Files are owned as the mount's root is.
 */
export function apply(directory: string, changes: ReturnType<typeof plan>, contentOf: (hash: string) => string) {
  Root.with(
    directory,
    (root) => {
      const top = root.lstat(".")!;
      const owner = { uid: top.uid, gid: top.gid };
      for (const path of changes.remove) root.remove(path);
      for (const file of changes.write) {
        clearWay(root, file.path, owner);
        // The staging file is this process's own (a trusted host path), not part of the mount.
        const fd = openSync(contentOf(file.blake3), "r");
        try {
          root.writeFile(file.path, { from: fd, size: file.size }, { mode: file.mode, owner });
        } finally {
          closeSync(fd);
        }
      }
      for (const file of changes.chmod) root.setAttributes(file.path, { mode: file.mode });
    },
    { symlinks: "none" },
  );
}

/** Makes every parent of `path` a directory (removing what is not) and removes a directory at `path`. */
function clearWay(root: Root, path: string, owner: { uid: number; gid: number }) {
  const parts = path.split("/");
  for (let i = 1; i < parts.length; i++) {
    const parent = parts.slice(0, i).join("/");
    const stat = root.lstat(parent);
    if (stat && !stat.isDirectory()) root.removeAll(parent);
    if (!stat || !stat.isDirectory()) root.mkdir(parent, { mode: 0o755, owner });
  }
  if (root.lstat(path)?.isDirectory()) root.removeAll(path);
}
