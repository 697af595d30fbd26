/**
 * Shared cache mount versions in the cache's SQLite file (one process: `serve` without --db).
 * See mounts.ts for the contract; mounts-pg.ts keeps the same rows in PostgreSQL.
 */
import type { Database } from "bun:sqlite";
import type { MountFetchReport, MountFetchTotals, MountScopeInfo, MountVersionInfo } from "../remote/mount-types.ts";
import type { SqliteCacheIndex } from "./cache-index.ts";
import type { Storage } from "./storage.ts";
import { blobKey, budgetGroup, savedMs, versionsToEvict, type InsertOutcome, type MountRows, type NewVersion } from "./mounts.ts";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS mount_versions (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, scope TEXT NOT NULL, parent TEXT,
  label_id TEXT NOT NULL, label_scope TEXT, signer TEXT, author TEXT, created INTEGER NOT NULL,
  published INTEGER NOT NULL, files INTEGER NOT NULL, size INTEGER NOT NULL, changed INTEGER NOT NULL, body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS mount_versions_scope ON mount_versions (scope, seq);
CREATE TABLE IF NOT EXISTS mount_fetches (
  scope TEXT PRIMARY KEY, fetches INTEGER NOT NULL, files_fetched INTEGER NOT NULL, bytes_fetched INTEGER NOT NULL,
  files_kept INTEGER NOT NULL, bytes_kept INTEGER NOT NULL, ms INTEGER NOT NULL, saved_ms INTEGER NOT NULL, updated INTEGER NOT NULL
);
`;

/** Every column but the manifest itself (which may be megabytes): what listings read. */
export const INFO = "seq, id, scope, parent, label_id, label_scope, signer, author, created, published, files, size, changed";

export type VersionRow = { seq: number; id: string; scope: string; parent: string | null; label_id: string; label_scope: string | null; signer: string | null; author: string | null; created: number; published: number; files: number; size: number; changed: number };
export type FetchRow = { fetches: number; files_fetched: number; bytes_fetched: number; files_kept: number; bytes_kept: number; ms: number; saved_ms: number };

export const versionInfo = (row: VersionRow): MountVersionInfo => ({
  id: row.id,
  parent: row.parent,
  signer: row.signer,
  author: row.author,
  created: Number(row.created),
  published: Number(row.published),
  files: Number(row.files),
  size: Number(row.size),
  changed: Number(row.changed),
});

export const fetchTotals = (row: FetchRow | undefined | null): MountFetchTotals => ({
  fetches: Number(row?.fetches ?? 0),
  filesFetched: Number(row?.files_fetched ?? 0),
  bytesFetched: Number(row?.bytes_fetched ?? 0),
  filesKept: Number(row?.files_kept ?? 0),
  bytesKept: Number(row?.bytes_kept ?? 0),
  ms: Number(row?.ms ?? 0),
  savedMs: Number(row?.saved_ms ?? 0),
});

export class SqliteMountRows implements MountRows {
  private readonly db: Database;

  constructor(
    private readonly storage: Storage,
    private readonly index: SqliteCacheIndex,
  ) {
    this.db = index.db;
    this.db.exec(SCHEMA);
  }

  async scopes(): Promise<MountScopeInfo[]> {
    const rows = this.db.query(`SELECT ${INFO} FROM mount_versions WHERE seq IN (SELECT MAX(seq) FROM mount_versions GROUP BY scope) ORDER BY published DESC`).all() as VersionRow[];
    return rows.map((row) => ({
      scope: row.scope,
      label: { id: row.label_id, scope: row.label_scope },
      versions: (this.db.query("SELECT COUNT(*) AS n FROM mount_versions WHERE scope = ?").get(row.scope) as { n: number }).n,
      stored: this.storedBytes(row.scope),
      current: versionInfo(row),
      changes: (this.db.query("SELECT changed FROM mount_versions WHERE scope = ? ORDER BY seq DESC LIMIT 10").all(row.scope) as { changed: number }[]).map((r) => r.changed),
      fetched: fetchTotals(this.db.query("SELECT * FROM mount_fetches WHERE scope = ?").get(row.scope) as FetchRow | null),
    }));
  }

  async versions(scope: string) {
    return (this.db.query(`SELECT ${INFO} FROM mount_versions WHERE scope = ? ORDER BY seq DESC`).all(scope) as VersionRow[]).map(versionInfo);
  }

  async labelOf(scope: string) {
    const row = this.db.query("SELECT label_id, label_scope FROM mount_versions WHERE scope = ? ORDER BY seq DESC LIMIT 1").get(scope) as { label_id: string; label_scope: string | null } | null;
    return row ? { id: row.label_id, scope: row.label_scope } : undefined;
  }

  async body(id: string, scope?: string) {
    const row = scope === undefined ? this.db.query("SELECT body FROM mount_versions WHERE id = ?").get(id) : this.db.query("SELECT body FROM mount_versions WHERE scope = ? AND id = ?").get(scope, id);
    return (row as { body: string } | null)?.body;
  }

  async exists(id: string) {
    return this.db.query("SELECT 1 FROM mount_versions WHERE id = ?").get(id) !== null;
  }

  async blobSizes(hashes: string[]) {
    const sizes = new Map<string, number>();
    for (const hash of hashes) {
      const size = this.index.sizeOf(hash);
      if (size !== undefined) sizes.set(hash, size);
    }
    return sizes;
  }

  /** One process, no await between the check and the writes: nothing can evict a blob meanwhile. */
  async insert(version: NewVersion, budget: number): Promise<InsertOutcome> {
    const absent = [...version.blobs].filter(([hash, size]) => this.index.sizeOf(hash) !== size).map(([hash]) => hash);
    if (absent.length) return { absent };
    const { info, scope, label, body } = version;
    const stored = this.db.transaction(() => {
      const inserted = this.db
        .query("INSERT OR IGNORE INTO mount_versions (id, scope, parent, label_id, label_scope, signer, author, created, published, files, size, changed, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        .run(info.id, scope, info.parent, label.id, label.scope, info.signer, info.author, info.created, info.published, info.files, info.size, info.changed, body);
      if (inserted.changes === 0) return false;
      const needs = this.db.query("INSERT OR IGNORE INTO action_blobs (key, hash) VALUES (?, ?)");
      for (const hash of version.blobs.keys()) needs.run(blobKey(info.id), hash);
      return true;
    })();
    if (!stored) return { stored: false };
    for (const hash of version.blobs.keys()) this.storage.touchBlob(hash);
    return { stored: true, evicted: this.keepBudget(budgetGroup(scope, label), budget) };
  }

  async recordFetch(scope: string, report: MountFetchReport, now: number) {
    this.db
      .query(
        // Each total stops at 2^53 - 1 (mounts.ts: MAX_FETCH_MS): reports cannot overflow it.
        `INSERT INTO mount_fetches VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (scope) DO UPDATE SET fetches = MIN(fetches + 1, ?9),
         files_fetched = MIN(files_fetched + ?2, ?9), bytes_fetched = MIN(bytes_fetched + ?3, ?9), files_kept = MIN(files_kept + ?4, ?9),
         bytes_kept = MIN(bytes_kept + ?5, ?9), ms = MIN(ms + ?6, ?9), saved_ms = MIN(saved_ms + ?7, ?9), updated = ?8`,
      )
      .run(scope, report.filesFetched, report.bytesFetched, report.filesKept, report.bytesKept, report.ms, savedMs(report), now, Number.MAX_SAFE_INTEGER);
  }

  private storedBytes(scope: string): number {
    const row = this.db
      .query("SELECT COALESCE(SUM(size), 0) AS bytes FROM blobs WHERE hash IN (SELECT hash FROM action_blobs WHERE key IN (SELECT 'mount:' || id FROM mount_versions WHERE scope = ?))")
      .get(scope) as { bytes: number };
    return row.bytes;
  }

  private keepBudget(group: ReturnType<typeof budgetGroup>, budget: number): number {
    // `by` is one of two column names (budgetGroup), never text from a request.
    const ids = (this.db.query(`SELECT id FROM mount_versions WHERE ${group.by} = ? ORDER BY seq DESC`).all(group.key) as { id: string }[]).map((row) => row.id);
    // Each version's distinct files, from the rows that keep its blobs (no manifest parsed).
    const files = this.db.query("SELECT b.hash AS hash, b.size AS size FROM action_blobs a JOIN blobs b ON b.hash = a.hash WHERE a.key = ?");
    const evict = versionsToEvict(ids, (id) => files.all(blobKey(id)) as { hash: string; size: number }[], budget);
    this.db.transaction(() => {
      for (const id of evict) {
        this.db.query("DELETE FROM mount_versions WHERE id = ?").run(id);
        this.db.query("DELETE FROM action_blobs WHERE key = ?").run(blobKey(id));
      }
    })();
    return evict.length;
  }
}
