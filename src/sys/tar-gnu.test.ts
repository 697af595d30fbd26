/**
 * The tar reader and writer against GNU tar, field by field: a tree made on disk with every
 * kind of entry and the edge values of each header field (names and link targets at and past
 * 100 bytes, ustar prefixes, ids past the 8-byte octal field, modes with every special bit,
 * devices, a time past the 12-byte field) goes through GNU tar in each of its formats and
 * through our writer, and both sides must agree with what lstat says.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { chmodSync, chownSync, linkSync, lstatSync, lutimesSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TarReader, TarWriter, type TarEntry } from "./tar.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-tar-gnu-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const MTIME = 1_700_000_000;
const BIG_MTIME = 0o77777777777 + 1; // one past what 11 octal digits hold
const BIG_ID = 0o7777777 + 1; // one past what 7 octal digits hold
const deep = ["d".repeat(60), "e".repeat(60)].join("/"); // a 121-byte directory: fits ustar's prefix

interface Planted { name: string; make: (path: string) => void; wide?: boolean }
/** Entries in the order tar is given them; `wide` ones need more than ustar can say. */
const planted: Planted[] = [
  { name: "dir", make: (p) => mkdirSync(p, { mode: 0o755 }) },
  { name: "dir/sticky", make: (p) => (mkdirSync(p), chmodSync(p, 0o1777)) },
  { name: "dir/file", make: (p) => (writeFileSync(p, "hello"), chmodSync(p, 0o6755), chownSync(p, 1000, 1001)) },
  { name: "dir/hard", make: (p) => linkSync(join(work, "src/dir/file"), p) },
  { name: "dir/link", make: (p) => symlinkSync("/etc/passwd", p) },
  { name: "dir/long-link", make: (p) => symlinkSync("t".repeat(150), p), wide: true },
  { name: "dir/link-100", make: (p) => symlinkSync("u".repeat(100), p) },
  { name: "n".repeat(100), make: (p) => writeFileSync(p, "") },
  { name: "o".repeat(101), make: (p) => writeFileSync(p, "x"), wide: true },
  { name: "d".repeat(60), make: (p) => mkdirSync(p) },
  { name: deep, make: (p) => mkdirSync(p) },
  { name: `${deep}/${"f".repeat(90)}`, make: (p) => writeFileSync(p, "deep") },
  { name: "fifo", make: (p) => Bun.spawnSync(["mkfifo", "-m", "0640", p]) },
  { name: "null", make: (p) => Bun.spawnSync(["mknod", "-m", "0666", p, "c", "1", "3"]) },
  { name: "block", make: (p) => Bun.spawnSync(["mknod", "-m", "0600", p, "b", "259", "70000"]) },
  { name: "big-id", make: (p) => (writeFileSync(p, "id"), chownSync(p, BIG_ID, BIG_ID + 1)), wide: true },
  { name: "big-time", make: (p) => writeFileSync(p, "t"), wide: true },
];

const src = join(work, "src");
beforeAll(() => {
  mkdirSync(src);
  for (const entry of planted) entry.make(join(src, entry.name));
  for (const entry of [...planted].reverse()) lutimesSync(join(src, entry.name), MTIME, entry.name === "big-time" ? BIG_MTIME : MTIME);
});

/** What a tar entry for this path must say, from lstat (the second name of a hard link is a link). */
function expected(name: string): Omit<TarEntry, "xattrs"> {
  const stat = lstatSync(join(src, name));
  const kind = stat.isDirectory() ? "dir" : stat.isSymbolicLink() ? "symlink" : stat.isFIFO() ? "fifo" : stat.isCharacterDevice() ? "char" : stat.isBlockDevice() ? "block" : "file";
  const hard = name === "dir/hard";
  const device = kind === "char" || kind === "block";
  const rdev = stat.rdev;
  return {
    name,
    type: hard ? "hardlink" : kind,
    mode: stat.mode & 0o7777,
    uid: stat.uid,
    gid: stat.gid,
    size: kind === "file" && !hard ? stat.size : 0,
    mtime: Math.floor(stat.mtimeMs / 1000),
    linkname: hard ? "dir/file" : kind === "symlink" ? readlinkText(name) : "",
    devmajor: device ? (rdev >> 8) & 0xfff : 0,
    devminor: device ? (rdev & 0xff) | ((rdev >> 12) & 0xfff00) : 0,
  };
}
const readlinkText = (name: string) => readlinkSync(join(src, name), "latin1");

function readArchive(file: string): [TarEntry, string][] {
  const reader = new TarReader(file);
  const read: [TarEntry, string][] = [];
  try {
    for (let entry = reader.next(); entry; entry = reader.next()) read.push([entry, Buffer.concat([...reader.readContent(3)]).toString("latin1")]);
  } finally {
    reader.close();
  }
  return read;
}

const withoutXattrs = ({ xattrs: _, ...entry }: TarEntry) => entry;

for (const format of ["gnu", "oldgnu", "pax", "ustar", "v7"] as const) {
  test(`the reader reads GNU tar's ${format} format field by field`, () => {
    // ustar and v7 cannot hold the wide entries; v7 has no devices nor FIFOs either.
    const names = planted
      .filter((p) => (format === "ustar" || format === "v7" ? !p.wide : true))
      .filter((p) => (format === "v7" ? !["fifo", "null", "block"].includes(p.name) && !p.name.startsWith("d".repeat(60)) && p.name !== "n".repeat(100) && p.name !== "dir/link-100" : true))
      .map((p) => p.name);
    const file = join(work, `${format}.tar`);
    const made = Bun.spawnSync(["tar", `--format=${format}`, "--numeric-owner", "--no-recursion", "-cf", file, "-C", src, ...names], { stderr: "pipe" });
    expect(made.stderr.toString()).toBe("");
    const read = readArchive(file);
    expect(read.map(([entry]) => withoutXattrs(entry))).toEqual(names.map(expected));
    for (const [entry, content] of read) if (entry.type === "file") expect(content).toBe(readFileSync(join(src, entry.name), "latin1"));
  });
}

test("GNU tar extracts what the writer writes exactly as the entries say", () => {
  const entries = planted.map((p) => expected(p.name));
  const chunks: Uint8Array[] = [];
  const writer = new TarWriter((chunk) => chunks.push(chunk));
  for (const entry of entries) {
    writer.add(entry);
    if (entry.type === "file" && entry.size > 0) {
      writer.content(readFileSync(join(src, entry.name)));
      writer.pad(entry.size);
    }
  }
  writer.finish();
  const file = join(work, "ours.tar");
  writeFileSync(file, Buffer.concat(chunks));
  // Our own reader first (the PAX records for the wide fields), then GNU tar, as root keeping owners.
  expect(readArchive(file).map(([entry]) => withoutXattrs(entry))).toEqual(entries);
  const out = join(work, "out");
  mkdirSync(out);
  const extracted = Bun.spawnSync(["tar", "--warning=no-timestamp", "--numeric-owner", "--same-owner", "--same-permissions", "-xf", file, "-C", out], { stderr: "pipe" });
  expect(extracted.stderr.toString()).toBe("");
  for (const entry of entries) {
    const stat = lstatSync(join(out, entry.name));
    const theirs = expected(entry.name);
    const got = { mode: stat.mode & 0o7777, uid: stat.uid, gid: stat.gid, mtime: entry.type === "dir" ? theirs.mtime : Math.floor(stat.mtimeMs / 1000), rdev: stat.rdev };
    expect({ name: entry.name, ...got }).toEqual({ name: entry.name, mode: theirs.mode, uid: theirs.uid, gid: theirs.gid, mtime: theirs.mtime, rdev: lstatSync(join(src, entry.name)).rdev });
  }
  expect(readFileSync(join(out, `${deep}/${"f".repeat(90)}`), "latin1")).toBe("deep");
  expect(readlinkSync(join(out, "dir/long-link"), "latin1")).toBe("t".repeat(150));
});
