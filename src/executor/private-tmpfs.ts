/**
 * A tmpfs of our own for what must never reach a disk during a RUN: secret files and the
 * runtime's config.json (which holds env secrets). Each RUN mounts a fresh one under
 * /run/memobuild/PID-RANDOM (mode 0700, root only) and unmounts it when the RUN ends. A tmpfs
 * keeps its files until it is unmounted, so after a kill -9 the next memobuild command
 * unmounts the ones of dead processes (`removeAbandonedTmpfs`).
 *
 * Not /dev/shm: that is one tmpfs shared by every process on the machine, and a file left
 * there by a killed build stays readable until reboot.
 */
import { mkdirSync, readdirSync, rmdirSync } from "node:fs";
import { join } from "node:path";
import { randomHex } from "../util/random.ts";
import { mount, umount } from "../sys/libc.ts";
import { undoOnExit } from "../sys/exit-undo.ts";

const BASE = "/run/memobuild";
/** The size of each RUN's tmpfs: every secret file of the RUN, and the runtime's config, must fit. */
export const TMPFS_BYTES = 64 * 1024 * 1024;
const MS_NOSUID = 2;
const MS_NODEV = 4;
const MS_NOEXEC = 8;

export class PrivateTmpfs {
  /** Detaches it if the process exits (Ctrl-C mid-RUN) before `remove`. */
  private readonly release = undoOnExit(() => umount(this.path, true));

  private constructor(readonly path: string) {}

  static create(base = BASE): PrivateTmpfs {
    mkdirSync(base, { recursive: true, mode: 0o700 });
    const path = join(base, `${process.pid}-${randomHex(6)}`);
    // Stryker disable next-line ObjectLiteral: the tmpfs mounted over it has mode 0700 itself; this covers the empty moment before
    mkdirSync(path, { mode: 0o700 });
    try {
      mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, `mode=0700,size=${TMPFS_BYTES}`);
    } catch (error) {
      rmdirSync(path);
      throw error;
    }
    return new PrivateTmpfs(path);
  }

  /** Lazily: a process of the RUN that still holds a file open there must not keep it mounted. */
  remove() {
    umount(this.path, true);
    this.release();
    try {
      rmdirSync(this.path);
    } catch (error) {
      // Gone already: only an empty, unmounted directory is ever taken by another command's reaper.
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
  }
}

/** Unmounts and removes the private tmpfs of every process that is gone. */
export function removeAbandonedTmpfs(alive: (pid: number) => boolean, base = BASE) {
  let names: string[];
  try {
    names = readdirSync(base);
  } catch {
    return; // no build has run on this machine since boot
  }
  for (const name of names) {
    const pid = Number(name.split("-")[0]);
    if (Number.isInteger(pid) && pid > 0 && (pid === process.pid || alive(pid))) continue;
    const path = join(base, name);
    umount(path, true); // fails harmlessly where nothing is mounted
    try {
      rmdirSync(path);
    } catch {
      // not empty: not one of ours (ours are mount points, empty once unmounted)
    }
  }
}
