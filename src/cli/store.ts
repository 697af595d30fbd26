/** Opening the local store for a command, and always closing it (which releases its lock). */
import { LocalStore } from "../cache/store.ts";
import { resolveCacheDir } from "../config/cache-dir.ts";
import { UsageError } from "./errors.ts";

/** The store, shared with other builds (garbage collection waits for it). */
export async function withStore<T>(cacheDirFlag: string | undefined, fn: (store: LocalStore) => T | Promise<T>): Promise<T> {
  const store = LocalStore.open(resolveCacheDir(cacheDirFlag));
  try {
    return await fn(store);
  } finally {
    store.close();
  }
}

/** The store alone (for gc and prune): refused while a build is using it. */
export async function withExclusiveStore<T>(cacheDirFlag: string | undefined, fn: (store: LocalStore) => T | Promise<T>): Promise<T> {
  const store = LocalStore.openExclusive(resolveCacheDir(cacheDirFlag));
  if (!store) throw new UsageError("a build is using the cache right now; run this again when it has finished");
  try {
    return await fn(store);
  } finally {
    store.close();
  }
}
