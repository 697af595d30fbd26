/**
 * A listing's lines with every column as wide as its widest cell, so long values (a
 * `job-private/…` scope, a long mount id) push the columns right instead of out of line.
 * Columns named in `right` (figures) are right-aligned, their header too; cells must
 * already be safe for a terminal. The last column is not padded.
 */
export function formatTable(header: string[], rows: string[][], right: ReadonlySet<number> = new Set()): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? "").length)));
  const line = (row: string[]) =>
    header
      .map((_, i) => (right.has(i) ? (row[i] ?? "").padStart(widths[i]) : (row[i] ?? "").padEnd(widths[i])))
      .join("  ")
      .trimEnd();
  return [header, ...rows].map(line).join("\n") + "\n";
}
