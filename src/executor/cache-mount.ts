/**
 * `RUN --mount=type=cache` directories: persistent per id, shared across builds and never part
 * of a layer. sharing=shared lets every build use the directory at once; locked makes builds
 * take turns; private gives a build its own directory when the shared one is in use. Locks are
 * flock(2) on a file beside the directory, so they hold across processes and vanish with them.
 */
import { chownSync, closeSync, existsSync, mkdirSync, openSync } from "node:fs";
import type { LocalStore } from "../cache/store.ts";
import type { Mount } from "../frontend/mounts.ts";
import { tryLockExclusive, unlock } from "../snapshot/libc.ts";

export interface CacheMountLease {
  path: string;
  release(): void;
}

type CacheMount = Extract<Mount, { type: "cache" }>;

/** Where RUN's cache mounts come from (the local store's mounts/ directory). */
export interface CacheMountProvider {
  acquire(mount: CacheMount): Promise<CacheMountLease>;
}

export function storeCacheMounts(store: LocalStore): CacheMountProvider {
  return { acquire: (mount) => acquireCacheMount(store, mount) };
}

function prepare(path: string, mount: CacheMount) {
  if (existsSync(path)) return;
  mkdirSync(path, { recursive: true, mode: mount.mode });
  chownSync(path, mount.uid, mount.gid);
}

export async function acquireCacheMount(store: LocalStore, mount: CacheMount): Promise<CacheMountLease> {
  const base = store.mountDir(mount.id);
  if (mount.sharing === "shared") {
    prepare(base, mount);
    return { path: base, release: () => {} };
  }
  for (let instance = 0; ; instance++) {
    const path = instance === 0 ? base : `${base}-${instance}`;
    prepare(path, mount);
    const fd = openSync(`${path}.lock`, "a");
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
