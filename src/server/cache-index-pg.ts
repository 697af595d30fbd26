/**
 * The cache index in PostgreSQL, shared by every replica (see cache-index.ts for the contract).
 * Nothing is cached in a replica's memory: another replica may add or evict at any moment.
 */
import type { SQL } from "bun";
import { conflictFromRow, sameWriter, unreproducibleFromRow, type ActionEntry, type CacheIndex, type Conflict, type Evicted, type Nondeterministic, type PutActionOutcome, type TokenStat, type TokenUse, type Unreproducible } from "./cache-index.ts";
import { LOCKS, num } from "./pg.ts";

export class PgCacheIndex implements CacheIndex {
  constructor(
    readonly sql: SQL,
    /** Set when this index was given a pool of its own: closing the index closes it. */
    private readonly ownsPool = false,
  ) {}

  async ping() {
    await this.sql`SELECT 1`;
  }

  async blobSize(hash: string) {
    const [row] = await this.sql`SELECT size FROM blobs WHERE hash = ${hash}`;
    return row ? num(row.size) : undefined;
  }

  /** Under the blob's lock, which eviction takes before deleting the bytes of a blob it forgot. */
  async addBlob(hash: string, size: number, now: number, commit: () => Promise<void>) {
    await this.sql.begin(async (tx) => {
      await tx`SELECT pg_advisory_xact_lock(${LOCKS.blob}, hashtext(${hash}))`;
      await commit();
      await tx`INSERT INTO blobs VALUES (${hash}, ${size}, ${now}) ON CONFLICT (hash) DO NOTHING`;
    });
  }

  async getAction(key: string) {
    const [row] = await this.sql`SELECT body FROM actions WHERE key = ${key}`;
    return row?.body as string | undefined;
  }

  async hasAction(key: string) {
    return (await this.sql`SELECT 1 FROM actions WHERE key = ${key}`).length > 0;
  }

  async putAction(entry: ActionEntry): Promise<PutActionOutcome> {
    // A key evicted between the insert that found it and the read of it is simply tried again.
    for (let attempt = 1; ; attempt++) {
      const outcome = await this.putActionOnce(entry);
      if (outcome !== "evicted meanwhile") return outcome;
      if (attempt === 3) throw new Error(`step ${entry.key}: evicted while being stored, three times over`);
    }
  }

  private async putActionOnce(entry: ActionEntry): Promise<PutActionOutcome | "evicted meanwhile"> {
    const { key, body, author, signer, result, blobs, now } = entry;
    const build = entry.build ?? null;
    const step = entry.step ?? null;
    return await this.sql.begin(async (tx): Promise<PutActionOutcome | "evicted meanwhile"> => {
      if (blobs.length) {
        // Marking the blobs used locks their rows: an eviction deciding about them waits, then
        // sees them recent and leaves them; one that went first made them missing here.
        const touched = await tx`UPDATE blobs SET last_access = ${now} WHERE hash IN ${tx(blobs)} RETURNING hash`;
        const have = new Set(touched.map((r: { hash: string }) => r.hash));
        const missing = blobs.filter((b) => !have.has(b));
        if (missing.length) return { missing };
      }
      const inserted = await tx`INSERT INTO actions (key, body, size, last_access, author, signer, result, build, step)
        VALUES (${key}, ${body}, ${body.length}, ${now}, ${author}, ${signer}, ${result}, ${build}, ${step}) ON CONFLICT (key) DO NOTHING RETURNING key`;
      if (inserted.length) {
        for (const blob of blobs) await tx`INSERT INTO action_blobs VALUES (${key}, ${blob}) ON CONFLICT DO NOTHING`;
        return "stored";
      }
      const [existing] = await tx`SELECT author, signer, result, build FROM actions WHERE key = ${key} FOR UPDATE`;
      if (!existing) return "evicted meanwhile";
      if (existing.result === result) {
        if (existing.signer !== null || signer === null) return "same";
        const changed = await tx`UPDATE actions SET body = ${body}, size = ${body.length}, author = ${author}, signer = ${signer}, result = ${result}
          WHERE key = ${key} AND signer IS NULL RETURNING key`;
        return changed.length ? "signed" : "same";
      }
      const conflict: Conflict = { key, time: now, first: { author: existing.author, signer: existing.signer, result: existing.result, build: existing.build }, second: { author, signer, result, build }, step };
      if (sameWriter(conflict)) return { differs: conflict };
      await tx`INSERT INTO conflicts (key, time, first_author, first_signer, first_result, second_author, second_signer, second_result, first_build, second_build, step)
        VALUES (${key}, ${now}, ${existing.author}, ${existing.signer}, ${existing.result}, ${author}, ${signer}, ${result}, ${existing.build}, ${build}, ${step})`;
      return { conflict };
    });
  }

  async signerOf(key: string) {
    const [row] = await this.sql`SELECT signer FROM actions WHERE key = ${key}`;
    return (row?.signer as string | null | undefined) ?? null;
  }

  async conflicts(options: { key?: string; limit: number }) {
    const rows = options.key
      ? await this.sql`SELECT * FROM conflicts WHERE key = ${options.key} ORDER BY id DESC LIMIT ${options.limit}`
      : await this.sql`SELECT * FROM conflicts ORDER BY id DESC LIMIT ${options.limit}`;
    return rows.map(conflictFromRow);
  }

  async conflictCount() {
    const [row] = await this.sql`SELECT count(*) AS n FROM conflicts`;
    return num(row.n);
  }

  async addUnreproducible(u: Unreproducible) {
    await this.sql`INSERT INTO unreproducible (key, time, author, signer, step, first_result, first_build, second_result, second_build, differences)
      VALUES (${u.key}, ${u.time}, ${u.author}, ${u.signer}, ${u.step}, ${u.first.result}, ${u.first.build}, ${u.second.result}, ${u.second.build}, ${JSON.stringify(u.differences)})`;
  }

  async unreproducible(options: { key?: string; limit: number }) {
    const rows = options.key
      ? await this.sql`SELECT * FROM unreproducible WHERE key = ${options.key} ORDER BY id DESC LIMIT ${options.limit}`
      : await this.sql`SELECT * FROM unreproducible ORDER BY id DESC LIMIT ${options.limit}`;
    return rows.map(unreproducibleFromRow);
  }

  async nondeterministic(since: number, limit: number): Promise<Nondeterministic[]> {
    const rows = await this.sql`SELECT g.step, g.count, g.last,
        (SELECT second_build FROM unreproducible u WHERE coalesce(u.step, u.key) = g.step ORDER BY id DESC LIMIT 1) AS last_build
      FROM (SELECT coalesce(step, key) AS step, count(*) AS count, max(time) AS last FROM unreproducible WHERE time >= ${since} GROUP BY coalesce(step, key)) g
      ORDER BY g.count DESC, g.last DESC LIMIT ${limit}`;
    return rows.map((r: Record<string, unknown>) => ({ step: r.step as string, count: num(r.count), last: num(r.last), lastBuild: (r.last_build ?? null) as string | null }));
  }

  async tokenStats(): Promise<TokenStat[]> {
    const rows = await this.sql`SELECT token, requests, bytes_in, bytes_out FROM token_stats ORDER BY requests DESC LIMIT 100`;
    return rows.map((r: Record<string, string>) => ({ token: r.token, requests: num(r.requests), bytesIn: num(r.bytes_in), bytesOut: num(r.bytes_out) }));
  }

  async counts() {
    const [row] = await this.sql`SELECT (SELECT count(*) FROM blobs) AS blobs, (SELECT count(*) FROM actions) AS actions, (SELECT coalesce(sum(size), 0) FROM blobs) AS bytes`;
    return { blobs: num(row.blobs), actions: num(row.actions), bytes: num(row.bytes) };
  }

  async flush(blobs: Map<string, number>, actions: Map<string, number>, tokens: Map<string, TokenUse>) {
    await this.sql.begin(async (tx) => {
      // One statement per table: a replica flushing thousands of touches makes three round trips.
      if (blobs.size) {
        await tx`UPDATE blobs SET last_access = GREATEST(last_access, t.time) FROM (SELECT unnest(${[...blobs.keys()]}::text[]) AS hash, unnest(${[...blobs.values()]}::bigint[]) AS time) t WHERE blobs.hash = t.hash`;
      }
      if (actions.size) {
        await tx`UPDATE actions SET last_access = GREATEST(last_access, t.time) FROM (SELECT unnest(${[...actions.keys()]}::text[]) AS key, unnest(${[...actions.values()]}::bigint[]) AS time) t WHERE actions.key = t.key`;
      }
      for (const [token, use] of [...tokens].sort(([a], [b]) => (a < b ? -1 : 1))) {
        // Sorted: two replicas flushing the same tokens lock them in the same order (no deadlock).
        await tx`INSERT INTO token_stats VALUES (${token}, ${use.requests}, ${use.bytesIn}, ${use.bytesOut})
          ON CONFLICT (token) DO UPDATE SET requests = token_stats.requests + excluded.requests,
          bytes_in = token_stats.bytes_in + excluded.bytes_in, bytes_out = token_stats.bytes_out + excluded.bytes_out`;
      }
    });
  }

  /**
   * One transaction under the eviction lock (tried, not waited for: a replica that finds it
   * taken leaves the work to the holder). Killed midway, the transaction rolls back whole;
   * blob bytes are deleted only after it commits, so no row ever names bytes that are gone.
   */
  async evict(max: number, graceEnds: number, remove: (hash: string) => Promise<void>): Promise<Evicted | undefined> {
    const evicted = await this.forget(max, graceEnds);
    // The entries are gone for good; now the bytes, each under the blob's lock and only if no
    // upload stored the blob again meanwhile (it would have put the bytes back in place).
    for (const hash of evicted?.blobs ?? []) {
      await this.sql.begin(async (tx) => {
        await tx`SELECT pg_advisory_xact_lock(${LOCKS.blob}, hashtext(${hash}))`;
        const [again] = await tx`SELECT 1 FROM blobs WHERE hash = ${hash}`;
        if (!again) await remove(hash);
      });
    }
    return evicted;
  }

  private async forget(max: number, graceEnds: number): Promise<Evicted | undefined> {
    return await this.sql.begin(async (tx) => {
      const [lock] = await tx`SELECT pg_try_advisory_xact_lock(${LOCKS.evict}) AS taken`;
      if (!lock.taken) return undefined;
      const [total] = await tx`SELECT coalesce(sum(size), 0) AS bytes FROM blobs`;
      let used = num(total.bytes);
      const gone: string[] = [];
      let count = 0;
      if (used <= max) return { blobs: gone, count };
      const candidates = await tx`SELECT hash, size FROM blobs WHERE last_access < ${graceEnds}
        AND NOT EXISTS (SELECT 1 FROM action_blobs a WHERE a.hash = blobs.hash) ORDER BY last_access ASC`;
      for (const blob of candidates) {
        if (used <= max) break;
        // Conditional: a putAction that marked it used since the query above keeps it.
        const deleted = await tx`DELETE FROM blobs WHERE hash = ${blob.hash} AND last_access < ${graceEnds}
          AND NOT EXISTS (SELECT 1 FROM action_blobs a WHERE a.hash = ${blob.hash}) RETURNING size`;
        if (!deleted.length) continue;
        used -= num(deleted[0].size);
        gone.push(blob.hash);
        count++;
      }
      while (used > max) {
        const [oldest] = await tx`DELETE FROM actions WHERE key = (SELECT key FROM actions ORDER BY last_access ASC LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING key`;
        if (!oldest) break;
        const needed = await tx`DELETE FROM action_blobs WHERE key = ${oldest.key} RETURNING hash`;
        count++;
        for (const { hash } of needed) {
          const deleted = await tx`DELETE FROM blobs WHERE hash = ${hash} AND NOT EXISTS (SELECT 1 FROM action_blobs a WHERE a.hash = ${hash}) RETURNING size`;
          if (!deleted.length) continue;
          used -= num(deleted[0].size);
          gone.push(hash);
          count++;
        }
      }
      return { blobs: gone, count };
    });
  }

  async close() {
    // A pool shared by the server's stores is closed by whoever opened it.
    if (this.ownsPool) await this.sql.close();
  }
}
