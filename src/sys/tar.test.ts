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

/**
 * Reads every entry (and content) of an archive; returns the error message, if any. Read twice,
 * from a file and from memory (the cache server compares layers it holds in memory): both agree.
 */
function readAll(bytes: Buffer): string | undefined {
  const whole = Buffer.concat([bytes, Buffer.alloc(1024)]);
  const file = join(dir, `hostile-${Math.random().toString(36).slice(2)}.tar`);
  writeFileSync(file, whole);
  const [fromFile, fromMemory] = [file, new Uint8Array(whole)].map((source) => {
    const reader = new TarReader(source);
    try {
      for (let entry = reader.next(); entry; entry = reader.next()) for (const _ of reader.readContent());
      return undefined;
    } catch (error) {
      expect(error).toBeInstanceOf(TarFormatError);
      return (error as Error).message;
    } finally {
      reader.close();
    }
  });
  expect(fromMemory).toBe(fromFile);
  return fromFile;
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

/** Every entry of an archive given as bytes, with its content. */
function entriesOf(bytes: Buffer): [TarEntry, string][] {
  const file = join(dir, `edges-${Math.random().toString(36).slice(2)}.tar`);
  writeFileSync(file, bytes);
  const [fromFile, fromMemory] = [file, new Uint8Array(bytes)].map((source) => {
    const reader = new TarReader(source);
    const read: [TarEntry, string][] = [];
    try {
      for (let entry = reader.next(); entry; entry = reader.next()) read.push([entry, Buffer.concat([...reader.readContent(3000)]).toString("latin1")]);
    } finally {
      reader.close();
    }
    return read;
  });
  expect(fromMemory).toEqual(fromFile);
  return fromFile;
}

function archiveOf(entries: TarEntry[]): Buffer {
  const chunks: Uint8Array[] = [];
  const writer = new TarWriter((chunk) => chunks.push(chunk));
  for (const entry of entries) writer.add(entry);
  writer.finish();
  return Buffer.concat(chunks);
}

test("the writer adds a PAX record only for a field that does not fit, and ends with two zero blocks", () => {
  const fits = { ...base, type: "symlink" as const, name: "n".repeat(100), linkname: "l".repeat(100), uid: 0o7777777, gid: 0o7777777 };
  expect(archiveOf([fits]).length).toBe(512 * 3); // one header, then the 1024-byte end
  expect(archiveOf([fits]).subarray(512).every((byte) => byte === 0)).toBe(true);
  for (const wide of [{ name: "n".repeat(101) }, { linkname: "l".repeat(101) }, { uid: 0o7777777 + 1 }, { gid: 0o7777777 + 1 }, { xattrs: { "user.a": "1" } }]) {
    const bytes = archiveOf([{ ...fits, ...wide }]);
    expect(bytes.length).toBe(512 * 5); // PAX header, its records, the header, the end
    expect(bytes.toString("latin1", 156, 157)).toBe("x");
    expect(entriesOf(bytes).map(([entry]) => entry)).toEqual([{ ...fits, ...wide, size: 0, devmajor: 0, devminor: 0, xattrs: wide.xattrs }]);
  }
  // A directory is written with its slash; the PAX header's own name is cut to fit.
  const dirBytes = archiveOf([{ ...base, type: "dir", name: "d".repeat(120) }]);
  expect(dirBytes.toString("latin1", 0, 100)).toBe(`PaxHeaders/${"d".repeat(80)}`.padEnd(100, "\0"));
  expect(dirBytes.toString("latin1", 512, 1024)).toContain(` path=${"d".repeat(120)}/\n`);
  expect(entriesOf(dirBytes)[0][0]).toMatchObject({ type: "dir", name: "d".repeat(120) });
  expect(entriesOf(archiveOf([{ ...base, type: "dir", name: "short" }]))[0][0].name).toBe("short");
  expect(archiveOf([{ ...base, type: "dir", name: "short" }]).toString("latin1", 0, 7)).toBe("short/\0");
  // Only a file's header carries its size; a link's says 0 even when the entry had one.
  expect(archiveOf([{ ...base, type: "hardlink", name: "h", linkname: "f", size: 7 }]).toString("latin1", 124, 136)).toBe("00000000000\0");
});

test("extended attributes go out sorted as SCHILY.xattr records and come back by their names", () => {
  const xattrs = { "user.b": "2", "security.capability": "\x01\x00\xff", "user.a": "1" };
  const bytes = archiveOf([{ ...base, type: "file", name: "f", xattrs }]);
  const records = bytes.toString("latin1", 512, 1024).replace(/\0+$/, "");
  expect(records).toBe(["security.capability=\x01\x00\xff", "user.a=1", "user.b=2"].map((text) => record("SCHILY.xattr." + text.split("=")[0], text.slice(text.indexOf("=") + 1))).join(""));
  expect(entriesOf(bytes)[0][0].xattrs).toEqual(xattrs);
  // Other PAX keys are not attributes; an entry with none has no xattrs field at all.
  const [[other]] = entriesOf(Buffer.concat([paxEntry(record("comment", "hi") + record("SCHILY.xattr.user.x", "y")), rawHeader({ name: "g", flag: "0" }), Buffer.alloc(1024)]));
  expect(other.xattrs).toEqual({ "user.x": "y" });
  expect(entriesOf(Buffer.concat([rawHeader({ name: "g", flag: "0" }), Buffer.alloc(1024)]))[0][0].xattrs).toBeUndefined();
});

test("PAX numbers override the header's, and mtime may carry a fraction; GNU long names and links are cut at their NULs", () => {
  const pax = paxEntry(record("uid", "3000000") + record("gid", "3000001") + record("mtime", "1700000000.75") + record("size", "3") + "\0\0\0");
  const [[entry, content]] = entriesOf(Buffer.concat([pax, rawHeader({ name: "f", flag: "0", size: "00000000077\0" }), padded(Buffer.from("abc")), Buffer.alloc(1024)]));
  expect(entry).toMatchObject({ uid: 3_000_000, gid: 3_000_001, mtime: 1_700_000_000, size: 3 });
  expect(content).toBe("abc");
  expect(readAll(Buffer.concat([paxEntry(record("uid", "1.5")), rawHeader({ name: "f", flag: "0" })]))).toBe('PAX uid="1.5" is not a number (entry at offset 1024)');
  expect(readAll(Buffer.concat([paxEntry(record("mtime", "1.5x")), rawHeader({ name: "f", flag: "0" })]))).toBe('PAX mtime="1.5x" is not a number (entry at offset 1024)');
  expect(readAll(Buffer.concat([paxEntry(record("mtime", "x1.5")), rawHeader({ name: "f", flag: "0" })]))).toBe('PAX mtime="x1.5" is not a number (entry at offset 1024)');
  expect(readAll(Buffer.concat([paxEntry(record("mtime", "1.")), rawHeader({ name: "f", flag: "0" })]))).toBe('PAX mtime="1." is not a number (entry at offset 1024)');
  expect(readAll(Buffer.concat([paxEntry(record("uid", "9".repeat(60))), rawHeader({ name: "f", flag: "0" })]))).toBe("PAX uid is too large (entry at offset 1024)");
  const longName = Buffer.from("name-from-L\0\0\0", "latin1");
  const longLink = Buffer.from("link-from-K\0", "latin1");
  const size = (body: Buffer) => body.length.toString(8).padStart(11, "0") + "\0";
  const [[linked]] = entriesOf(Buffer.concat([rawHeader({ name: "././@LongLink", flag: "L", size: size(longName) }), padded(longName), rawHeader({ name: "././@LongLink", flag: "K", size: size(longLink) }), padded(longLink), rawHeader({ name: "short", flag: "2" }), Buffer.alloc(1024)]));
  expect(linked).toMatchObject({ name: "name-from-L", linkname: "link-from-K", type: "symlink" });
});

test("PAX records are framed by their lengths exactly", () => {
  const file = rawHeader({ name: "f", flag: "0" });
  expect(readAll(Buffer.concat([paxEntry("5 a=\n"), file]))).toBeUndefined(); // the shortest record there is
  expect(readAll(Buffer.concat([paxEntry("4 a=\n"), file]))).toBe("malformed PAX record at offset 512");
  expect(readAll(Buffer.concat([paxEntry("2 \n"), file]))).toBe("malformed PAX record at offset 512");
  expect(readAll(Buffer.concat([paxEntry("6 a=bc"), file]))).toBe("malformed PAX record at offset 512"); // no newline where the length ends
  expect(readAll(Buffer.concat([paxEntry("7 a=bc"), file]))).toBe("malformed PAX record at offset 512"); // runs past the body
  expect(readAll(Buffer.concat([paxEntry("5a=b\n"), file]))).toBe("malformed PAX record at offset 512"); // no space after the length
  expect(readAll(Buffer.concat([paxEntry("x5 a=\n"), file]))).toBe("malformed PAX record at offset 512");
  expect(readAll(Buffer.concat([paxEntry("12345678 a=b\n"), file]))).toBe("malformed PAX record at offset 512"); // 8 digits
  // The offset named is the bad record's own, after good ones.
  expect(readAll(Buffer.concat([paxEntry(record("a", "b") + "9 c=d\n"), file]))).toBe(`malformed PAX record at offset ${512 + record("a", "b").length}`);
});

test("headers: checksum, type, octal padding, base-256, and names that fill their field", () => {
  const end = Buffer.alloc(1024);
  const bad = rawHeader({ name: "f", flag: "0" });
  bad[0] = "g".charCodeAt(0); // changed after the checksum was computed
  expect(readAll(Buffer.concat([rawHeader({ name: "ok", flag: "0" }), bad]))).toBe("bad header checksum at offset 512");
  expect(readAll(rawHeader({ name: "f", flag: "Z" }))).toBe('unsupported tar entry type "Z"');
  // Leading and trailing spaces or NULs around the digits.
  const [[spaced]] = entriesOf(Buffer.concat([rawHeader({ name: "f", flag: "0", mode: "  644 \0\0" }), end]));
  expect(spaced.mode).toBe(0o644);
  expect(readAll(rawHeader({ name: "f", flag: "0", mode: "6 44\0\0\0\0" }))).toBe('mode "6 44" is not an octal number in the tar header at offset 0');
  // GNU base-256: the high bit, then big-endian bytes; past a safe integer is refused.
  const [[wide]] = entriesOf(Buffer.concat([rawHeader({ name: "f", flag: "0", raw: (b) => { b.fill(0, 136, 148); b[136] = 0x80; b[146] = 0x01; b[147] = 0x02; } }), end]));
  expect(wide.mtime).toBe(0x0102);
  expect(readAll(rawHeader({ name: "f", flag: "0", raw: (b) => { b.fill(0xff, 136, 148); b[136] = 0x80 | 0x3f; } }))).toBe("mtime too large in the tar header at offset 0");
  // A name of exactly 100 bytes has no NUL; the link name after it is not read into it.
  const [[full]] = entriesOf(Buffer.concat([rawHeader({ name: "n".repeat(100), flag: "2", raw: (b) => b.write("target", 157, "latin1") }), end]));
  expect(full).toMatchObject({ name: "n".repeat(100), linkname: "target" });
  // The ustar prefix is used only with the ustar magic.
  const prefixed = (magic: string) => rawHeader({ name: "f", flag: "0", raw: (b) => { b.write(magic, 257, "latin1"); b.write("pre", 345, "latin1"); } });
  expect(entriesOf(Buffer.concat([prefixed("ustar\x0000"), end]))[0][0].name).toBe("pre/f");
  expect(entriesOf(Buffer.concat([prefixed("ustar  \0"), end]))[0][0].name).toBe("f");
});

test("directories: type 5 or an old-style name ending in a slash; only files have content, whatever others declare", () => {
  const end = Buffer.alloc(1024);
  const read = entriesOf(Buffer.concat([
    rawHeader({ name: "a//", flag: "5" }),
    rawHeader({ name: "b/", flag: "\0" }),
    rawHeader({ name: "c/", flag: "7" }),
    rawHeader({ name: "d/", flag: "0" }),
    // A hard link whose header declares content: header-only, as Go reads it, so the block after
    // it is the next header (skipping it would hide "hidden" from us but not from BuildKit).
    rawHeader({ name: "h", flag: "1", size: "00000001000\0", raw: (b) => b.write("d", 157, "latin1") }),
    rawHeader({ name: "hidden", flag: "0" }),
    rawHeader({ name: "e", flag: "0", size: "00000000003\0" }),
    padded(Buffer.from("xyz")),
    end,
  ]));
  expect(read.map(([entry, content]) => [entry.name, entry.type, entry.size, content])).toEqual([
    ["a", "dir", 0, ""],
    ["b", "dir", 0, ""],
    ["c", "dir", 0, ""],
    ["d", "file", 0, ""],
    ["h", "hardlink", 512, ""],
    ["hidden", "file", 0, ""],
    ["e", "file", 3, "xyz"],
  ]);
});

test("content comes in chunks of the size asked for", () => {
  const file = join(dir, "chunks.tar");
  writeArchive(file, [[{ ...base, type: "file", name: "f", size: 2_500_000 }, Buffer.alloc(2_500_000, 7)]]);
  const reader = new TarReader(file);
  reader.next();
  expect([...reader.readContent()].map((chunk) => chunk.length)).toEqual([1024 * 1024, 1024 * 1024, 2_500_000 - 2 * 1024 * 1024]);
  expect(reader.next()).toBeUndefined();
  reader.close();
});

test("an archive may end without its zero blocks, but not inside a header or before the content it declared", () => {
  const file = rawHeader({ name: "f", flag: "0", size: "00000000003\0" });
  const content = padded(Buffer.from("abc"));
  expect(entriesOf(Buffer.concat([file, content])).map(([entry, text]) => [entry.name, text])).toEqual([["f", "abc"]]);
  // A second header cut short: once read as a clean end, and the entry silently lost.
  const cut = rawHeader({ name: "g", flag: "0" }).subarray(0, 100);
  expect(() => entriesOf(Buffer.concat([file, content, cut]))).toThrow("the archive ends inside the header at offset 1024");
  expect(() => drain(new TarReader(new Uint8Array(Buffer.concat([file, content, cut]))))).toThrow("the archive ends inside the header at offset 1024");
  expect(() => drain(new TarReader(new Uint8Array(Buffer.concat([file, Buffer.from("ab")]))))).toThrow("unexpected end of archive");
  expect(() => drain(new TarReader(new Uint8Array(Buffer.concat([rawHeader({ name: "big", flag: "0", size: "00000010000\0" }), Buffer.from("x")]))), true)).toThrow("the archive ends at offset 513, inside the content of its last entry");
  // Content that is skipped (not read) but not there: the next header lies past the end.
  const reader = readerOf(Buffer.concat([rawHeader({ name: "big", flag: "0", size: "00000010000\0" }), Buffer.from("x")]));
  try {
    expect(reader.next()?.name).toBe("big");
    expect(() => reader.next()).toThrow("the archive ends at offset 513, inside the content of its last entry");
  } finally {
    reader.close();
  }
});

test("a global PAX header and a GNU long link padded with NULs give the entries after them nothing else", () => {
  // git archive writes a global header with the commit id; it is not the next entry's link.
  const global = Buffer.from(record("comment", "0123abcd"), "latin1");
  const size = (body: Buffer) => body.length.toString(8).padStart(11, "0") + "\0";
  const linkHeader = rawHeader({ name: "l", flag: "2", raw: (b) => b.write("target", 157, "latin1") });
  const [[link]] = entriesOf(Buffer.concat([rawHeader({ name: "pax_global_header", flag: "g", size: size(global) }), padded(global), linkHeader]));
  expect(link).toMatchObject({ name: "l", type: "symlink", linkname: "target" });
  const longLink = Buffer.from("link-from-K\0\0\0\0", "latin1");
  const [[padded4]] = entriesOf(Buffer.concat([rawHeader({ name: "././@LongLink", flag: "K", size: size(longLink) }), padded(longLink), linkHeader]));
  expect(padded4.linkname).toBe("link-from-K");
});

test("a name ending in a slash makes a directory only of a plain-file header; other kinds keep their type", () => {
  const [[hard], [old]] = entriesOf(Buffer.concat([rawHeader({ name: "h/", flag: "1", raw: (b) => b.write("f", 157, "latin1") }), rawHeader({ name: "d/", flag: "\0" })]));
  expect(hard).toMatchObject({ name: "h", type: "hardlink", linkname: "f" });
  expect(old).toMatchObject({ name: "d", type: "dir" });
});

test("a bad number names its header field; octal may carry several trailing spaces", () => {
  const bad = (offset: number) => rawHeader({ name: "f", flag: "0", raw: (b) => b.write("9\0", offset, "latin1") });
  expect(readAll(bad(108))).toBe('uid "9" is not an octal number in the tar header at offset 0');
  expect(readAll(bad(116))).toBe('gid "9" is not an octal number in the tar header at offset 0');
  expect(readAll(bad(329))).toBe('devmajor "9" is not an octal number in the tar header at offset 0');
  expect(readAll(bad(337))).toBe('devminor "9" is not an octal number in the tar header at offset 0');
  const badSum = rawHeader({ name: "f", flag: "0" });
  badSum.write("9", 148, "latin1");
  expect(readAll(badSum)).toStartWith('checksum "9');
  expect(readAll(badSum)).toEndWith('" is not an octal number in the tar header at offset 0');
  const [[spaced]] = entriesOf(Buffer.concat([rawHeader({ name: "f", flag: "0", mode: "00644  \0" }), Buffer.alloc(1024)]));
  expect(spaced.mode).toBe(0o644);
  // A PAX value is quoted in the message, cut to 40 characters.
  expect(readAll(Buffer.concat([paxEntry(record("uid", "x".repeat(100))), rawHeader({ name: "f", flag: "0" })]))).toBe(`PAX uid=${JSON.stringify("x".repeat(40))} is not a number (entry at offset 1024)`);
  // The offset of a keyless record is its own, after good ones.
  expect(readAll(Buffer.concat([paxEntry(record("a", "b") + "6 =yz\n"), rawHeader({ name: "f", flag: "0" })]))).toBe(`PAX record without a key at offset ${512 + record("a", "b").length}`);
});

test("the writer leaves the link field empty without a link, and sends a size over 8 GiB as a PAX record", () => {
  const bytes = archiveOf([{ ...base, type: "file", name: "f" }]);
  expect(bytes.subarray(157, 257).every((byte) => byte === 0)).toBe(true);
  const huge = 2 ** 34 + 5;
  const wide = archiveOf([{ ...base, type: "file", name: "huge", size: huge }]);
  expect(wide.toString("latin1", 512, 1024)).toContain(` size=${huge}\n`);
  expect(wide.toString("latin1", 1024 + 124, 1024 + 136)).toBe("77777777777\0");
  const reader = readerOf(wide);
  try {
    expect(reader.next()).toMatchObject({ name: "huge", size: huge });
  } finally {
    reader.close();
  }
  // At the largest size the header holds, no PAX record.
  expect(archiveOf([{ ...base, type: "file", name: "max", size: 0o77777777777 }]).toString("latin1", 156, 157)).toBe("0");
});

/** A reader over bytes written to a scratch file; the caller closes it. */
function readerOf(bytes: Buffer): TarReader {
  const file = join(dir, `reader-${Math.random().toString(36).slice(2)}.tar`);
  writeFileSync(file, bytes);
  return new TarReader(file);
}

test("a ustar prefix that fills its field, with no NUL anywhere after it, is read whole", () => {
  const prefix = "p".repeat(155);
  const header = rawHeader({ name: "f", flag: "0", raw: (b) => { b.write(prefix, 345, "latin1"); b.fill(0x41, 500, 512); } });
  expect(entriesOf(Buffer.concat([header, Buffer.alloc(1024)]))[0][0].name).toBe(`${prefix}/f`);
});

/** Reads a reader to its end (skipping content when asked), then closes it. */
function drain(reader: TarReader, skipContent = false) {
  try {
    for (let entry = reader.next(); entry; entry = reader.next()) if (!skipContent) for (const _ of reader.readContent());
  } finally {
    reader.close();
  }
}
