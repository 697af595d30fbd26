/**
 * The server's metadata back ends, for tests that must pass on each: every server test file
 * runs its whole suite once per back end (`for (const backend of BACKENDS) describe(...)`).
 * A back end maps a data directory to its store, so reopening the same directory reopens the
 * same metadata (as a restart of `serve` with the same flags would).
 */
import { S3Blobs, parseS3Url } from "../../src/server/blobs-s3.ts";
import type { BlobStore } from "../../src/server/blobs.ts";
import { PgCacheIndex } from "../../src/server/cache-index-pg.ts";
import type { CacheIndex } from "../../src/server/cache-index.ts";
import { SqliteCacheIndex } from "../../src/server/cache-index.ts";
import { migrate, openPostgres } from "../../src/server/pg.ts";
import type { Storage } from "../../src/server/storage.ts";
import { postgres, s3, startPostgres } from "./engines.ts";


export interface Backend {
  name: "sqlite+directory" | "postgres+s3";
  /** Whether blob bytes are files in the data directory (tests that look at those files). */
  files: boolean;
  /** The `db` option for createParts/startServer: undefined for SQLite files in the data directory. */
  db(dataDir: string): Promise<string | undefined>;
  /** The `blobs` and `blobsEnv` options for createParts/startServer: undefined for the directory. */
  blobs(dataDir: string): Promise<{ blobs?: string; blobsEnv?: Record<string, string> }>;
  /** All of createParts' back-end options at once. */
  options(dataDir: string): Promise<{ db?: string; blobs?: string; blobsEnv?: Record<string, string> }>;
  /** A cache index for a Storage made directly (undefined: the SQLite default). */
  index(dataDir: string): Promise<CacheIndex | undefined>;
  /** A blob store for a Storage made directly (undefined: the directory default). */
  blobStore(dataDir: string): Promise<BlobStore | undefined>;
  /** Runs SQL (placeholders $1, $2…) on a storage's index: tests that set access times etc. */
  exec(storage: Storage, sql: string, params?: unknown[]): Promise<void>;
}

const sqlite: Backend = {
  name: "sqlite+directory",
  files: true,
  db: async () => undefined,
  blobs: async () => ({}),
  options: async () => ({}),
  index: async () => undefined,
  blobStore: async () => undefined,
  async exec(storage, sql, params = []) {
    (storage.index as SqliteCacheIndex).db.query(sql.replace(/\$(\d+)/g, "?$1")).run(...(params as string[]));
  },
};

const databases = new Map<string, Promise<string>>();
const buckets = new Map<string, { blobs: string; blobsEnv: Record<string, string> }>();

const pg: Backend = {
  name: "postgres+s3",
  files: false,
  db(dataDir) {
    if (!databases.has(dataDir)) databases.set(dataDir, postgres());
    return databases.get(dataDir)!;
  },
  async blobs(dataDir) {
    if (!buckets.has(dataDir)) {
      const { url, env } = (await s3()).blobs();
      buckets.set(dataDir, { blobs: url, blobsEnv: env });
    }
    return buckets.get(dataDir)!;
  },
  async options(dataDir) {
    return { db: await pg.db(dataDir), ...(await pg.blobs(dataDir)) };
  },
  async blobStore(dataDir) {
    const { blobs, blobsEnv } = await pg.blobs(dataDir);
    return new S3Blobs(parseS3Url(blobs!), blobsEnv);
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

/**
 * Both, unless MEMOBUILD_TEST_BACKENDS names some (comma-separated): `make mutation` runs the
 * server's suites on the embedded back end alone, as its jail has no engines to start.
 */
function chosenBackends(): Backend[] {
  const names = process.env.MEMOBUILD_TEST_BACKENDS?.split(",");
  const chosen = [sqlite, pg].filter((backend) => !names || names.includes(backend.name));
  if (chosen.length === 0) throw new Error(`MEMOBUILD_TEST_BACKENDS=${process.env.MEMOBUILD_TEST_BACKENDS} names no back end (sqlite+directory, postgres+s3)`);
  return chosen;
}

export const BACKENDS: Backend[] = chosenBackends();

// Started as the test file loads, outside any test's time limit (initdb and a Ceph cluster take
// seconds on a busy machine).
if (BACKENDS.includes(pg)) await Promise.all([startPostgres(), s3()]);
