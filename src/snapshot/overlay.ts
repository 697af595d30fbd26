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
  /** Snapshot directories, top-most first (overlayfs order). At least one. */
  lowers: string[];
  /** Writable upper and work directories; omit both for a read-only mount. */
  upper?: string;
  work?: string;
  target: string;
}

export function mountOverlay(spec: OverlaySpec) {
  if (spec.lowers.length === 0) throw new MountError("an overlay needs at least one lower directory");
  mkdirSync(spec.target, { recursive: true });
  const parents = new Set(spec.lowers.map((l) => dirname(l)));
  const cwd = parents.size === 1 ? [...parents][0] : undefined;
  const lowers = spec.lowers.map((l) => (cwd ? basename(l) : l)).join(":");
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
