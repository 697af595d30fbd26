import { expect, test } from "bun:test";
import { formatTable } from "./table.ts";

test("every column starts where its header does, however long a cell; figures are right-aligned", () => {
  const text = formatTable(
    ["ID", "SCOPE", "VERSIONS", "WHEN"],
    [
      ["npm", "-", "2", "2026-01-01"],
      ["npm", `job-private/${"a".repeat(40)}`, "12", "2026-01-02"],
    ],
    new Set([2]),
  );
  const lines = text.trimEnd().split("\n");
  const when = lines[0].indexOf("WHEN");
  for (const line of lines.slice(1)) expect(line.indexOf("2026")).toBe(when);
  const versionsEnd = lines[0].indexOf("VERSIONS") + "VERSIONS".length;
  expect(lines[1].lastIndexOf("2 ", when) + 1).toBe(versionsEnd);
  expect(lines[2].lastIndexOf("12") + 2).toBe(versionsEnd);
});
