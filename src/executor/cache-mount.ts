/**
 * `RUN --mount=type=cache` directories: persistent per id, shared across builds and never part
 * of a layer. sharing=shared lets every build use the directory at once; locked makes builds
 * take turns; private gives a build its own directory when the shared one is in use. Locks are
 * flock(2) on a file beside the directory, so they hold across processes and vanish with them.
 *
 * As in BuildKit, a cache's identity is its id and what it starts from: `from=` a stage or image
 * (at `source=`) seeds a new directory with those files, and uid/gid/mode other than the defaults
 * start it as a directory with that owner and mode (BuildKit bases such a mount on a made
 * directory, so it is another cache than the plain id).
 */
import { chownSync, closeSync, constants, existsSync, mkdirSync, openSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { Mount } from "../frontend/mounts.ts";
import { removeTree } from "../rootfs/root.ts";
import { tryLockExclusive, unlock } from "../sys/libc.ts";

export interface CacheMountLease {
  path: string;
  release(): void;
}

export type CacheMount = Extract<Mount, { type: "cache" }>;

/** What a new cache directory starts with: files of a stage or image. */
export interface CacheMountSeed {
  /** What the files are (their layers and the source path): part of the cache's identity. */
  identity: string;
  /** Fills a new, empty directory. */
  fill(directory: string): void;
}

/** Where RUN's cache mounts come from (the local store's mounts/ directory). */
export interface CacheMountProvider {
  /**
   * `apart` (a --cache-mount-scope) keeps the directory apart from the same mount's under
   * another name: a worker runs each untrusted submitter's builds under a name of its own, so
   * no other submitter's build ever sees what theirs wrote.
   */
  acquire(mount: CacheMount, seed?: CacheMountSeed, apart?: string): Promise<CacheMountLease>;
}

/** Cache mounts kept in directories named by `directoryOf(identity)`. */
export function directoryCacheMounts(directoryOf: (identity: string) => string): CacheMountProvider {
  return {
    acquire: (mount, seed, apart) => {
      const identity = cacheIdentity(mount, seed);
      return acquireCacheMount(directoryOf(apart === undefined ? identity : `${identity}\0scope\0${apart}`), mount, seed, apart);
    },
  };
}

/** The id alone for a plain mount (so existing caches stay); with what it starts from otherwise. */
export function cacheIdentity(mount: CacheMount, seed?: CacheMountSeed): string {
  if (seed) return `${mount.id}\0from\0${seed.identity}`;
  const plain = mount.uid === 0 && mount.gid === 0 && mount.mode === 0o755;
  return plain ? mount.id : `${mount.id}\0mkdir\0${mount.uid}:${mount.gid}:${mount.mode.toString(8)}`;
}

/** Makes the directory when it is missing; a seeded one is filled beside it and renamed, so no build sees it half made. */
function prepare(path: string, mount: CacheMount, seed?: CacheMountSeed) {
  if (existsSync(path)) return;
  if (!seed) {
    mkdirSync(path, { recursive: true, mode: mount.mode });
    chownSync(path, mount.uid, mount.gid);
    return;
  }
  mkdirSync(dirname(path), { recursive: true });
  const staging = `${path}.new-${process.pid}-${Math.random().toString(36).slice(2)}`;
  mkdirSync(staging, { mode: mount.mode });
  try {
    chownSync(staging, mount.uid, mount.gid);
    seed.fill(staging);
    renameSync(staging, path);
  } catch (error) {
    removeTree(staging);
    // Another build made it first: theirs is as good as ours.
    if (!existsSync(path)) throw error;
  }
}

/** DIR.id names the mount for `memobuild cache mounts ls` (a directory's name is a hash of its identity). */
function labelDirectory(base: string, mount: CacheMount, seed?: CacheMountSeed, apart?: string) {
  const file = `${base}.id`;
  if (existsSync(file)) return;
  mkdirSync(dirname(base), { recursive: true });
  writeFileSync(file, `${mount.id}${seed ? " (from another stage or image)" : ""}${apart === undefined ? "" : ` (scope ${apart})`}`);
}

export async function acquireCacheMount(base: string, mount: CacheMount, seed?: CacheMountSeed, apart?: string): Promise<CacheMountLease> {
  labelDirectory(base, mount, seed, apart);
  if (mount.sharing === "shared") {
    prepare(base, mount, seed);
    return { path: base, release: () => {} };
  }
  for (let instance = 0; ; instance++) {
    const path = instance === 0 ? base : `${base}-${instance}`;
    prepare(path, mount, seed);
    // The store's own directory; still, a link planted at the lock's name is not followed (as gc.lock).
    const fd = openSync(`${path}.lock`, constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND | constants.O_NOFOLLOW, 0o644);
    if (tryLockExclusive(fd)) {
      return {
        path,
        release: () => {
          unlock(fd);
          closeSync(fd);
        },
      };
    }
    closeSync(fd);
    if (mount.sharing === "locked") {
      instance = -1; // wait for the one directory
      await Bun.sleep(50);
    }
  }
}
