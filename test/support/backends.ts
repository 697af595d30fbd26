/**
 * The server's metadata back ends, for tests that must pass on each: every server test file
 * runs its whole suite once per back end (`for (const backend of BACKENDS) describe(...)`).
 * A back end maps a data directory to its store, so reopening the same directory reopens the
 * same metadata (as a restart of `serve` with the same flags would).
 */
import { PgCacheIndex } from "../../src/server/cache-index-pg.ts";
import type { CacheIndex } from "../../src/server/cache-index.ts";
import { SqliteCacheIndex } from "../../src/server/cache-index.ts";
import { migrate, openPostgres } from "../../src/server/pg.ts";
import type { Storage } from "../../src/server/storage.ts";
import { postgres, startPostgres } from "./engines.ts";

// Started as the test file loads, outside any test's time limit (initdb takes seconds on a busy machine).
await startPostgres();

export interface Backend {
  name: "sqlite" | "postgres";
  /** The `db` option for createParts/startServer: undefined for SQLite files in the data directory. */
  db(dataDir: string): Promise<string | undefined>;
  /** A cache index for a Storage made directly (undefined: the SQLite default). */
  index(dataDir: string): Promise<CacheIndex | undefined>;
  /** Runs SQL (placeholders $1, $2…) on a storage's index: tests that set access times etc. */
  exec(storage: Storage, sql: string, params?: unknown[]): Promise<void>;
}

const sqlite: Backend = {
  name: "sqlite",
  db: async () => undefined,
  index: async () => undefined,
  async exec(storage, sql, params = []) {
    (storage.index as SqliteCacheIndex).db.query(sql.replace(/\$(\d+)/g, "?$1")).run(...(params as string[]));
  },
};

const databases = new Map<string, Promise<string>>();

const pg: Backend = {
  name: "postgres",
  db(dataDir) {
    if (!databases.has(dataDir)) databases.set(dataDir, postgres());
    return databases.get(dataDir)!;
  },
  async index(dataDir) {
    const sql = openPostgres((await pg.db(dataDir))!, 4);
    await migrate(sql);
    return new PgCacheIndex(sql, true);
  },
  async exec(storage, sql, params = []) {
    await (storage.index as PgCacheIndex).sql.unsafe(sql, params);
  },
};

export const BACKENDS: Backend[] = [sqlite, pg];
