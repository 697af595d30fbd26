/**
 * Namespaces made by system calls on this (the JavaScript) thread instead of by `unshare`
 * processes: a RUN used to start `unshare`, `sh` and `umount` before its runtime, and one more
 * `unshare` for its network namespace. unshare(2) and setns(2) move only the calling thread
 * (CLONE_NEWNS also gives it a filesystem context of its own, so other threads keep theirs);
 * Bun.spawn forks from the calling thread, so a child started while the thread is in a new
 * namespace starts there, and the thread then returns to where it was. No JavaScript runs in
 * between: these functions are synchronous. Since this thread's filesystem context is its own
 * after the first call, a later process.chdir moves this thread only: MemoBuild changes directory
 * only around a mount (snapshot/overlay.ts) and comes back, so other threads never differ.
 */
import { constants } from "node:fs";
import {
  CLONE_FS,
  CLONE_NEWNET,
  CLONE_NEWNS,
  closeFd,
  createPersistentTap,
  fchdir,
  mount,
  MS_BIND,
  MS_PRIVATE,
  MS_REC,
  openPath,
  setns,
  unshare,
} from "./libc.ts";

/**
 * Calls `spawn` with this thread in a new, private copy of its mount namespace, after `prepare`
 * changed that copy (e.g. unmounted something), and returns what it returned. The processes it
 * started stay in that namespace (it goes away with them); this thread comes back to its own,
 * with its working directory as before (setns(2) resets it to the root).
 */
export function spawnInNewMountNamespace<T>(prepare: () => void, spawn: () => T): T {
  const home = openPath("/proc/thread-self/ns/mnt", constants.O_RDONLY);
  let cwd: number | undefined;
  try {
    cwd = openPath(".", constants.O_RDONLY | constants.O_DIRECTORY);
    unshare(CLONE_NEWNS);
    try {
      // Private first: on hosts whose mounts are shared (systemd), what `prepare` unmounts
      // would otherwise be unmounted on the host too.
      mount("none", "/", null, MS_REC | MS_PRIVATE, null);
      prepare();
      return spawn();
    } finally {
      comeHome(home, CLONE_NEWNS, cwd);
    }
  } finally {
    closeFd(home);
    if (cwd !== undefined) closeFd(cwd);
  }
}

/**
 * A new network namespace, kept alive by a bind mount on `file` (an existing empty file) as
 * `unshare --net=FILE` makes it, but without a process; with `tap`, a persistent tap device of
 * that name in it.
 */
export function createNetworkNamespace(file: string, tap?: string) {
  const home = openPath("/proc/thread-self/ns/net", constants.O_RDONLY);
  try {
    unshare(CLONE_NEWNET);
    try {
      if (tap) createPersistentTap(tap);
      mount("/proc/thread-self/ns/net", file, null, MS_BIND, null);
    } finally {
      comeHome(home, CLONE_NEWNET);
    }
  } finally {
    closeFd(home);
  }
}

/**
 * setns(2) refuses to move a thread into a mount namespace while it shares its filesystem
 * context (EINVAL), and a thread the runtime starts from this one (a garbage collector's or the
 * JIT's helper, started lazily when the JavaScript in the window allocates or gets hot) shares
 * it: seen as a build dying on its first RUN now and then. Then this thread takes a copy of its
 * own (unshare CLONE_FS) and goes back; the helper stays in the private copy, which differs from
 * ours only by what the window unmounted and by mounts made later, and those helpers never
 * open files.
 */
function setnsBack(home: number, type: number) {
  try {
    setns(home, type);
  } catch (error) {
    if (type !== CLONE_NEWNS || (error as { code?: string }).code !== "EINVAL") throw error;
    unshare(CLONE_FS);
    setns(home, type);
  }
}

/**
 * Back to the namespace open as `home`. Failing that, this thread would go on in the wrong
 * namespace (its mounts, or its sockets, where the host does not see them): the process stops.
 */
function comeHome(home: number, type: number, cwd?: number) {
  try {
    setnsBack(home, type);
    if (cwd !== undefined) fchdir(cwd);
  } catch (error) {
    process.stderr.write(`memobuild: internal error: could not return to its own namespace (${(error as Error).message}); stopping\n`);
    process.exit(70);
  }
}
