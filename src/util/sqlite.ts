import type { Database } from "bun:sqlite";

/** Older databases lack columns added since; SQLite adds them in place. */
export function addMissingColumns(db: Database, table: string, columns: string[]) {
  const have = new Set((db.query(`PRAGMA table_info(${table})`).all() as { name: string }[]).map((c) => c.name));
  for (const column of columns) if (!have.has(column.split(" ")[0])) db.exec(`ALTER TABLE ${table} ADD COLUMN ${column}`);
}
