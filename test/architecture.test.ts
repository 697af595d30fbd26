/**
 * The shape of src/: data flows one way between folders, so no two folders import each other
 * (a pair that does is one job split in two, or a floor that reaches back up). Type-only and
 * dynamic imports count: they tie the folders together all the same.
 */
import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { REPO_ROOT } from "./support/binary.ts";

const SRC = join(REPO_ROOT, "src");

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith(".ts") && !entry.name.endsWith(".test.ts") ? [path] : [];
  });
}

/** The top folder of src/ a file is in ("." for files directly in src/). */
const folderOf = (file: string) => {
  const parts = relative(SRC, file).split("/");
  return parts.length > 1 ? parts[0] : ".";
};

/** folder → folder → the imports that make the arrow ("file -> file"). */
function folderImports(): Map<string, Map<string, string[]>> {
  const arrows = new Map<string, Map<string, string[]>>();
  const pattern = /(?:\bfrom\s*|\bimport\s*\(\s*|^import\s+)["'](\.{1,2}\/[^"']+)["']/gm;
  for (const file of sources(SRC)) {
    for (const match of readFileSync(file, "utf8").matchAll(pattern)) {
      const target = normalize(join(dirname(file), match[1]));
      if (!target.startsWith(SRC + "/")) continue;
      const [from, to] = [folderOf(file), folderOf(target)];
      if (from === to) continue;
      const byTarget = arrows.get(from) ?? arrows.set(from, new Map()).get(from)!;
      (byTarget.get(to) ?? byTarget.set(to, []).get(to)!).push(`${relative(REPO_ROOT, file)} -> ${relative(REPO_ROOT, target)}`);
    }
  }
  return arrows;
}

test("no two folders of src/ import each other", () => {
  const arrows = folderImports();
  const both: string[] = [];
  for (const [from, targets] of arrows) {
    for (const [to, imports] of targets) {
      if (from < to && arrows.get(to)?.has(from)) both.push(`${from} <-> ${to}: ${[...imports, ...arrows.get(to)!.get(from)!].join(", ")}`);
    }
  }
  expect(both).toEqual([]);
});

test("the check sees imports at all (a pattern that matched nothing would pass any tree)", () => {
  const arrows = folderImports();
  expect(arrows.get("solver")?.has("executor")).toBe(true);
  expect(arrows.get("cli")?.has("solver")).toBe(true);
});
