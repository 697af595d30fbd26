import { Database } from "bun:sqlite";

/**
 * A metadata database as every store here uses one: WAL, so readers never wait for a writer;
 * synchronous=NORMAL, so a crash may lose the last commits but never consistency (every row
 * is written after what it points to is in place); a busy timeout instead of an instant error.
 */
export function openDatabase(path: string, schema: string, busyTimeoutMs = 10_000): Database {
  const db = new Database(path, { create: true, strict: true });
  db.exec(`PRAGMA busy_timeout = ${busyTimeoutMs}`);
  db.exec("PRAGMA journal_mode = WAL");
  db.exec("PRAGMA synchronous = NORMAL");
  db.exec(schema);
  return db;
}

/** Older databases lack columns added since; SQLite adds them in place. */
export function addMissingColumns(db: Database, table: string, columns: string[]) {
  const have = new Set((db.query(`PRAGMA table_info(${table})`).all() as { name: string }[]).map((c) => c.name));
  for (const column of columns) if (!have.has(column.split(" ")[0])) db.exec(`ALTER TABLE ${table} ADD COLUMN ${column}`);
}
