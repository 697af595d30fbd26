/** Builds the server's parts from its options: one place, used by `serve` and by the tests. */
import type { SQL } from "bun";
import { mkdirSync } from "node:fs";
import { UserError } from "../errors.ts";
import type { AppParts } from "./app-parts.ts";
import { TokenSet, type TokenEntry } from "./auth.ts";
import { PgCacheIndex } from "./cache-index-pg.ts";
import { S3Blobs, parseS3Url } from "./blobs-s3.ts";
import { SqliteHistory, type HistoryStore } from "./history.ts";
import { PgHistory } from "./history-pg.ts";
import { BuildHub, type HubLimits } from "./hub.ts";
import { createLogger, type Logger } from "../util/log.ts";
import { Metrics } from "./metrics.ts";
import { MountStore } from "./mounts.ts";
import { PgMountRows } from "./mounts-pg.ts";
import { SqliteMountRows } from "./mounts-sqlite.ts";
import { SqliteCacheIndex } from "./cache-index.ts";
import { migrate, openPostgres } from "./pg.ts";
import { PgSessions, Sessions } from "./sessions.ts";
import { Storage, type StorageOptions } from "./storage.ts";
import { Webhooks, type WebhookTarget } from "./webhooks.ts";
import { SqliteJobQueue, type JobQueue } from "./jobs.ts";
import { PgJobQueue } from "./jobs-pg.ts";
import { MemoryAgentRelay, MemorySecretRelay, type AgentRelay, type SecretRelay } from "./secret-relay.ts";
import { PgSecretRelay } from "./secret-relay-pg.ts";
import { PgAgentRelay } from "./agent-relay-pg.ts";

export interface PartsOptions extends StorageOptions {
  tokens: TokenEntry[];
  log?: Logger;
  /** Bytes each shared cache mount may keep (mounts.ts). */
  mountBudget?: number;
  webhooks?: { targets: WebhookTarget[]; key: Buffer; retryBaseMs?: number; maxAttempts?: number; pollMs?: number };
  /** The build hub's report quotas and history size (defaults: quotas.ts). */
  hubLimits?: HubLimits;
  /** Remote execution's queue: how long a worker's lease lasts without a heartbeat. */
  jobLeaseMs?: number;
  /** postgres://…: every piece of metadata there (shared by replicas); default: SQLite files in dataDir. */
  db?: string;
  /** s3://BUCKET[/PREFIX]?endpoint=…&region=…: blob bytes there; default: files in dataDir. */
  blobs?: string;
  /** Where the S3 credentials are read from (default: the process environment). */
  blobsEnv?: Record<string, string | undefined>;
  /** Large blob GETs redirected to a presigned URL of the blob store. */
  blobsRedirect?: boolean;
}

export interface ServerParts extends AppParts {
  history: HistoryStore;
  webhooks?: Webhooks;
  close(): Promise<void>;
}

/** The metadata stores: SQLite files in the data directory, or one PostgreSQL database. */
async function metadata(options: PartsOptions) {
  if (options.blobsRedirect && options.blobs === undefined) throw new UserError("--blobs-redirect needs --blobs s3://…: only an object store can hand out URLs");
  if (options.db === undefined) {
    mkdirSync(options.dataDir, { recursive: true });
    return { sql: undefined, index: undefined, history: new SqliteHistory(options.dataDir), sessions: new Sessions() };
  }
  const sql: SQL = openPostgres(options.db);
  try {
    await migrate(sql);
  } catch (error) {
    await sql.close();
    throw error;
  }
  return { sql, index: new PgCacheIndex(sql), history: new PgHistory(sql), sessions: new PgSessions(sql) };
}

/** The remote-build queue and its secret and ssh agent relays: in this server's files, or shared by replicas. */
function jobQueue(sql: SQL | undefined, dataDir: string, leaseMs: number | undefined): { jobs: JobQueue; secrets: SecretRelay; agents: AgentRelay } {
  if (!sql) {
    const jobs = new SqliteJobQueue(dataDir, { leaseMs });
    return { jobs, secrets: new MemorySecretRelay((job) => jobs.notify(job)), agents: new MemoryAgentRelay((job) => jobs.notify(job)) };
  }
  const jobs = new PgJobQueue(sql, { leaseMs });
  return { jobs, secrets: new PgSecretRelay(sql, jobs), agents: new PgAgentRelay(sql, jobs) };
}

export async function createParts(options: PartsOptions): Promise<ServerParts> {
  const { tokens: entries, log = createLogger(), webhooks: hooks, hubLimits, jobLeaseMs, mountBudget, db: _db, blobs: blobsUrl, blobsEnv, blobsRedirect, ...storageOptions } = options;
  const tokens = new TokenSet(entries); // a bad token is an error before anything is created
  const blobs = blobsUrl === undefined ? undefined : new S3Blobs(parseS3Url(blobsUrl), blobsEnv);
  const { sql, index, history, sessions } = await metadata(options);
  const storage = new Storage(storageOptions, index, blobs);
  const metrics = new Metrics();
  const webhooks = hooks?.targets.length ? new Webhooks({ ...hooks, store: history, metrics, log }) : undefined;
  const hub = new BuildHub(history, metrics, webhooks, hubLimits);
  await hub.start();
  const { jobs, secrets, agents } = jobQueue(sql, options.dataDir, jobLeaseMs);
  const mounts = new MountStore(sql ? new PgMountRows(sql) : new SqliteMountRows(storage, storage.index as SqliteCacheIndex), mountBudget);
  return {
    storage,
    tokens,
    metrics,
    log,
    hub,
    sessions,
    mounts,
    history,
    webhooks,
    jobs,
    secrets,
    agents,
    blobsRedirect,
    async ready() {
      await Promise.all([storage.index.ping().catch(notAnswering("the metadata store")), storage.blobs.ping().catch(notAnswering("the blob store"))]);
    },
    async close() {
      hub.disconnectAll();
      hub.stop();
      webhooks?.stop();
      await webhooks?.settle();
      await storage.close();
      await history.close();
      await jobs.close();
      await sql?.close();
    },
  };
}

/**
 * Why a replica is not ready, for the operator reading its log: which store, and the error's
 * code besides its text (Bun's S3 client says only "an unexpected error has occurred" for a
 * refused connection; its code says ConnectionRefused).
 */
function notAnswering(store: string) {
  return (cause: unknown): never => {
    const text = String(cause);
    const code = (cause as { code?: unknown } | null)?.code;
    throw new Error(`${store} does not answer: ${text}${typeof code === "string" && !text.includes(code) ? ` (${code})` : ""}`);
  };
}
