import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, existsSync, linkSync, utimesSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TarWriter, type TarEntry } from "../sys/tar.ts";
import { cleanEntryName, extractInto, extractLayer, UnsafeLayerError } from "./extract.ts";
import { Root } from "../rootfs/root.ts";
import { getXattr, mknod, OVERLAY_OPAQUE, S_IFCHR, setXattr } from "../sys/libc.ts";
import { gzipLayer, writeLayerTar } from "./pack.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-snapshot-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let n = 0;
const fresh = () => {
  const dir = join(work, `d${++n}`);
  mkdirSync(dir);
  return dir;
};

function archive(entries: [Partial<TarEntry> & { name: string }, string?][]): string {
  const file = join(work, `t${++n}.tar`);
  const chunks: Uint8Array[] = [];
  const writer = new TarWriter((c) => chunks.push(c));
  for (const [partial, content] of entries) {
    const data = Buffer.from(content ?? "");
    writer.add({ type: "file", mode: 0o644, uid: 0, gid: 0, size: data.length, mtime: 1_600_000_000, ...partial });
    if (data.length) {
      writer.content(data);
      writer.pad(data.length);
    }
  }
  writer.finish();
  writeFileSync(file, Buffer.concat(chunks));
  return file;
}

describe("pack then extract", () => {
  test("keeps modes, owners, setuid, symlinks, hardlinks and overlay whiteouts", async () => {
    const upper = fresh();
    mkdirSync(join(upper, "bin"));
    writeFileSync(join(upper, "bin/tool"), "#!/bin/sh\n");
    chownSync(join(upper, "bin/tool"), 1000, 1000);
    chmodSync(join(upper, "bin/tool"), 0o4755);
    linkSync(join(upper, "bin/tool"), join(upper, "bin/tool-alias"));
    symlinkSync("/usr/bin/env", join(upper, "bin/abs"));
    mknod(join(upper, "bin/deleted"), S_IFCHR, 0, 0); // overlay whiteout
    utimesSync(join(upper, "bin/deleted"), 1_000_000_000, 1_000_000_000); // its time must not matter
    mkdirSync(join(upper, "opaque"));
    setXattr(join(upper, "opaque"), OVERLAY_OPAQUE, Buffer.from("y"));
    writeFileSync(join(upper, "opaque/new"), "new");

    const layer = writeLayerTar(upper, join(work, "l.tar"));
    expect(layer.diffId).toMatch(/^sha256:[0-9a-f]{64}$/);
    const listing = Bun.spawnSync(["tar", "-tvf", join(work, "l.tar")], { stdout: "pipe" }).stdout.toString();
    expect(listing).toContain("bin/.wh.deleted");
    expect(listing).toContain("opaque/.wh..wh..opq");
    expect(listing).toMatch(/hrwsr-xr-x 1000\/1000 +0 .* bin\/tool-alias link to bin\/tool/);

    const lower = fresh();
    extractLayer(join(work, "l.tar"), lower);
    const tool = lstatSync(join(lower, "bin/tool"));
    expect([tool.mode & 0o7777, tool.uid, tool.gid, tool.nlink]).toEqual([0o4755, 1000, 1000, 2]);
    expect(lstatSync(join(lower, "bin/tool-alias")).ino).toBe(tool.ino);
    expect(readlinkSync(join(lower, "bin/abs"))).toBe("/usr/bin/env");
    const whiteout = lstatSync(join(lower, "bin/deleted"));
    expect(whiteout.isCharacterDevice() && whiteout.rdev === 0).toBe(true);
    expect(getXattr(join(lower, "opaque"), OVERLAY_OPAQUE)?.toString()).toBe("y");
    expect(readFileSync(join(lower, "opaque/new"), "utf8")).toBe("new");

    // Packing the extracted snapshot gives the same layer, byte for byte.
    expect(writeLayerTar(lower, join(work, "again.tar")).diffId).toBe(layer.diffId);
  });

  test("files around the 1 MiB the packer gathers its output in come back whole, and the tar is what tar(1) reads", () => {
    const upper = fresh();
    const mib = 1024 * 1024;
    const sizes = [0, 1, 511, 512, 513, mib - 512, mib - 1, mib, mib + 1, 3 * mib + 5, 100];
    sizes.forEach((size, i) => writeFileSync(join(upper, `f${String(i).padStart(2, "0")}`), Buffer.alloc(size, i + 1)));
    const tar = join(work, "sizes.tar");
    const layer = writeLayerTar(upper, tar);
    expect(layer.size).toBe(readFileSync(tar).length);
    expect(layer.diffId).toBe(`sha256:${new Bun.CryptoHasher("sha256").update(readFileSync(tar)).digest("hex")}`);
    const listed = Bun.spawnSync(["tar", "-tvf", tar], { stdout: "pipe" }).stdout.toString().trim().split("\n");
    expect(listed.map((line) => Number(line.split(/ +/)[2]))).toEqual(sizes);
    const lower = fresh();
    extractLayer(tar, lower);
    sizes.forEach((size, i) => expect(readFileSync(join(lower, `f${String(i).padStart(2, "0")}`)).equals(Buffer.alloc(size, i + 1))).toBe(true));
  });

  test("gzip output is deterministic", async () => {
    const dir = fresh();
    writeFileSync(join(dir, "f"), "x".repeat(10_000));
    writeLayerTar(dir, join(work, "a.tar"));
    const a = await gzipLayer(join(work, "a.tar"), join(work, "a.gz"));
    const b = await gzipLayer(join(work, "a.tar"), join(work, "b.gz"));
    expect(a).toEqual(b);
    expect(a.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
  });
});

describe("hostile layers are rejected and write nothing outside", () => {
  const outside = join(work, "outside");
  const cases: [string, [Partial<TarEntry> & { name: string }, string?][], RegExp][] = [
    ["a .. path", [[{ name: "../outside" }, "x"]], /escapes the layer root/],
    ["a .. path in the middle", [[{ name: "a/../../outside" }, "x"]], /escapes the layer root/],
    ["an absolute path with ..", [[{ name: "/../../outside" }, "x"]], /escapes the layer root/],
    ["a hardlink out of the layer", [[{ name: "h", type: "hardlink", linkname: "../../etc/passwd" }]], /escapes the layer root/],
    ["a hardlink to something not in the layer", [[{ name: "h", type: "hardlink", linkname: "nope" }]], /not in the layer/],
    ["a whiteout with ..", [[{ name: "a/.wh..." }]], /names no file/],
    ["a whiteout of the layer root", [[{ name: ".wh." }]], /names no file/],
    ["a whiteout of a directory's own entry", [[{ name: "d/.wh." }]], /names no file/],
  ];
  for (const [name, entries, message] of cases) {
    test(name, () => {
      rmSync(outside, { force: true, recursive: true });
      const dest = join(fresh(), "root");
      mkdirSync(dest);
      expect(() => extractLayer(archive(entries), dest)).toThrow(message);
      expect(existsSync(outside)).toBe(false);
      expect(existsSync(join(work, "etc"))).toBe(false);
    });
  }

  test("the error type says the layer is unsafe", () => {
    expect(() => extractLayer(archive([[{ name: "../x" }]]), fresh())).toThrow(UnsafeLayerError);
  });

  // A symlink in the layer is followed inside the destination, never on the host: the entry
  // lands where the link points when the destination is taken as `/`.
  const hostDir = join(work, "host-dir");
  const contained: [string, [Partial<TarEntry> & { name: string }, string?][], string][] = [
    ["a write through an absolute symlink to a host directory", [[{ name: "escape", type: "symlink", linkname: hostDir }], [{ name: "escape/marker" }, "evil"]], `${hostDir}/marker`],
    ["a write through a relative symlink that climbs out", [[{ name: "up", type: "symlink", linkname: "../../../.." }], [{ name: `up${hostDir}/marker` }, "evil"]], `${hostDir}/marker`],
    ["a chain of relative links", [[{ name: "a", type: "symlink", linkname: "b/../../.." }], [{ name: "b", type: "symlink", linkname: "." }], [{ name: `a${hostDir}/marker` }, "evil"]], `${hostDir}/marker`],
  ];
  for (const [name, entries, landed] of contained) {
    test(name, () => {
      mkdirSync(hostDir, { recursive: true });
      writeFileSync(join(hostDir, "marker"), "host");
      const dest = join(fresh(), "root");
      mkdirSync(dest);
      extractLayer(archive(entries), dest);
      expect(readFileSync(join(hostDir, "marker"), "utf8")).toBe("host");
      expect(readFileSync(join(dest, landed), "utf8")).toBe("evil");
    });
  }

  test("a hard link through a symlink to a host directory never links a host file", () => {
    mkdirSync(hostDir, { recursive: true });
    writeFileSync(join(hostDir, "shadow"), "host secret");
    const dest = join(fresh(), "root");
    mkdirSync(dest);
    const entries: [Partial<TarEntry> & { name: string }, string?][] = [[{ name: "l", type: "symlink", linkname: hostDir }], [{ name: "x", type: "hardlink", linkname: "l/shadow" }]];
    expect(() => extractLayer(archive(entries), dest)).toThrow(/hardlink "x"/);
    expect(existsSync(join(dest, "x"))).toBe(false);
    expect(lstatSync(join(hostDir, "shadow")).nlink).toBe(1);
  });

  test("absolute symlinks are kept, not rewritten", () => {
    const dest = fresh();
    extractLayer(archive([[{ name: "etc/alt", type: "symlink", linkname: "/etc/passwd" }]]), dest);
    expect(readlinkSync(join(dest, "etc/alt"))).toBe("/etc/passwd");
  });
});

describe("layers applied one over another into a plain tree (-o type=local)", () => {
  test("whiteouts delete, opaque directories hide the layers below, a type change replaces", () => {
    const dest = fresh();
    const lower = archive([
      [{ name: "d", type: "dir", mode: 0o755 }],
      [{ name: "d/old" }, "old"],
      [{ name: "gone" }, "gone"],
      [{ name: "keep" }, "keep"],
      [{ name: "was-dir", type: "dir", mode: 0o755 }],
      [{ name: "was-dir/child" }, "child"],
      [{ name: "was-file" }, "file"],
    ]);
    const upper = archive([
      [{ name: "d", type: "dir", mode: 0o700 }],
      [{ name: "d/.wh..wh..opq" }],
      [{ name: "d/new" }, "new"],
      [{ name: ".wh.gone" }],
      [{ name: "was-dir" }, "now a file"],
      [{ name: "was-file", type: "dir", mode: 0o755 }],
      [{ name: "was-file/inside" }, "inside"],
    ]);
    extractLayer(lower, dest, { whiteouts: "apply" });
    extractLayer(upper, dest, { whiteouts: "apply" });
    expect(Bun.spawnSync(["find", ".", "-mindepth", "1"], { cwd: dest }).stdout.toString().split("\n").filter(Boolean).sort()).toEqual(["./d", "./d/new", "./keep", "./was-dir", "./was-file", "./was-file/inside"]);
    expect(readFileSync(join(dest, "was-dir"), "utf8")).toBe("now a file");
    expect(lstatSync(join(dest, "d")).mode & 0o777).toBe(0o700);
  });

  test("a symlink a lower layer planted toward the host is removed or followed inside the tree, never outside", () => {
    const host = join(work, "host-dir");
    mkdirSync(host, { recursive: true });
    writeFileSync(join(host, "marker"), "untouched");
    const dest = fresh();
    extractLayer(archive([[{ name: "l", type: "symlink", linkname: host }], [{ name: "m", type: "symlink", linkname: host }]]), dest, { whiteouts: "apply" });
    // The whiteout removes the link itself; an entry below the other link lands inside the tree.
    extractLayer(archive([[{ name: ".wh.l" }], [{ name: "m/marker" }, "replaced"], [{ name: "m/.wh..wh..opq" }]]), dest, { whiteouts: "apply" });
    expect(readFileSync(join(host, "marker"), "utf8")).toBe("untouched");
    expect(existsSync(join(dest, "l"))).toBe(false);
    expect(readFileSync(join(dest, host, "marker"), "utf8")).toBe("replaced");
  });
});

describe("what an entry becomes", () => {
  test("names are cleaned (./a//b/), the root entry is skipped, and the count is every entry read", () => {
    const dest = fresh();
    const result = extractLayer(archive([[{ name: "./", type: "dir", mode: 0o755 }], [{ name: "./a//b/", type: "dir", mode: 0o750 }], [{ name: "./a/./b//f" }, "f"]]), dest);
    expect(result.entries).toBe(3);
    expect(readFileSync(join(dest, "a/b/f"), "utf8")).toBe("f");
    expect(lstatSync(join(dest, "a/b")).mode & 0o777).toBe(0o750);
  });

  test("ADD's options: below a base directory (slashes trimmed), every entry owned as --chown says", () => {
    const dest = fresh();
    mkdirSync(join(dest, "dst"));
    Root.with(dest, (root) => extractInto(archive([[{ name: "d", type: "dir", mode: 0o755, uid: 7, gid: 7 }], [{ name: "d/f", uid: 7, gid: 7 }, "x"]]), root, { whiteouts: false, base: "//dst/", owner: { uid: 1000, gid: 2000 } }));
    for (const path of ["dst/d", "dst/d/f"]) expect([lstatSync(join(dest, path)).uid, lstatSync(join(dest, path)).gid]).toEqual([1000, 2000]);
    expect(existsSync(join(dest, "d"))).toBe(false);
  });

  test("devices, FIFOs and symlinks keep their type, numbers, owner and time", () => {
    const dest = fresh();
    extractLayer(
      archive([
        [{ name: "null", type: "char", mode: 0o666, devmajor: 1, devminor: 3 }],
        [{ name: "loop", type: "block", mode: 0o660, devmajor: 7, devminor: 1 }],
        [{ name: "pipe", type: "fifo", mode: 0o640, uid: 8, gid: 9, mtime: 1_400_000_000 }],
        [{ name: "link", type: "symlink", linkname: "target", uid: 5, gid: 6, mtime: 1_500_000_000 }],
      ]),
      dest,
    );
    const stat = (name: string) => lstatSync(join(dest, name));
    expect([stat("null").isCharacterDevice(), stat("null").rdev, stat("null").mode & 0o777]).toEqual([true, (1 << 8) | 3, 0o666]);
    expect([stat("loop").isBlockDevice(), stat("loop").rdev]).toEqual([true, (7 << 8) | 1]);
    expect([stat("pipe").isFIFO(), stat("pipe").mode & 0o777, stat("pipe").uid, stat("pipe").gid, stat("pipe").mtimeMs]).toEqual([true, 0o640, 8, 9, 1_400_000_000_000]);
    expect([readlinkSync(join(dest, "link")), stat("link").uid, stat("link").gid, stat("link").mtimeMs]).toEqual(["target", 5, 6, 1_500_000_000_000]);
  });

  test("a directory's time is its own, though its children were written after it", () => {
    const dest = fresh();
    extractLayer(archive([[{ name: "d", type: "dir", mode: 0o755, mtime: 1_000_000_000 }], [{ name: "d/e", type: "dir", mode: 0o755, mtime: 1_100_000_000 }], [{ name: "d/e/f", mtime: 1_200_000_000 }, "f"]]), dest);
    expect(lstatSync(join(dest, "d")).mtimeMs).toBe(1_000_000_000_000);
    expect(lstatSync(join(dest, "d/e")).mtimeMs).toBe(1_100_000_000_000);
  });

  test("a directory replaced by a file, then an entry below that name: refused, naming the file in the way", () => {
    const dest = fresh();
    const entries: [Partial<TarEntry> & { name: string }, string?][] = [[{ name: "d", type: "dir", mode: 0o755 }], [{ name: "d/a" }, "a"], [{ name: "d" }, "now a file"], [{ name: "d/b" }, "b"]];
    expect(() => extractLayer(archive(entries), dest, { whiteouts: "apply" })).toThrow("cannot create directory /d: a file that is not a directory is in the way");
    expect(readFileSync(join(dest, "d"), "utf8")).toBe("now a file");
  });

  test("a hard link with no target is unsafe, named", () => {
    expect(() => extractLayer(archive([[{ name: "h", type: "hardlink", linkname: "./" }]]), fresh())).toThrow('hardlink "h" has no target');
  });

  test("cleanEntryName drops empty and . parts and keeps the rest in order", () => {
    expect(cleanEntryName("./a//b/./c/")).toBe("a/b/c");
    expect(cleanEntryName("//")).toBe("");
  });

  test("a nested base directory keeps its inner slashes; parents a layer does not list are made 0755", () => {
    const dest = fresh();
    mkdirSync(join(dest, "deep/er"), { recursive: true });
    Root.with(dest, (root) => extractInto(archive([[{ name: "implicit/parent/f" }, "x"]]), root, { whiteouts: false, base: "/deep/er/" }));
    expect(readFileSync(join(dest, "deep/er/implicit/parent/f"), "utf8")).toBe("x");
    expect(lstatSync(join(dest, "deep/er/implicit")).mode & 0o7777).toBe(0o755);
  });

  test("an opaque marker at the top of a layer (apply) clears the lower layers' top level but keeps this layer's", () => {
    const dest = fresh();
    extractLayer(archive([[{ name: "lower" }, "l"], [{ name: "dir", type: "dir", mode: 0o755 }], [{ name: "dir/f" }, "f"]]), dest, { whiteouts: "apply" });
    extractLayer(archive([[{ name: "mine" }, "m"], [{ name: ".wh..wh..opq" }]]), dest, { whiteouts: "apply" });
    expect(Bun.spawnSync(["find", ".", "-mindepth", "1"], { cwd: dest }).stdout.toString().split("\n").filter(Boolean)).toEqual(["./mine"]);
  });

  test("a directory an opaque marker or a whiteout removed (apply) is made again for a later entry below it", () => {
    const dest = fresh();
    extractLayer(archive([[{ name: "d", type: "dir", mode: 0o755 }], [{ name: "d/old", type: "dir", mode: 0o755 }], [{ name: "d/old/x" }, "x"], [{ name: "w", type: "dir", mode: 0o755 }], [{ name: "w/x" }, "x"]]), dest, { whiteouts: "apply" });
    extractLayer(
      archive([[{ name: "d/old/y" }, "y"], [{ name: "d/.wh..wh..opq" }], [{ name: "d/old/z" }, "z"], [{ name: "w/q" }, "q"], [{ name: ".wh.w" }], [{ name: "w/again" }, "again"]]),
      dest,
      { whiteouts: "apply" },
    );
    expect(readFileSync(join(dest, "d/old/z"), "utf8")).toBe("z");
    expect(readFileSync(join(dest, "w/again"), "utf8")).toBe("again");
  });

  test("a whiteout named .wh.. would hide its own directory: refused", () => {
    expect(() => extractLayer(archive([[{ name: "d", type: "dir", mode: 0o755 }], [{ name: "d/.wh.." }]]), fresh())).toThrow('layer entry "d/.wh.." is a whiteout that names no file');
  });

  test("a system error while unpacking names the entry's trouble; an unsafe entry's own error passes as it is; the tar is closed either way", () => {
    const descriptors = () => require("node:fs").readdirSync("/proc/self/fd").length;
    const dest = fresh();
    mkdirSync(join(dest, "ro"));
    const { mount, umount } = require("../sys/libc.ts");
    mount("tmpfs", join(dest, "ro"), "tmpfs", 1 /* MS_RDONLY */, "size=1m");
    const before = descriptors();
    try {
      expect(() => Root.with(dest, (root) => extractInto(archive([[{ name: "f" }, "x"]]), root, { base: "ro" }))).toThrow(/^cannot unpack layer entry: .*EROFS/);
    } finally {
      umount(join(dest, "ro"));
    }
    expect(() => extractLayer(archive([[{ name: "../x" }, "x"]]), fresh())).toThrow(/^layer entry "\.\.\/x" escapes the layer root$/);
    expect(descriptors()).toBe(before);
  });
});

