/**
 * The server's metadata in PostgreSQL (`serve --db postgres://…`), through Bun's built-in client
 * (a connection pool). One schema for every store (cache index, build history, webhook
 * deliveries, sessions, the remote-build queue), versioned: each replica migrates it at start under an advisory lock,
 * so replicas starting together take turns and each step runs once.
 */
import { SQL } from "bun";
import { UserError } from "../errors.ts";

/**
 * Advisory lock ids (one namespace per database): which replica may do what. `blob` is the
 * first half of a two-part key, the second is the hash's hashtext().
 */
export const LOCKS = { migrate: 7_240_001, evict: 7_240_002, events: 7_240_003, blob: 7_240_004, mounts: 7_240_005 } as const;

/**
 * Each entry is one schema version, applied in order and never edited once released (a new
 * change is a new entry). Times are milliseconds since the epoch, sizes bytes: BIGINT.
 */
const MIGRATIONS: string[] = [
  `CREATE TABLE blobs (hash TEXT PRIMARY KEY, size BIGINT NOT NULL, last_access BIGINT NOT NULL);
   CREATE INDEX blobs_last_access ON blobs (last_access);
   CREATE TABLE actions (key TEXT PRIMARY KEY, body TEXT NOT NULL, size BIGINT NOT NULL, last_access BIGINT NOT NULL, author TEXT, signer TEXT, result TEXT NOT NULL);
   CREATE INDEX actions_last_access ON actions (last_access);
   CREATE TABLE action_blobs (key TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY (key, hash));
   CREATE INDEX action_blobs_hash ON action_blobs (hash);
   CREATE TABLE conflicts (
     id BIGSERIAL PRIMARY KEY, key TEXT NOT NULL, time BIGINT NOT NULL,
     first_author TEXT, first_signer TEXT, first_result TEXT NOT NULL,
     second_author TEXT, second_signer TEXT, second_result TEXT NOT NULL);
   CREATE INDEX conflicts_key ON conflicts (key);
   CREATE TABLE token_stats (token TEXT PRIMARY KEY, requests BIGINT NOT NULL, bytes_in BIGINT NOT NULL, bytes_out BIGINT NOT NULL);
   CREATE TABLE builds (
     seq BIGSERIAL, id TEXT PRIMARY KEY, token TEXT NOT NULL, result TEXT NOT NULL, started BIGINT NOT NULL, finished BIGINT,
     branch TEXT, last_seq BIGINT NOT NULL, events BIGINT NOT NULL, updated BIGINT,
     executed BIGINT NOT NULL DEFAULT 0, cached BIGINT NOT NULL DEFAULT 0, saved_ms BIGINT NOT NULL DEFAULT 0,
     info TEXT NOT NULL, outcome TEXT, bytes BIGINT NOT NULL DEFAULT 0, role TEXT);
   CREATE INDEX builds_started ON builds (started);
   CREATE INDEX builds_finished ON builds (finished);
   CREATE TABLE build_labels (build TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (build, name));
   CREATE INDEX build_labels_value ON build_labels (name, value);
   CREATE TABLE build_steps (
     build TEXT NOT NULL, step TEXT NOT NULL, number BIGINT NOT NULL, stage TEXT NOT NULL, name TEXT NOT NULL,
     state TEXT NOT NULL, started BIGINT, duration_ms BIGINT, saved_ms BIGINT, layer_size BIGINT, reasons TEXT, tail TEXT,
     PRIMARY KEY (build, step));
   CREATE TABLE events (id BIGSERIAL PRIMARY KEY, build TEXT NOT NULL, body TEXT NOT NULL);
   CREATE INDEX events_build ON events (build);
   CREATE TABLE webhook_deliveries (
     id BIGSERIAL PRIMARY KEY, message_id TEXT NOT NULL, url TEXT NOT NULL, type TEXT NOT NULL, body TEXT NOT NULL,
     attempts BIGINT NOT NULL, next_attempt BIGINT NOT NULL, status TEXT NOT NULL, last_status BIGINT, last_error TEXT,
     created BIGINT NOT NULL, lease_until BIGINT NOT NULL DEFAULT 0);
   CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt);
   CREATE TABLE sessions (id TEXT PRIMARY KEY, role TEXT NOT NULL, token TEXT NOT NULL, expires BIGINT NOT NULL);
   CREATE INDEX sessions_expires ON sessions (expires);`,
  // Shared cache mounts (mounts.ts): versions, and what fetching them saved.
  `CREATE TABLE mount_versions (
     seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, scope TEXT NOT NULL, parent TEXT,
     label_id TEXT NOT NULL, label_scope TEXT, signer TEXT, author TEXT, created BIGINT NOT NULL,
     published BIGINT NOT NULL, files BIGINT NOT NULL, size BIGINT NOT NULL, changed BIGINT NOT NULL, body TEXT NOT NULL);
   CREATE INDEX mount_versions_scope ON mount_versions (scope, seq);
   CREATE TABLE mount_fetches (
     scope TEXT PRIMARY KEY, fetches BIGINT NOT NULL, files_fetched BIGINT NOT NULL, bytes_fetched BIGINT NOT NULL,
     files_kept BIGINT NOT NULL, bytes_kept BIGINT NOT NULL, ms BIGINT NOT NULL, saved_ms BIGINT NOT NULL, updated BIGINT NOT NULL);`,
  // Remote execution's queue (jobs-pg.ts) and the secret relay's asks (secret-relay-pg.ts).
  `CREATE TABLE jobs (
     seq BIGSERIAL, id TEXT PRIMARY KEY, submitter TEXT NOT NULL, state TEXT NOT NULL, definition TEXT NOT NULL, hints TEXT NOT NULL,
     created BIGINT NOT NULL, started BIGINT, finished BIGINT, worker TEXT, lease TEXT, lease_expires BIGINT,
     attempts INTEGER NOT NULL DEFAULT 0, affinity INTEGER, result TEXT, error TEXT, cancel BOOLEAN NOT NULL DEFAULT false,
     events INTEGER NOT NULL DEFAULT 0);
   CREATE INDEX jobs_state ON jobs (state, created, seq);
   CREATE INDEX jobs_finished ON jobs (finished);
   CREATE TABLE job_events (job TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY (job, seq));
   CREATE TABLE job_workers (name TEXT PRIMARY KEY, labels TEXT NOT NULL, last_seen BIGINT NOT NULL, holds TEXT, idle_since BIGINT);
   CREATE TABLE job_secret_asks (job TEXT PRIMARY KEY, ask TEXT NOT NULL, ids TEXT NOT NULL, public_key TEXT NOT NULL, sealed TEXT, expires BIGINT NOT NULL);`,
  // Every step's output (the build hub); who wrote a result, from which build and step; results
  // that changed when their own writer made them again (not reproducible, apart from conflicts).
  `CREATE TABLE step_logs (build TEXT NOT NULL, step TEXT NOT NULL, text TEXT NOT NULL, cut BIGINT NOT NULL, last_event BIGINT NOT NULL, PRIMARY KEY (build, step));
   ALTER TABLE actions ADD COLUMN build TEXT, ADD COLUMN step TEXT;
   ALTER TABLE conflicts ADD COLUMN first_build TEXT, ADD COLUMN second_build TEXT, ADD COLUMN step TEXT;
   CREATE TABLE unreproducible (
     id BIGSERIAL PRIMARY KEY, key TEXT NOT NULL, time BIGINT NOT NULL, author TEXT, signer TEXT, step TEXT,
     first_result TEXT NOT NULL, first_build TEXT, second_result TEXT NOT NULL, second_build TEXT, differences TEXT NOT NULL);
   CREATE INDEX unreproducible_time ON unreproducible (time);`,
  // The worker that ran or reused each step of a build run with --builder.
  `ALTER TABLE build_steps ADD COLUMN worker TEXT;`,
  // The ssh agent relay's sealed messages, and the keys of the replicas that serve followers (agent-relay-pg.ts).
  `CREATE TABLE job_agent_keys (job TEXT NOT NULL, key_id TEXT NOT NULL, public_key TEXT NOT NULL, expires BIGINT NOT NULL, PRIMARY KEY (job, key_id));
   CREATE TABLE job_agent_asks (
     seq BIGSERIAL, id TEXT PRIMARY KEY, job TEXT NOT NULL, public_key TEXT NOT NULL, requests TEXT NOT NULL, reply TEXT, expires BIGINT NOT NULL);
   CREATE INDEX job_agent_asks_job ON job_agent_asks (job, seq);`,
  // Steps that only change the image's config (FROM, ENV…): never a hit, a miss or a run.
  `ALTER TABLE build_steps ADD COLUMN config_only BOOLEAN NOT NULL DEFAULT false;`,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** Opens the pool; a URL that is not postgres:// is a usage error naming the flag. */
export function openPostgres(url: string, max = 20): SQL {
  if (!/^postgres(ql)?:\/\//.test(url)) throw new UserError(`--db ${redactUrl(url)}: use a postgres://USER@HOST:PORT/DATABASE URL`);
  return new SQL({ url, max, idleTimeout: 60, connectionTimeout: 10 });
}

/** A URL fit for a log line: its password replaced. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, "//$1:***@");
}

/**
 * Brings the schema to SCHEMA_VERSION, one version per transaction, holding the migration lock
 * for the whole run (a replica that waits finds the work done). A database newer than this
 * program is refused: an old replica must not write into a schema it does not know.
 */
export async function migrate(sql: SQL): Promise<void> {
  await sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(${LOCKS.migrate})`;
    await tx`CREATE TABLE IF NOT EXISTS memobuild_schema (version INTEGER NOT NULL)`;
    const [row] = await tx`SELECT max(version) AS version FROM memobuild_schema`;
    const current = Number(row?.version ?? 0);
    if (current > SCHEMA_VERSION) {
      throw new UserError(`the database's schema is version ${current}, newer than this memobuild knows (${SCHEMA_VERSION}): upgrade memobuild`);
    }
    for (let version = current + 1; version <= SCHEMA_VERSION; version++) {
      await tx.unsafe(MIGRATIONS[version - 1]);
      await tx`INSERT INTO memobuild_schema VALUES (${version})`;
    }
  });
}

/** A BIGINT or count as it comes back (a string) as a number; null stays null. */
export const num = (value: unknown): number => Number(value);
export const numOrNull = (value: unknown): number | null => (value === null || value === undefined ? null : Number(value));
