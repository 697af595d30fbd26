import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TarReader, TarWriter, type TarEntry } from "./tar.ts";

const dir = mkdtempSync(join(tmpdir(), "memobuild-tar-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function writeArchive(file: string, entries: [TarEntry, Buffer?][]) {
  const chunks: Uint8Array[] = [];
  const writer = new TarWriter((c) => chunks.push(c));
  for (const [entry, content] of entries) {
    writer.add(entry);
    if (content) {
      writer.content(content);
      writer.pad(content.length);
    }
  }
  writer.finish();
  writeFileSync(file, Buffer.concat(chunks));
}

const base = { mode: 0o644, uid: 0, gid: 0, size: 0, mtime: 1_700_000_000 };
const longName = "deep/" + "x".repeat(150) + "/file";
const entries: [TarEntry, Buffer?][] = [
  [{ ...base, name: "dir", type: "dir", mode: 0o755 }],
  [{ ...base, name: "dir/file", type: "file", size: 5, mode: 0o4755, uid: 1000, gid: 1000 }, Buffer.from("hello")],
  [{ ...base, name: "dir/link", type: "symlink", linkname: "/etc/passwd", mode: 0o777 }],
  [{ ...base, name: "dir/hard", type: "hardlink", linkname: "dir/file" }],
  [{ ...base, name: longName, type: "file", size: 3 }, Buffer.from("abc")],
  [{ ...base, name: "odd \n\xff\xfe", type: "file", size: 1 }, Buffer.from("z")],
  [{ ...base, name: "dir/.wh.gone", type: "file" }, Buffer.alloc(0)],
  [{ ...base, name: "big-uid", type: "file", uid: 5_000_000, gid: 70_000 }, Buffer.alloc(0)],
];

test("what the writer writes, the reader reads back", () => {
  const file = join(dir, "a.tar");
  writeArchive(file, entries);
  const reader = new TarReader(file);
  const read: [TarEntry, string][] = [];
  for (let entry = reader.next(); entry; entry = reader.next()) {
    read.push([entry, Buffer.concat([...reader.readContent(2)]).toString("latin1")]);
  }
  reader.close();
  expect(read.map(([e]) => e.name)).toEqual(entries.map(([e]) => e.name));
  expect(read[1][0]).toMatchObject({ type: "file", mode: 0o4755, uid: 1000, gid: 1000, size: 5, mtime: 1_700_000_000 });
  expect(read[1][1]).toBe("hello");
  expect(read[2][0]).toMatchObject({ type: "symlink", linkname: "/etc/passwd" });
  expect(read[3][0]).toMatchObject({ type: "hardlink", linkname: "dir/file" });
  expect(read[4][1]).toBe("abc");
  expect(read[7][0]).toMatchObject({ uid: 5_000_000, gid: 70_000 });
});

test("GNU tar reads what the writer writes", () => {
  const file = join(dir, "b.tar");
  writeArchive(file, entries);
  const list = Bun.spawnSync(["tar", "-tvf", file], { stdout: "pipe", stderr: "pipe" });
  expect(list.stderr.toString()).toBe("");
  expect(list.stdout.toString()).toContain("-rwsr-xr-x 1000/1000         5 2023-11-14 22:13 dir/file");
  expect(list.stdout.toString()).toContain(longName);
});

test("the reader reads what GNU tar writes, long names included", () => {
  const src = join(dir, "src");
  mkdirSync(join(src, "a".repeat(120)), { recursive: true });
  writeFileSync(join(src, "a".repeat(120), "f"), "content");
  const file = join(dir, "gnu.tar");
  expect(Bun.spawnSync(["tar", "-cf", file, "-C", src, "."]).exitCode).toBe(0);
  const reader = new TarReader(file);
  const names: string[] = [];
  for (let entry = reader.next(); entry; entry = reader.next()) names.push(entry.name);
  reader.close();
  expect(names).toContain(`./${"a".repeat(120)}/f`);
});
