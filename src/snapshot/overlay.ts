/**
 * overlayfs mounts over snapshot directories. Lower directories are passed relative to their
 * common parent (the cache's snapshots/ directory) so that long layer stacks fit in the mount
 * option page.
 */
import { UserError } from "../errors.ts";
import { mkdirSync } from "node:fs";
import { basename, dirname } from "node:path";
import { mount, umount } from "./libc.ts";

export class MountError extends UserError {}

export interface OverlaySpec {
  /** Snapshot directories, bottom (base) first, as everywhere in MemoBuild. At least one. */
  layers: string[];
  /** Writable upper and work directories; omit both for a read-only mount. */
  upper?: string;
  work?: string;
  target: string;
}

/**
 * The lower directories overlayfs accepts for a stack, top-most first. overlayfs refuses the
 * same directory twice ("Too many levels of symbolic links"): a layer that repeats (COPY f; RUN
 * rm f; COPY f) keeps only its top-most place, which merges to the same tree because the upper
 * copy holds every entry, whiteout and opaque marker the lower one does. A read-only overlay
 * needs two lowers: a single layer gets `empty` below it.
 */
export function overlayLowers(lowers: string[], readOnly: boolean, empty: () => string): string[] {
  const unique = lowers.filter((l, i) => lowers.indexOf(l) === i);
  return readOnly && unique.length === 1 ? [...unique, empty()] : unique;
}

export function mountOverlay(spec: OverlaySpec) {
  if (spec.layers.length === 0) throw new MountError("an overlay needs at least one lower directory");
  mkdirSync(spec.target, { recursive: true });
  const readOnly = !(spec.upper && spec.work);
  // overlayfs lists lower directories top-most first.
  const specLowers = overlayLowers([...spec.layers].reverse(), readOnly, () => {
    const empty = `${spec.target}.empty`;
    mkdirSync(empty, { recursive: true });
    return empty;
  });
  const parents = new Set(specLowers.map((l) => dirname(l)));
  const cwd = parents.size === 1 ? [...parents][0] : undefined;
  const lowers = specLowers.map((l) => (cwd ? basename(l) : l)).join(":");
  let options = `lowerdir=${lowers}`;
  if (spec.upper && spec.work) options += `,upperdir=${spec.upper},workdir=${spec.work}`;
  // mount(2) directly (no /bin/mount process); relative lower paths resolve from the cwd.
  const previous = process.cwd();
  try {
    if (cwd) process.chdir(cwd);
    mount("overlay", spec.target, "overlay", 0, options);
  } catch (error) {
    throw new MountError(`mounting overlay at ${spec.target} failed: ${(error as Error).message}`);
  } finally {
    if (cwd) process.chdir(previous);
  }
}

export function unmount(target: string) {
  // Something may still hold it (a process that has not exited yet): then detach it lazily.
  if (!umount(target)) umount(target, true);
}
