import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MAX_SPECIAL_ENTRY, TarFormatError, TarReader, TarWriter, type TarEntry } from "./tar.ts";

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

/** A raw ustar header with any field text (valid or not) and a correct checksum. */
function rawHeader(fields: { name: string; flag: string; size?: string; mode?: string; raw?: (block: Buffer) => void }): Buffer {
  const block = Buffer.alloc(512);
  block.write(fields.name, 0, "latin1");
  block.write(fields.mode ?? "0000644\0", 100, "latin1");
  block.write("0000000\0", 108, "latin1");
  block.write("0000000\0", 116, "latin1");
  block.write(fields.size ?? "00000000000\0", 124, "latin1");
  block.write("00000000000\0", 136, "latin1");
  block.write(fields.flag, 156, "latin1");
  block.write("ustar\x0000", 257, "latin1");
  fields.raw?.(block);
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, "latin1");
  return block;
}

const padded = (body: Buffer) => Buffer.concat([body, Buffer.alloc((512 - (body.length % 512)) % 512)]);
const paxEntry = (records: string) => {
  const body = Buffer.from(records, "latin1");
  return Buffer.concat([rawHeader({ name: "pax", flag: "x", size: body.length.toString(8).padStart(11, "0") + "\0" }), padded(body)]);
};
const record = (key: string, value: string) => {
  const text = ` ${key}=${value}\n`;
  let length = text.length + 1;
  while (`${length}${text}`.length !== length) length++;
  return `${length}${text}`;
};

/** Reads every entry (and content) of an archive; returns the error message, if any. */
function readAll(bytes: Buffer): string | undefined {
  const file = join(dir, `hostile-${Math.random().toString(36).slice(2)}.tar`);
  writeFileSync(file, Buffer.concat([bytes, Buffer.alloc(1024)]));
  const reader = new TarReader(file);
  try {
    for (let entry = reader.next(); entry; entry = reader.next()) for (const _ of reader.readContent());
    return undefined;
  } catch (error) {
    expect(error).toBeInstanceOf(TarFormatError);
    return (error as Error).message;
  } finally {
    reader.close();
  }
}

test("hostile headers are refused with the offset, never looped on or allocated", () => {
  const file = rawHeader({ name: "f", flag: "0" });
  // A negative PAX size once sent the reader back to the same header forever.
  expect(readAll(Buffer.concat([paxEntry(record("size", "-1536")), file]))).toBe('PAX size="-1536" is not a number (entry at offset 1024)');
  expect(readAll(Buffer.concat([paxEntry(record("uid", "12abc")), file]))).toBe('PAX uid="12abc" is not a number (entry at offset 1024)');
  expect(readAll(Buffer.concat([paxEntry(record("size", "99999999999999999999")), file]))).toBe("PAX size is too large (entry at offset 1024)");
  expect(readAll(Buffer.concat([paxEntry("9999 path=x\n"), file]))).toBe("malformed PAX record at offset 512");
  expect(readAll(Buffer.concat([paxEntry("0 x=y\n"), file]))).toBe("malformed PAX record at offset 512");
  expect(readAll(Buffer.concat([paxEntry("6 =yz\n"), file]))).toBe("PAX record without a key at offset 512");
  // A PAX header that declares 8 GB is not read into memory.
  expect(readAll(rawHeader({ name: "pax", flag: "x", size: "77777777777\0" }))).toBe("a PAX record of 8589934591 bytes at offset 0 is over the limit of 1048576");
  // The same limit holds for every record read into memory: GNU long names and links, global PAX.
  // (Declared just over the limit, with no body: reading it would end in "unexpected end".)
  const overLimit = (MAX_SPECIAL_ENTRY + 1).toString(8).padStart(11, "0") + "\0";
  expect(readAll(rawHeader({ name: "././@LongLink", flag: "L", size: overLimit }))).toBe("a GNU long name record of 1048577 bytes at offset 0 is over the limit of 1048576");
  expect(readAll(rawHeader({ name: "././@LongLink", flag: "K", size: overLimit }))).toBe("a GNU long name record of 1048577 bytes at offset 0 is over the limit of 1048576");
  expect(readAll(rawHeader({ name: "global", flag: "g", size: overLimit }))).toBe("a PAX record of 1048577 bytes at offset 0 is over the limit of 1048576");
  const atLimit = Buffer.alloc(MAX_SPECIAL_ENTRY, "n");
  expect(readAll(Buffer.concat([rawHeader({ name: "././@LongLink", flag: "L", size: MAX_SPECIAL_ENTRY.toString(8).padStart(11, "0") + "\0" }), atLimit, file]))).toBeUndefined();
  expect(readAll(rawHeader({ name: "f", flag: "0", size: "12x4\0" }))).toBe('size "12x4" is not an octal number in the tar header at offset 0');
  expect(readAll(rawHeader({ name: "f", flag: "0", mode: "-000644\0" }))).toBe('mode "-000644" is not an octal number in the tar header at offset 0');
  expect(readAll(rawHeader({ name: "f", flag: "0", raw: (b) => b.fill(0xff, 124, 136) }))).toBe("negative size in the tar header at offset 0");
  // A file whose declared size runs past the end of the archive.
  expect(readAll(rawHeader({ name: "f", flag: "0", size: "00000100000\0" }))).toBe("unexpected end of archive");
});
