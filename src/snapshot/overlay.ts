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
  /** Snapshot directories, bottom (base) first, as everywhere in MemoBuild; may be empty. */
  layers: string[];
  /** Writable upper and work directories (made when missing); omit both for a read-only mount. */
  upper?: string;
  work?: string;
  target: string;
}

/**
 * The lower directories overlayfs accepts for a stack, top-most first. overlayfs refuses the
 * same directory twice ("Too many levels of symbolic links"): a layer that repeats (COPY f; RUN
 * rm f; COPY f) keeps only its top-most place, which merges to the same tree because the upper
 * copy holds every entry, whiteout and opaque marker the lower one does. overlayfs also needs
 * one lower directory (two for a read-only mount): empty ones fill in for scratch and
 * single-layer images.
 */
export function overlayLowers(lowers: string[], readOnly: boolean, empty: (n: number) => string): string[] {
  const unique = lowers.filter((l, i) => lowers.indexOf(l) === i);
  for (let n = 0; unique.length < (readOnly ? 2 : 1); n++) unique.push(empty(n));
  return unique;
}

export function mountOverlay(spec: OverlaySpec) {
  // Our own staging paths (never paths inside an image): plain mkdir is right here.
  for (const dir of [spec.target, spec.upper, spec.work]) if (dir) mkdirSync(dir, { recursive: true });
  const readOnly = !(spec.upper && spec.work);
  // overlayfs lists lower directories top-most first.
  const specLowers = overlayLowers([...spec.layers].reverse(), readOnly, (n) => {
    const empty = `${spec.target}.empty-${n}`;
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
