/**
 * The PostgreSQL schema: migrated at start under an advisory lock, so replicas starting together
 * take turns (each version applied once), and a database newer than this program is refused.
 */
import { expect, test } from "bun:test";
import { SQL } from "bun";
import { postgres, startPostgres } from "../../test/support/engines.ts";
import { migrate, openPostgres, redactUrl, SCHEMA_VERSION } from "./pg.ts";

await startPostgres();

test("replicas starting together migrate once; a newer schema is refused; a bad URL names the flag", async () => {
  const url = await postgres();
  const pools = [openPostgres(url, 2), openPostgres(url, 2), openPostgres(url, 2)];
  try {
    await Promise.all(pools.map((sql) => migrate(sql)));
    const versions = await pools[0]`SELECT version FROM memobuild_schema ORDER BY version`;
    expect(versions.map((r: { version: number }) => r.version)).toEqual(Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1));
    await migrate(pools[1]); // again: nothing to do
    await pools[0]`INSERT INTO memobuild_schema VALUES (${SCHEMA_VERSION + 1})`;
    await expect(migrate(pools[2])).rejects.toThrow(`the database's schema is version ${SCHEMA_VERSION + 1}, newer than this memobuild knows (${SCHEMA_VERSION})`);
  } finally {
    await Promise.all(pools.map((sql: SQL) => sql.close()));
  }
  expect(() => openPostgres("mysql://u:secret@h/db")).toThrow("--db mysql://u:***@h/db: use a postgres://USER@HOST:PORT/DATABASE URL");
  expect(redactUrl("postgres://memo:hunter2@db:5432/cache")).toBe("postgres://memo:***@db:5432/cache");
});
