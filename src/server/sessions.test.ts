/** Dashboard sessions, in memory (one server) and in PostgreSQL (shared by replicas): the same rules. */
import { afterAll, describe, expect, test } from "bun:test";
import { BACKENDS } from "../../test/support/backends.ts";
import { migrate, openPostgres } from "./pg.ts";
import { PgSessions, Sessions, type SessionStore } from "./sessions.ts";

const pools: { close(): Promise<void> }[] = [];
afterAll(async () => {
  for (const pool of pools) await pool.close();
});
let n = 0;

for (const backend of BACKENDS) {
  describe(`sessions on ${backend.name}`, () => {
    async function sessions(ttlMs: number, max: number): Promise<SessionStore> {
      if (backend.files) return new Sessions(ttlMs, max);
      const sql = openPostgres((await backend.db(`sessions-${++n}`))!, 2);
      pools.push(sql);
      await migrate(sql);
      return new PgSessions(sql, ttlMs, max);
    }

    test("a session names its token and role until it expires or is deleted; unknown ids are nobody", async () => {
      const store = await sessions(60_000, 100);
      const id = await store.create("ro", "token-id-1");
      expect(id).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(await store.get(id)).toMatchObject({ role: "ro", token: "token-id-1" });
      expect(await store.get("not-a-session")).toBeUndefined();
      expect(await store.get(undefined)).toBeUndefined();
      await store.delete(id);
      expect(await store.get(id)).toBeUndefined();
      const short = await sessions(-1, 100); // expired as soon as made
      expect(await short.get(await short.create("rw", "token-id-2"))).toBeUndefined();
    });

    test("past the bound, the oldest sessions go", async () => {
      const store = await sessions(60_000, 2);
      const first = await store.create("ro", "a");
      await Bun.sleep(2);
      const second = await store.create("ro", "b");
      await Bun.sleep(2);
      const third = await store.create("ro", "c");
      expect([await store.get(first), await store.get(second), await store.get(third)].map((s) => s?.token)).toEqual([undefined, "b", "c"]);
    });
  });
}
