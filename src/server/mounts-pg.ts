/**
 * Shared cache mount versions in PostgreSQL, shared by every replica (mounts.ts has the
 * contract, mounts-sqlite.ts the same rows in SQLite). A publish is one transaction: it marks
 * the version's blobs used (locking their rows, so an eviction deciding about them waits, as for
 * a step result), inserts the version if its id is new, and keeps the scope's budget under the
 * scope's advisory lock, so two replicas publishing to one scope take turns over the budget and
 * neither loses the other's version.
 */
import type { SQL } from "bun";
import type { MountFetchReport, MountScopeInfo } from "../remote/mount-types.ts";
import { blobKey, budgetGroup, savedMs, versionsToEvict, type InsertOutcome, type MountRows, type NewVersion } from "./mounts.ts";
import { fetchTotals, versionInfo, type FetchRow, type VersionRow } from "./mounts-sqlite.ts";
import { LOCKS, num } from "./pg.ts";

export class PgMountRows implements MountRows {
  constructor(private readonly sql: SQL) {}

  async scopes(): Promise<MountScopeInfo[]> {
    const rows = (await this.sql`SELECT DISTINCT ON (scope) * FROM mount_versions ORDER BY scope, seq DESC`) as (VersionRow & { label_id: string })[];
    const scopes = await Promise.all(
      rows.map(async (row) => {
        const [count] = await this.sql`SELECT count(*) AS n FROM mount_versions WHERE scope = ${row.scope}`;
        const [stored] = await this.sql`SELECT coalesce(sum(size), 0) AS bytes FROM blobs WHERE hash IN
          (SELECT hash FROM action_blobs WHERE key IN (SELECT 'mount:' || id FROM mount_versions WHERE scope = ${row.scope}))`;
        const changes = await this.sql`SELECT changed FROM mount_versions WHERE scope = ${row.scope} ORDER BY seq DESC LIMIT 10`;
        const [fetched] = await this.sql`SELECT * FROM mount_fetches WHERE scope = ${row.scope}`;
        return {
          scope: row.scope,
          label: { id: row.label_id, scope: row.label_scope },
          versions: num(count.n),
          stored: num(stored.bytes),
          current: versionInfo(row),
          changes: changes.map((r: { changed: string }) => num(r.changed)),
          fetched: fetchTotals(fetched as FetchRow | undefined),
        };
      }),
    );
    return scopes.sort((a, b) => b.current.published - a.current.published);
  }

  async versions(scope: string) {
    const rows = await this.sql`SELECT seq, id, scope, parent, label_id, label_scope, signer, author, created, published, files, size, changed
      FROM mount_versions WHERE scope = ${scope} ORDER BY seq DESC`;
    return (rows as VersionRow[]).map(versionInfo);
  }

  async labelOf(scope: string) {
    const [row] = await this.sql`SELECT label_id, label_scope FROM mount_versions WHERE scope = ${scope} ORDER BY seq DESC LIMIT 1`;
    return row ? { id: row.label_id as string, scope: row.label_scope as string | null } : undefined;
  }

  async body(id: string, scope?: string) {
    const [row] = scope === undefined ? await this.sql`SELECT body FROM mount_versions WHERE id = ${id}` : await this.sql`SELECT body FROM mount_versions WHERE scope = ${scope} AND id = ${id}`;
    return row?.body as string | undefined;
  }

  async exists(id: string) {
    return (await this.sql`SELECT 1 FROM mount_versions WHERE id = ${id}`).length > 0;
  }

  async blobSizes(hashes: string[]) {
    if (hashes.length === 0) return new Map<string, number>();
    const rows = await this.sql`SELECT hash, size FROM blobs WHERE hash = ANY(${hashes}::text[])`;
    return new Map<string, number>(rows.map((r: { hash: string; size: string }) => [r.hash, num(r.size)]));
  }

  async insert(version: NewVersion, budget: number): Promise<InsertOutcome> {
    const { info, scope, label, body, blobs } = version;
    return await this.sql.begin(async (tx): Promise<InsertOutcome> => {
      const hashes = [...blobs.keys()];
      if (hashes.length) {
        // Locked in one order (by hash): two publishers sharing files never wait on each other in a circle.
        const touched = await tx`SELECT hash, size FROM blobs WHERE hash = ANY(${hashes}::text[]) ORDER BY hash FOR UPDATE`;
        await tx`UPDATE blobs SET last_access = GREATEST(last_access, ${info.published}) WHERE hash = ANY(${hashes}::text[])`;
        const have = new Map<string, number>(touched.map((r: { hash: string; size: string }) => [r.hash, num(r.size)]));
        const absent = hashes.filter((hash) => have.get(hash) !== blobs.get(hash));
        if (absent.length) return { absent };
      }
      // The budget group's lock first: the budget below decides over every version of it at once.
      const group = budgetGroup(scope, label);
      await tx`SELECT pg_advisory_xact_lock(${LOCKS.mounts}, hashtext(${group.key}))`;
      const inserted = await tx`INSERT INTO mount_versions (id, scope, parent, label_id, label_scope, signer, author, created, published, files, size, changed, body)
        VALUES (${info.id}, ${scope}, ${info.parent}, ${label.id}, ${label.scope}, ${info.signer}, ${info.author}, ${info.created}, ${info.published}, ${info.files}, ${info.size}, ${info.changed}, ${body})
        ON CONFLICT (id) DO NOTHING RETURNING id`;
      if (!inserted.length) return { stored: false };
      if (hashes.length) await tx`INSERT INTO action_blobs SELECT ${blobKey(info.id)}, unnest(${hashes}::text[]) ON CONFLICT DO NOTHING`;
      return { stored: true, evicted: await this.keepBudget(tx, group, budget) };
    });
  }

  async recordFetch(scope: string, report: MountFetchReport, now: number) {
    const saved = savedMs(report);
    // Each total stops at 2^53 - 1, as in SQLite: reports cannot overflow it (nor a JS number).
    const max = Number.MAX_SAFE_INTEGER;
    await this.sql`INSERT INTO mount_fetches VALUES (${scope}, 1, ${report.filesFetched}, ${report.bytesFetched}, ${report.filesKept}, ${report.bytesKept}, ${report.ms}, ${saved}, ${now})
      ON CONFLICT (scope) DO UPDATE SET fetches = LEAST(mount_fetches.fetches + 1, ${max}), files_fetched = LEAST(mount_fetches.files_fetched + excluded.files_fetched, ${max}),
      bytes_fetched = LEAST(mount_fetches.bytes_fetched + excluded.bytes_fetched, ${max}), files_kept = LEAST(mount_fetches.files_kept + excluded.files_kept, ${max}),
      bytes_kept = LEAST(mount_fetches.bytes_kept + excluded.bytes_kept, ${max}), ms = LEAST(mount_fetches.ms + excluded.ms, ${max}),
      saved_ms = LEAST(mount_fetches.saved_ms + excluded.saved_ms, ${max}), updated = excluded.updated`;
  }

  private async keepBudget(tx: SQL, group: ReturnType<typeof budgetGroup>, budget: number): Promise<number> {
    const versions = group.by === "scope"
      ? await tx`SELECT id FROM mount_versions WHERE scope = ${group.key} ORDER BY seq DESC`
      : await tx`SELECT id FROM mount_versions WHERE label_scope = ${group.key} ORDER BY seq DESC`;
    const ids = versions.map((r: { id: string }) => r.id);
    const rows = await tx`SELECT a.key AS key, b.hash AS hash, b.size AS size FROM action_blobs a JOIN blobs b ON b.hash = a.hash
      WHERE a.key = ANY(${ids.map(blobKey)}::text[])`;
    const byVersion = new Map<string, { hash: string; size: number }[]>();
    for (const row of rows as { key: string; hash: string; size: string }[]) {
      const list = byVersion.get(row.key) ?? [];
      list.push({ hash: row.hash, size: num(row.size) });
      byVersion.set(row.key, list);
    }
    const evict = versionsToEvict(ids, (id) => byVersion.get(blobKey(id)) ?? [], budget);
    if (evict.length) {
      await tx`DELETE FROM mount_versions WHERE id = ANY(${evict}::text[])`;
      await tx`DELETE FROM action_blobs WHERE key = ANY(${evict.map(blobKey)}::text[])`;
    }
    return evict.length;
  }
}
