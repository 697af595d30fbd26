/**
 * overlayfs mounts over snapshot directories. Lower directories are passed relative to their
 * common parent (the cache's snapshots/ directory) so that long layer stacks fit in the mount
 * option page.
 */
import { UserError } from "../errors.ts";
import { mkdirSync } from "node:fs";
import { basename, dirname } from "node:path";

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
  const result = Bun.spawnSync(["mount", "-t", "overlay", "overlay", "-o", options, spec.target], { cwd, stderr: "pipe" });
  if (result.exitCode !== 0) {
    throw new MountError(`mounting overlay at ${spec.target} failed: ${result.stderr.toString().trim() || `exit ${result.exitCode}`}`);
  }
}

export function bindMount(source: string, target: string, readonly: boolean) {
  const result = Bun.spawnSync(["mount", "--bind", source, target], { stderr: "pipe" });
  if (result.exitCode !== 0) throw new MountError(`bind mount of ${source} failed: ${result.stderr.toString().trim()}`);
  if (readonly) Bun.spawnSync(["mount", "-o", "remount,bind,ro", target]);
}

export function unmount(target: string) {
  const result = Bun.spawnSync(["umount", target], { stderr: "pipe" });
  if (result.exitCode !== 0) {
    // Something still holds it (a process that has not exited yet): detach it lazily.
    Bun.spawnSync(["umount", "-l", target], { stderr: "ignore" });
  }
}
