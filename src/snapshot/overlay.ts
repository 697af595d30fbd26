/**
 * overlayfs mounts over snapshot directories. The mount options must fit in one page (4 KiB):
 * 64-hex-digit snapshot names would stop at 63 layers, so when the lower directories' paths do
 * not fit, each is passed as a short symlink (`0`, `1`, …, which overlayfs follows) in a directory
 * beside the mount point. When they fit (most images) they are passed as they are: making and
 * removing that directory and its links cost every RUN a mkdir, a symlink per layer, an unlink
 * per layer and an rmdir, each ~1-3 ms on this VM's loaded disk.
 */
import { UserError } from "../errors.ts";
import { mkdirSync, rmSync, symlinkSync } from "node:fs";
import { mount, MS_NODEV, umount } from "../sys/libc.ts";
import { undoOnExit } from "../sys/exit-undo.ts";

/** The overlays this process has mounted and not yet unmounted: detached if it exits first. */
const mounted = new Map<string, () => void>();

/** overlayfs's own limit on lower layers (OVL_MAX_STACK in the kernel). */
export const MAX_OVERLAY_LAYERS = 500;
/** The longest mount options string the kernel takes (one page, less its NUL). */
const MAX_OPTIONS = 4095;

export class MountError extends UserError {}

export interface OverlaySpec {
  /** Snapshot directories, bottom (base) first, as everywhere in MemoBuild; may be empty. */
  layers: string[];
  /** Writable upper and work directories (made when missing); omit both for a read-only mount. */
  upper?: string;
  work?: string;
  target: string;
  /**
   * Mount with `volatile` (Linux 5.10+; plain where the kernel lacks it): unmounting a writable
   * overlay otherwise syncs the whole upper file system (overlayfs's sync_fs), which on this
   * VM's shared disk cost each COPY and WORKDIR 1-130 ms of writing back other processes' dirty
   * pages. For mounts whose upper directory becomes a layer: what makes a layer durable is its
   * blob (fsynced before it is renamed into the store and before its row is written); the
   * snapshot directory is a copy that is never synced on its own (nor are those unpacked from
   * blobs), so the sync at unmount made nothing durable that the store promises. The cost, on
   * an ext4 without a journal (this VM's): the sync also cleaned inode tables that deletions
   * dirtied, and later creations pass over recently freed inodes instead (more system time;
   * measured both ways in the README's Performance section). RUN keeps the sync.
   */
  volatile?: boolean;
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

/** Whether the kernel takes overlayfs's `volatile` option: unknown until a volatile mount is tried. */
let volatileSupported: boolean | undefined;

export function mountOverlay(spec: OverlaySpec) {
  const volatile = spec.volatile === true && volatileSupported !== false;
  try {
    mountOverlayWith(spec, volatile);
  } catch (error) {
    // A kernel before 5.10 refuses the unknown option: tried again without it, as is every later
    // mount; when that fails too, its own error is the one reported.
    if (!volatile || volatileSupported !== undefined) throw error;
    volatileSupported = false;
    mountOverlayWith(spec, false);
    return;
  }
  if (volatile) volatileSupported = true;
}

function mountOverlayWith(spec: OverlaySpec, volatile: boolean) {
  if (spec.layers.length > MAX_OVERLAY_LAYERS) {
    throw new MountError(`${spec.layers.length} layers are more than overlayfs can stack (${MAX_OVERLAY_LAYERS}); squash some of the image's layers`);
  }
  // Our own staging paths (never paths inside an image): plain mkdir is right here.
  for (const dir of [spec.target, spec.upper, spec.work]) if (dir) mkdirSync(dir, { recursive: true });
  const readOnly = !(spec.upper && spec.work);
  // overlayfs lists lower directories top-most first.
  const specLowers = overlayLowers([...spec.layers].reverse(), readOnly, (n) => {
    const empty = `${spec.target}.empty-${n}`;
    mkdirSync(empty, { recursive: true });
    return empty;
  });
  const upperOptions = spec.upper && spec.work ? `,upperdir=${spec.upper},workdir=${spec.work}${volatile ? ",volatile" : ""}` : "";
  const direct = `lowerdir=${specLowers.join(":")}${upperOptions}`;
  // The kernel copies mount options into one page, its terminating NUL included; ',' ':' and
  // '\' are separators or escapes in them, so such paths go through the short names.
  if (direct.length < MAX_OPTIONS && !specLowers.some((lower) => /[,:\\]/.test(lower))) {
    try {
      mountAndRemember(spec.target, direct);
    } catch (error) {
      throw new MountError(`mounting overlay at ${spec.target} failed: ${(error as Error).message}`);
    }
    return;
  }
  const names = `${spec.target}.lowers`;
  rmSync(names, { recursive: true, force: true });
  mkdirSync(names);
  specLowers.forEach((lower, i) => symlinkSync(lower, `${names}/${i.toString(36)}`));
  const options = `lowerdir=${specLowers.map((_, i) => i.toString(36)).join(":")}${upperOptions}`;
  // mount(2) directly (no /bin/mount process); the short lower names resolve from the cwd.
  const previous = process.cwd();
  try {
    process.chdir(names);
    mountAndRemember(spec.target, options);
  } catch (error) {
    throw new MountError(`mounting overlay at ${spec.target} failed: ${(error as Error).message}`);
  } finally {
    process.chdir(previous);
    // overlayfs holds the directories themselves once mounted; the names are no longer needed.
    rmSync(names, { recursive: true, force: true });
  }
}

/**
 * The mount, registered to be detached if this process exits before `unmount` (exit-undo.ts).
 * nodev: a device node in a layer (shipped in an image, or made by an earlier RUN's mknod) stays
 * in the tree as an entry but cannot be opened through this mount, so a RUN, which runs as root
 * with CAP_MKNOD and no device cgroup, cannot reach the host's disks through it. The builder's
 * own reads (COPY --from, bind and cache-seed sources) never open a device: they are refused.
 */
function mountAndRemember(target: string, options: string) {
  mount("overlay", target, "overlay", MS_NODEV, options);
  mounted.set(target, undoOnExit(() => umount(target, true)));
}

export function unmount(target: string) {
  // Something may still hold it (a process that has not exited yet): then detach it lazily.
  if (!umount(target)) umount(target, true);
  mounted.get(target)?.();
  mounted.delete(target);
}
