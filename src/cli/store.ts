/** Opening the local store for a command, and always closing it (which releases its lock). */
import { LocalStore } from "../cache/store.ts";
import { resolveCacheDir } from "../config/cache-dir.ts";
import { reapAbandoned } from "../executor/reap.ts";

/** The store, shared with other builds (garbage collection waits for it). */
export async function withStore<T>(cacheDirFlag: string | undefined, fn: (store: LocalStore) => T | Promise<T>): Promise<T> {
  reapAbandoned();
  const store = LocalStore.open(resolveCacheDir(cacheDirFlag));
  try {
    return await fn(store);
  } finally {
    store.close();
  }
}

/** The store alone (for gc and prune): waits until no build is using it, and says so. */
export async function withExclusiveStore<T>(cacheDirFlag: string | undefined, fn: (store: LocalStore) => T | Promise<T>): Promise<T> {
  reapAbandoned();
  const store = LocalStore.openExclusive(resolveCacheDir(cacheDirFlag), () =>
    process.stderr.write("memobuild: waiting for the builds using the cache to finish (Ctrl-C to stop)\n"),
  );
  try {
    return await fn(store);
  } finally {
    store.close();
  }
}
