/**
 * The root-confined file system: lookups resolve as the kernel would with the root as `/`,
 * and no operation ever reaches a host file, also when a link is swapped in between a check
 * and a use. Every test plants host markers outside the root and proves them untouched.
 */
import { afterAll, beforeEach, describe, expect, test } from "bun:test";
import { closeSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mount, O_PATH, umount } from "../sys/libc.ts";
import { EnsuredDirectories, removeTree, Root } from "./root.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-root-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

let rootDir: string;
let host: string;
let root: Root;

/** A snapshot of every host marker: names and contents. */
function hostState(): string {
  return readdirSync(host, { recursive: true }).map(String).sort().map((n) => {
    const p = join(host, n);
    return lstatSync(p).isFile() ? `${n}=${readFileSync(p, "utf8")}` : n;
  }).join("\n");
}

beforeEach(() => {
  root?.close();
  const dir = mkdtempSync(join(work, "case-"));
  rootDir = join(dir, "root");
  host = join(dir, "host");
  mkdirSync(join(rootDir, "real/sub"), { recursive: true });
  mkdirSync(join(host, "dir"), { recursive: true });
  writeFileSync(join(host, "marker"), "host");
  writeFileSync(join(host, "dir/file"), "host file");
  symlinkSync(host, join(rootDir, "abs")); // absolute: re-rooted
  symlinkSync("../../../../../..", join(rootDir, "up")); // climbs: clamped at the root
  symlinkSync("/real", join(rootDir, "linkdir"));
  symlinkSync("sub", join(rootDir, "real/rel"));
  symlinkSync("/real/file.txt", join(rootDir, "linkfile"));
  writeFileSync(join(rootDir, "real/file.txt"), "inside");
  root = Root.open(rootDir);
});

describe("resolvePath: as the kernel would with the root as /", () => {
  const cases: [string, string, boolean?][] = [
    ["/real/sub", "/real/sub"],
    ["real/../real/./sub/", "/real/sub"],
    ["/../../real", "/real"],
    ["/linkdir/x", "/real/x"],
    ["/linkdir", "/real"],
    ["/linkdir", "/linkdir", false],
    ["/real/rel/y", "/real/sub/y"],
    ["/linkfile", "/real/file.txt"],
    ["/abs/marker", "HOST/marker"],
    ["/up/etc/passwd", "/etc/passwd"],
    ["/missing/../real", "/real"],
    ["/real/file.txt/x", "/real/file.txt/x"],
    ["/real/sub/../rel/y", "/real/sub/y"], // after .., links are looked up in the parent again
  ];
  for (const [path, expected, follow] of cases) {
    test(`${path}${follow === false ? " (final not followed)" : ""}`, () => {
      expect(root.resolvePath(path, follow ?? true).toString()).toBe(expected.replace("HOST", host));
    });
  }

  test("a symlink loop is an error, not a hang", () => {
    symlinkSync("b", join(rootDir, "a"));
    symlinkSync("a", join(rootDir, "b"));
    expect(() => root.resolvePath("/a/x")).toThrow(/too many levels of symbolic links/);
  });
});

describe("every operation stays in the root", () => {
  const attempts: [string, () => void][] = [
    ["writeFile through an absolute link", () => root.writeFile("/abs/marker", { content: "evil" }, { mode: 0o644 })],
    ["writeFile through a climbing link", () => root.writeFile(`/up${host}/marker`, { content: "evil" }, { mode: 0o644 })],
    ["mkdirAll through an absolute link", () => root.mkdirAll("/abs/dir/new")],
    ["mkdir through a link", () => root.mkdir("/abs/new", { mode: 0o755 })],
    ["symlink through a link", () => root.symlink("/x", "/abs/new-link")],
    ["link to a host file through a link", () => root.link("/abs/marker", "/stolen")],
    ["setAttributes through a link", () => root.setAttributes("/abs/marker", { mode: 0o777, owner: { uid: 5, gid: 5 } })],
    ["setAttributes of the link itself", () => root.setAttributes("/abs", { mode: 0o777, owner: { uid: 5, gid: 5 } })],
    ["remove through a link", () => root.remove("/abs/marker")],
    ["removeAll through a link", () => root.removeAll("/abs/dir")],
    ["removeAll of the link", () => root.removeAll("/abs")],
    ["mknod through a link", () => root.mknod("/abs/dev", 0o020000, 0, 0)],
  ];
  for (const [name, attempt] of attempts) {
    test(name, () => {
      const before = hostState();
      try {
        attempt();
      } catch {
        // refusing is fine; reaching the host is not
      }
      expect(hostState()).toBe(before);
    });
  }

  test("a file larger than the read limit is an error that names it, not a memory spike", () => {
    writeFileSync(join(rootDir, "real/big"), Buffer.alloc(2048));
    expect(root.readFile("/real/big", 4096)?.length).toBe(2048);
    expect(() => root.readFile("/real/big", 1024)).toThrow(/\/real\/big in .* is larger than 1024 bytes/);
  });

  test("reads never see a host file", () => {
    expect(root.readFile("/abs/marker")).toBeUndefined();
    expect(root.readFile(`/up${host}/marker`)).toBeUndefined();
    expect(root.stat("/abs/marker")).toBeUndefined();
    expect(() => root.readdir("/abs")).toThrow();
  });

  test("what goes through a link lands where the link points inside the root", () => {
    root.mkdirAll("/abs/dir");
    root.writeFile("/abs/dir/new", { content: "made" }, { mode: 0o640, owner: { uid: 7, gid: 8 }, mtime: 1000 });
    const landed = join(rootDir, host, "dir/new");
    expect(readFileSync(landed, "utf8")).toBe("made");
    expect(lstatSync(landed)).toMatchObject({ uid: 7, gid: 8, mode: 0o100640, mtimeMs: 1_000_000 });
    root.writeFile(root.resolvePath("/linkfile"), { content: "written through" }, { mode: 0o644 });
    expect(readFileSync(join(rootDir, "real/file.txt"), "utf8")).toBe("written through");
  });

  test("a directory swapped for a host link between check and use: the write stays inside", () => {
    root.mkdirAll("/work/out");
    // the check passed; now the tree changes under us
    renameSync(join(rootDir, "work/out"), join(rootDir, "work/was"));
    symlinkSync(host, join(rootDir, "work/out"));
    const before = hostState();
    try {
      root.writeFile("/work/out/marker", { content: "evil" }, { mode: 0o644 });
    } catch {
      // ENOENT inside the root is fine
    }
    expect(hostState()).toBe(before);
  });

  test("writeFile replaces a symlink at the final name instead of following it", () => {
    root.writeFile("/abs", { content: "file now" }, { mode: 0o644 });
    expect(lstatSync(join(rootDir, "abs")).isFile()).toBe(true);
    expect(hostState()).toContain("marker=host");
  });

  test("removeAll never empties a mount left below (a bind of a host directory)", () => {
    mkdirSync(join(rootDir, "staging/bound"), { recursive: true });
    mount(host, join(rootDir, "staging/bound"), null, 4096 /* MS_BIND */, null);
    const before = hostState();
    try {
      expect(() => root.removeAll("/staging")).toThrow(/mount point/);
    } finally {
      umount(join(rootDir, "staging/bound"), true);
    }
    expect(hostState()).toBe(before);
  });

  test("removeTree deletes a store directory without following its links", () => {
    const before = hostState();
    removeTree(rootDir);
    expect(existsSync(rootDir)).toBe(false);
    expect(hostState()).toBe(before);
  });
});

describe("a root that follows no symlinks (a build context)", () => {
  test("refuses every link on the way", () => {
    const context = Root.open(rootDir, { symlinks: "none" });
    try {
      expect(context.readFile("/real/file.txt")?.toString()).toBe("inside");
      expect(context.readFile("/linkfile")).toBeUndefined();
      expect(() => context.openFile("/linkfile", false)).toThrow(/ELOOP/);
      expect(context.readFile("/linkdir/file.txt")).toBeUndefined();
    } finally {
      context.close();
    }
  });
});

describe("names that are not ASCII", () => {
  test("a file below a non-ASCII directory opens by its text name and by its bytes, links followed or not", () => {
    mkdirSync(join(rootDir, "Ωmega/ünï"), { recursive: true });
    writeFileSync(join(rootDir, "Ωmega/ünï/ß"), "deep");
    const byText = "Ωmega/ünï/ß";
    const byBytes = Buffer.from(byText, "utf8");
    for (const path of [byText, byBytes]) {
      for (const follow of [true, false]) {
        const fd = root.openFile(path, follow);
        try {
          expect(readFileSync(fd, "utf8")).toBe("deep");
        } finally {
          closeSync(fd);
        }
      }
    }
    expect(root.lstat(byText)?.isFile()).toBe(true);
  });
});

describe("hard links", () => {
  test("a link between two directories (the second lookup replaces the cached parent)", () => {
    mkdirSync(join(rootDir, "a/deep"), { recursive: true });
    mkdirSync(join(rootDir, "b/other"), { recursive: true });
    writeFileSync(join(rootDir, "a/deep/f"), "one inode");
    root.link("/a/deep/f", "/b/other/g");
    root.link("/a/deep/f", "/a/deep/h");
    expect(lstatSync(join(rootDir, "b/other/g")).ino).toBe(lstatSync(join(rootDir, "a/deep/f")).ino);
    expect(lstatSync(join(rootDir, "a/deep/h")).nlink).toBe(3);
    expect(hostState()).toBe("dir\ndir/file=host file\nmarker=host");
  });
});

describe("resolvePath: components that do not exist, and coming back up", () => {
  const cases: [string, string][] = [
    ["/missing/x/../../real/sub", "/real/sub"], // up out of what does not exist, back onto what does
    ["/missing/../real/rel/z", "/real/sub/z"], // and links are followed again there
    ["/real/sub/../../linkdir/q", "/real/q"],
    ["/linkdir/../real", "/real"], // .. of a followed link is the target's parent
    ["/abs/../real", "HOSTPARENT/real"], // the link is re-rooted: its target's parent, inside the root
    ["/", "/"],
    ["", "/"],
  ];
  for (const [path, expected] of cases) test(JSON.stringify(path), () => expect(root.resolvePath(path).toString()).toBe(expected.replace("HOSTPARENT", join(host, ".."))));

  test("a chain of 40 links resolves; 41 is too many", () => {
    for (let i = 0; i < 41; i++) symlinkSync(`l${i + 1}`, join(rootDir, `l${i}`));
    writeFileSync(join(rootDir, "l41"), "end");
    expect(root.resolvePath("/l1").toString()).toBe("/l41"); // l1 … l40: 40 links
    expect(() => root.resolvePath("/l0")).toThrow(`/l0: too many levels of symbolic links in ${rootDir}`);
  });
});

describe("what each operation does inside the root", () => {
  test("stat reports each type, and a whiteout is a 0/0 character device", () => {
    mkdirSync(join(rootDir, "types"));
    writeFileSync(join(rootDir, "types/f"), "12345");
    mknodAt(join(rootDir, "types/wh"), "c", 0, 0);
    mknodAt(join(rootDir, "types/null"), "c", 1, 3);
    mknodAt(join(rootDir, "types/blk"), "b", 7, 0);
    mknodAt(join(rootDir, "types/fifo"), "p");
    const kinds = (name: string) => {
      const s = root.lstat(`/types/${name}`)!;
      return [s.isFile(), s.isDirectory(), s.isSymbolicLink(), s.isCharacterDevice(), s.isBlockDevice(), s.isFIFO(), s.isSocket(), s.isWhiteout()].map(Number).join("");
    };
    expect(kinds("f")).toBe("10000000");
    expect(kinds("wh")).toBe("00010001");
    expect(kinds("null")).toBe("00010000");
    expect(kinds("blk")).toBe("00001000");
    expect(kinds("fifo")).toBe("00000100");
    expect(root.lstat("/linkdir")!.isSymbolicLink()).toBe(true);
    expect(root.stat("/linkdir")!.isDirectory()).toBe(true);
    const f = root.lstat("/types/f")!;
    expect([f.size, f.nlink, f.uid, f.gid, f.mode & 0o170000]).toEqual([5, 1, 0, 0, 0o100000]);
    expect(root.lstat("/types/null")!.rdevMajor).toBe(1);
    expect(root.lstat("/types/null")!.rdevMinor).toBe(3);
    expect(root.lstat("/nothing")).toBeUndefined();
    expect(root.stat("/nothing/below")).toBeUndefined();
    expect(root.lstat("/")!.isDirectory()).toBe(true);
  });

  test("readFile: a file's bytes up to the limit; nothing for a directory, a missing file or a device", () => {
    writeFileSync(join(rootDir, "exact"), "1234");
    expect(root.readFile("/exact", 4)!.toString()).toBe("1234");
    expect(() => root.readFile("/exact", 3)).toThrow("/exact in " + rootDir + " is larger than");
    expect(root.readFile("/real")).toBeUndefined();
    expect(root.readFile("/nothing")).toBeUndefined();
    expect(root.readFile("/linkfile")!.toString()).toBe("inside");
    writeFileSync(join(rootDir, "big"), Buffer.alloc(70_000, 7));
    expect(root.readFile("/big")!.length).toBe(70_000);
    writeFileSync(join(rootDir, "empty"), "");
    expect(root.readFile("/empty")!.length).toBe(0);
  });

  test("mkdirAll makes what is missing (and says what), mkdir keeps a directory and replaces a file", () => {
    const created = root.mkdirAll("/a/b/c", { mode: 0o750, owner: { uid: 12, gid: 34 } });
    expect(created.map(String)).toEqual(["/a", "/a/b", "/a/b/c"]);
    expect(root.mkdirAll("/a/b/c").map(String)).toEqual([]);
    expect([lstatSync(join(rootDir, "a/b")).mode & 0o777, lstatSync(join(rootDir, "a/b")).uid, lstatSync(join(rootDir, "a/b")).gid]).toEqual([0o750, 12, 34]);
    expect(() => root.mkdirAll("/real/file.txt/x")).toThrow("cannot create directory /real/file.txt: a file that is not a directory is in the way");
    expect(root.mkdir("/a", { mode: 0o700 })).toBe(false);
    writeFileSync(join(rootDir, "was-file"), "x");
    expect(root.mkdir("/was-file", { mode: 0o711 })).toBe(true);
    expect(lstatSync(join(rootDir, "was-file")).isDirectory()).toBe(true);
    expect(lstatSync(join(rootDir, "was-file")).mode & 0o777).toBe(0o711);
  });

  test("link: a second name for a file; never for a directory, a missing file or the root", () => {
    root.link("/real/file.txt", "/real/hard");
    expect(lstatSync(join(rootDir, "real/hard")).ino).toBe(lstatSync(join(rootDir, "real/file.txt")).ino);
    expect(() => root.link("/real", "/dirlink")).toThrow("cannot link to /real");
    expect(() => root.link("/nothing", "/l")).toThrow("cannot link to /nothing: it does not exist");
    expect(() => root.link("/", "/l")).toThrow("cannot link to /");
    expect(() => root.link("/real/..", "/l")).toThrow("cannot link to /real/..");
  });

  test("remove, setAttributes, readlink, mknod and xattrs each act on the entry itself", () => {
    expect(root.remove("/nothing")).toBe(false);
    expect(root.remove("/real/file.txt")).toBe(true);
    expect(existsSync(join(rootDir, "real/file.txt"))).toBe(false);
    expect(root.remove("/linkdir")).toBe(true); // the link, not its target
    expect(existsSync(join(rootDir, "real/sub"))).toBe(true);
    expect(() => root.setAttributes("/nothing", { mode: 0o600 })).toThrow(`/nothing does not exist in ${rootDir}`);
    root.setAttributes("/real/sub", { mode: 0o701, mtime: 1_000_000 });
    expect([lstatSync(join(rootDir, "real/sub")).mode & 0o777, lstatSync(join(rootDir, "real/sub")).mtimeMs]).toEqual([0o701, 1_000_000_000]);
    expect(root.readlink("/abs").toString()).toBe(host);
    root.mknod("/real/dev", 0o020000 | 0o640, 1, 5, { owner: { uid: 3, gid: 4 } });
    const dev = lstatSync(join(rootDir, "real/dev"));
    expect([dev.isCharacterDevice(), dev.mode & 0o777, dev.rdev, dev.uid, dev.gid]).toEqual([true, 0o640, (1 << 8) | 5, 3, 4]);
    root.setXattr("/real/sub", "user.note", Buffer.from("v"));
    expect(root.getXattr("/real/sub", "user.note")?.toString()).toBe("v");
    expect(root.getXattr("/real/sub", "user.none")).toBeUndefined();
    expect(hostState()).toBe("dir\ndir/file=host file\nmarker=host");
  });

  test("removeAll of the root empties it and keeps it; writeFile copies from an open file, empty or not", () => {
    const source = join(work, `source-${Math.random()}`);
    writeFileSync(source, "copied bytes");
    const fd = require("node:fs").openSync(source, "r");
    root.writeFile("/copy", { from: fd, size: 12 }, { mode: 0o640 });
    root.writeFile("/empty-copy", { from: fd, size: 0 }, { mode: 0o600 });
    closeSync(fd);
    expect(readFileSync(join(rootDir, "copy"), "utf8")).toBe("copied bytes");
    expect(readFileSync(join(rootDir, "empty-copy"), "utf8")).toBe("");
    root.writeFile("/chunked", { chunks: [Buffer.from("a"), Buffer.from("b")] }, { mode: 0o644 });
    expect(readFileSync(join(rootDir, "chunked"), "utf8")).toBe("ab");
    root.removeAll("/");
    expect(readdirSync(rootDir)).toEqual([]);
    expect(hostState()).toBe("dir\ndir/file=host file\nmarker=host");
  });
});

/** mknod(1) for the test's special files. */
function mknodAt(path: string, type: "c" | "b" | "p", major?: number, minor?: number) {
  const args = type === "p" ? [path, "p"] : [path, type, String(major), String(minor)];
  const result = Bun.spawnSync(["mknod", ...args]);
  if (result.exitCode !== 0) throw new Error(`mknod ${args.join(" ")}: ${result.stderr}`);
}

describe("the edges each protection stands on", () => {
  test("an absolute link below the root's top re-roots; .. after a missing name comes back onto what exists and follows links again", () => {
    symlinkSync("/real/sub", join(rootDir, "real/abs2"));
    expect(root.resolvePath("/real/abs2/x").toString()).toBe("/real/sub/x");
    expect(root.resolvePath("/missing/../linkdir/x").toString()).toBe("/real/x");
    expect(root.resolvePath("/missing/deeper/../../linkdir").toString()).toBe("/real");
  });

  test("an operation on the root itself or on .. names no entry, and is refused", () => {
    for (const path of ["/", "", "/real/..", "/.."]) {
      expect(() => root.remove(path)).toThrow("does not name");
      expect(() => root.writeFile(path, { content: "x" }, { mode: 0o644 })).toThrow("does not name");
    }
    expect(hostState()).toBe("dir\ndir/file=host file\nmarker=host");
  });

  test("a directory removed and made again: the next write goes to the new one, not a cached old one", () => {
    root.writeFile("/real/sub/a", { content: "a" }, { mode: 0o644 });
    root.removeAll("/real/sub");
    root.mkdir("/real/sub", { mode: 0o755 });
    root.writeFile("/real/sub/b", { content: "b" }, { mode: 0o644 });
    expect(readdirSync(join(rootDir, "real/sub"))).toEqual(["b"]);
    root.writeFile("/real/sub/c", { content: "c" }, { mode: 0o644 });
    root.remove("/real/sub/c");
    root.remove("/real/sub/b");
    root.remove("/real/sub");
    root.mkdir("/real/sub", { mode: 0o755 });
    root.writeFile("/real/sub/d", { content: "d" }, { mode: 0o644 });
    expect(readdirSync(join(rootDir, "real/sub"))).toEqual(["d"]);
  });

  test("a file whose size stat does not tell (procfs) is read whole, up to the limit; copies from it fall back to reading", () => {
    Root.with("/proc/self", (proc) => {
      const status = proc.readFile("/status")!;
      expect(status.toString()).toContain("Name:");
      expect(() => proc.readFile("/status", 10)).toThrow("is larger than");
    });
    const fd = require("node:fs").openSync("/proc/self/status", "r");
    root.writeFile("/status-copy", { from: fd, size: 20 }, { mode: 0o644 });
    closeSync(fd);
    expect(readFileSync(join(rootDir, "status-copy"), "utf8")).toStartWith("Name:");
  });

  test("procfs's magic links (/proc/PID/root, exe, cwd, fd/N) are refused as links never to follow (ELOOP)", () => {
    // Without RESOLVE_NO_MAGICLINKS today's kernel still refuses them, but with EXDEV and only
    // because the lookup is scoped; ELOOP is the answer only that flag gives.
    Root.with("/proc/self", (proc) => {
      for (const path of ["/root/etc/passwd", "/exe", "/cwd", "/fd/0", "/root"]) {
        expect(() => closeSync(proc.open(path, O_PATH))).toThrow(/ELOOP/);
      }
    });
  });

  test("openFile follows a final link only when asked; lstat below a file is nothing, not an error", () => {
    const fd = root.openFile("/linkfile");
    closeSync(fd);
    expect(() => root.openFile("/linkfile", false)).toThrow();
    expect(root.lstat("/real/file.txt/below")).toBeUndefined();
  });

  test("removeTree: a missing path is nothing to do; a file or a tree goes; a link is removed, not followed", () => {
    removeTree(join(rootDir, "not-there"));
    removeTree(join(rootDir, "real/file.txt"));
    expect(existsSync(join(rootDir, "real/file.txt"))).toBe(false);
    removeTree(join(rootDir, "abs"));
    expect(existsSync(join(rootDir, "abs"))).toBe(false);
    removeTree(join(rootDir, "real"));
    expect(existsSync(join(rootDir, "real"))).toBe(false);
    expect(hostState()).toBe("dir\ndir/file=host file\nmarker=host");
  });
});

describe("directories made once (EnsuredDirectories)", () => {
  test("ensure makes a path and remembers it; forget makes it make it again", () => {
    const ensured = new EnsuredDirectories(root, { mode: 0o751 });
    ensured.ensure("made/deep");
    expect(lstatSync(join(rootDir, "made/deep")).mode & 0o777).toBe(0o751);
    ensured.ensure("/");
    ensured.ensure("");
    rmSync(join(rootDir, "made"), { recursive: true });
    ensured.ensure("made/deep"); // remembered: not made again
    expect(existsSync(join(rootDir, "made"))).toBe(false);
    ensured.forget("made");
    ensured.ensure("made/deep");
    expect(existsSync(join(rootDir, "made/deep"))).toBe(true);
    ensured.add("other");
    ensured.ensure("other");
    expect(existsSync(join(rootDir, "other"))).toBe(false);
    ensured.forget("made/deep");
    rmSync(join(rootDir, "made/deep"), { recursive: true });
    ensured.ensure("made/deep");
    expect(existsSync(join(rootDir, "made/deep"))).toBe(true);
    ensured.forget("unknown"); // nothing remembered there: nothing to do
  });
});


/** Descriptors this process has open: an operation that leaks one fails a COPY of many files. */
const openDescriptors = () => readdirSync("/proc/self/fd").length;

/** Runs `action`, expecting it to throw or not; either way it must not change the descriptors open. */
function noLeak(action: () => unknown) {
  const before = openDescriptors();
  try {
    action();
  } catch {
    // failures must not leak either
  }
  expect(openDescriptors()).toBe(before);
}

describe("what the mutants of the resolver showed untested", () => {
  test("no operation leaves a descriptor open, whether it succeeds or fails", () => {
    mkdirSync(join(rootDir, "real/sub/d1/d2"), { recursive: true });
    symlinkSync("/real/sub", join(rootDir, "tosub"));
    symlinkSync("/real", join(rootDir, "real/sub/d1/back")); // absolute, below open directories
    root.close();
    noLeak(() => Root.with(rootDir, () => {}));
    noLeak(() => Root.with(rootDir, () => { throw new Error("inside"); }));
    noLeak(() => {
      const fd = require("node:fs").openSync(join(rootDir, "real/file.txt"), "r");
      try {
        Root.statDescriptor(fd);
      } finally {
        closeSync(fd);
      }
    });
    const operations: ((r: Root) => unknown)[] = [
      (r) => r.stat("/real/file.txt"),
      (r) => r.stat("/nothing/x"),
      (r) => r.lstat("/real/file.txt"),
      (r) => r.resolvePath("/tosub/d1/d2/x"),
      (r) => r.resolvePath("/linkdir/sub/d1/../d1/d2"),
      (r) => r.resolvePath("/real/sub/d1/back/sub/d1"),
      (r) => r.readdir("/real"),
      (r) => r.readdir("/real/file.txt"),
      (r) => r.readlink("/abs"),
      (r) => r.readFile("/real/file.txt"),
      (r) => r.readFile("/real/file.txt", 1),
      (r) => r.readFile("/real"),
      (r) => r.mkdirAll("/m1/m2/m3"),
      (r) => r.mkdirAll("/real/file.txt/below"),
      (r) => r.mkdir("/real/sub/d1/new", { mode: 0o755 }),
      (r) => r.writeFile("/real/sub/d1/f", { content: "x" }, { mode: 0o644 }),
      (r) => r.writeFile("/real/sub/d1/d2", { content: "over a directory" }, { mode: 0o644 }),
      (r) => r.writeFile("/missing-parent/f", { content: "x" }, { mode: 0o644 }),
      (r) => r.symlink("/x", "/real/sub/l"),
      (r) => r.link("/real/file.txt", "/real/sub/hard"),
      (r) => r.link("/real/sub", "/real/sub/hard2"),
      (r) => r.link("/nothing", "/real/sub/hard3"),
      (r) => r.mknod("/real/sub/fifo", 0o010000 | 0o644),
      (r) => r.setAttributes("/real/sub/fifo", { mode: 0o600 }),
      (r) => r.setXattr("/real/sub", "user.a", Buffer.from("b")),
      (r) => r.getXattr("/real/sub", "user.a"),
      (r) => r.getXattr("/abs", "user.a"),
      (r) => r.remove("/real/sub/fifo"),
      (r) => r.removeAll("/m1"),
      (r) => r.removeAll("/real/sub/d1"),
      (r) => closeSync(r.openFile("/linkfile")),
      (r) => r.openFile("/linkfile", false),
      (r) => r.removeAll("/"), // last: it empties the root
    ];
    // Each in a root of its own, which caches a parent first: closing it must close everything.
    for (const operation of operations) {
      noLeak(() =>
        Root.with(rootDir, (r) => {
          r.writeFile("/real/sub/warm", { content: "w" }, { mode: 0o644 });
          operation(r);
        }),
      );
    }
    noLeak(() => removeTree(join(rootDir, "real")));
    noLeak(() => removeTree(join(rootDir, "no-such", "x")));
    root = Root.open(rootDir);
  });

  test("close is idempotent and never closes a descriptor it no longer owns", () => {
    const r = Root.open(rootDir);
    r.writeFile("/real/sub/x", { content: "x" }, { mode: 0o644 }); // caches a parent
    const before = openDescriptors();
    r.close();
    expect(openDescriptors()).toBe(before - 2); // the root and its cached parent
    r.close();
    expect(() => require("node:fs").fstatSync(1)).not.toThrow(); // stdout is still open
    expect(openDescriptors()).toBe(before - 2);
  });

  test("a root opens by a relative path too, and describes an open descriptor", () => {
    const relative = require("node:path").relative(process.cwd(), rootDir);
    Root.with(relative, (r) => expect(r.readFile("/real/file.txt")!.toString()).toBe("inside"));
    const fd = require("node:fs").openSync(join(rootDir, "real/file.txt"), "r");
    try {
      const stat = Root.statDescriptor(fd);
      expect([stat.isFile(), stat.size]).toEqual([true, 6]);
    } finally {
      closeSync(fd);
    }
  });

  test("Stat reports inode, device and times as the kernel does, and a socket and devices that are not whiteouts as such", () => {
    const host = lstatSync(join(rootDir, "real/file.txt"), { bigint: true });
    const stat = root.lstat("/real/file.txt")!;
    expect(BigInt(stat.ino)).toBe(host.ino);
    expect(stat.dev).toBe(Bun.spawnSync(["stat", "-c", "%Hd:%Ld", join(rootDir, "real/file.txt")]).stdout.toString().trim());
    expect(BigInt(stat.mtime[0]) * 1_000_000_000n + BigInt(stat.mtime[1])).toBe(host.mtimeNs);
    expect(BigInt(stat.atime[0]) * 1_000_000_000n + BigInt(stat.atime[1])).toBe(host.atimeNs);
    const socket = join(rootDir, "sock");
    expect(Bun.spawnSync(["python3", "-c", `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(socket)})`]).exitCode).toBe(0);
    expect(root.lstat("/sock")!.isSocket()).toBe(true);
    expect(root.lstat("/real/file.txt")!.isSocket()).toBe(false);
    mknodAt(join(rootDir, "c50"), "c", 5, 0);
    mknodAt(join(rootDir, "c05"), "c", 0, 5);
    expect([root.lstat("/c50")!.isWhiteout(), root.lstat("/c05")!.isWhiteout()]).toEqual([false, false]);
  });

  test("lookups fail loudly for what is not a missing name (a name too long, a symlink loop)", () => {
    const long = "/" + "n".repeat(300);
    expect(() => root.lstat(long)).toThrow(/ENAMETOOLONG/);
    expect(() => root.stat(long)).toThrow(/ENAMETOOLONG/);
    expect(() => root.readFile(long)).toThrow(/ENAMETOOLONG/);
    symlinkSync("loop2", join(rootDir, "loop1"));
    symlinkSync("loop1", join(rootDir, "loop2"));
    expect(() => root.stat("/loop1")).toThrow(/ELOOP/);
    expect(root.readFile("/loop1")).toBeUndefined(); // a file that cannot be opened as one: nothing
  });

  test("resolvePath: what follows a file or a missing name is lexical, even where a same-named link exists beside it", () => {
    symlinkSync("/elsewhere", join(rootDir, "real/s"));
    symlinkSync("/elsewhere", join(rootDir, "top"));
    expect(root.resolvePath("/real/file.txt/s").toString()).toBe("/real/file.txt/s");
    expect(root.resolvePath("/real/missing/s").toString()).toBe("/real/missing/s");
    // Back up out of two missing names: still below a missing one, so /top is not followed.
    expect(root.resolvePath("/missing1/missing2/../top").toString()).toBe("/missing1/top");
    // Not following the final name still follows the ones before it.
    expect(root.resolvePath("/linkdir/rel", false).toString()).toBe("/real/rel");
  });

  test("readFile of a file whose size stat does not tell: exactly the limit is read, one byte more is refused", () => {
    const cmdline = readFileSync("/proc/self/cmdline");
    Root.with("/proc/self", (proc) => {
      expect(proc.readFile("/cmdline", cmdline.length)).toEqual(cmdline);
      expect(() => proc.readFile("/cmdline", cmdline.length - 1)).toThrow("is larger than");
    });
  });

  test("mkdirAll: made with mode 0755 by default; a refused mkdir is that error, not 'a file is in the way'", () => {
    root.mkdirAll("/plain/dir");
    expect(lstatSync(join(rootDir, "plain/dir")).mode & 0o7777).toBe(0o755);
    mkdirSync(join(rootDir, "ro"));
    mount("tmpfs", join(rootDir, "ro"), "tmpfs", 1 /* MS_RDONLY */, "size=1m");
    try {
      expect(() => root.mkdirAll("/ro/x")).toThrow(/EROFS/);
    } finally {
      umount(join(rootDir, "ro"));
    }
  });

  test("writeFile of a string writes its UTF-8 bytes", () => {
    root.writeFile("/utf8", { content: "héllo ✓" }, { mode: 0o644 });
    expect(readFileSync(join(rootDir, "utf8"))).toEqual(Buffer.from("héllo ✓"));
  });

  test("making a symlink or changing attributes at a symlink never changes its target", () => {
    writeFileSync(join(rootDir, "target"), "t", { mode: 0o640 });
    require("node:fs").chmodSync(join(rootDir, "target"), 0o640);
    root.symlink("/target", "/sym", { mtime: 5 });
    root.setAttributes("/sym", { mode: 0o777, mtime: 7 });
    expect(lstatSync(join(rootDir, "target")).mode & 0o777).toBe(0o640);
    expect(lstatSync(join(rootDir, "sym")).mtimeMs).toBe(7000);
    expect(() => root.getXattr("/sym", "user.x")).toThrow("/sym is a symlink");
  });

  test("link and mknod replace a directory in their way, with all below it", () => {
    mkdirSync(join(rootDir, "d1/inner"), { recursive: true });
    mkdirSync(join(rootDir, "d2/inner"), { recursive: true });
    root.link("/real/file.txt", "/d1");
    expect(readFileSync(join(rootDir, "d1"), "utf8")).toBe("inside");
    root.mknod("/d2", 0o010000 | 0o644);
    expect(lstatSync(join(rootDir, "d2")).isFIFO()).toBe(true);
    expect(() => root.link("..", "/l")).toThrow(/^cannot link to \.\.$/);
    expect(() => root.link("", "/l")).toThrow(/^cannot link to \/$/);
    writeFileSync(join(rootDir, "was-file"), "x");
    root.symlink("/real", "/was-file");
    expect(lstatSync(join(rootDir, "was-file")).isSymbolicLink()).toBe(true);
  });

  test("errors for the root itself name it as /", () => {
    expect(() => root.remove("/")).toThrow(`/ does not name an entry below ${rootDir}`);
    expect(() => root.remove("")).toThrow(new RegExp(`^/ does not name an entry below ${rootDir}$`));
    expect(() => root.remove("/real/..")).toThrow(`/real/.. does not name an entry below ${rootDir}`);
  });

  test("xattrs on the root itself", () => {
    root.setXattr("/", "user.top", Buffer.from("1"));
    expect(root.getXattr("/", "user.top")?.toString()).toBe("1");
    expect(root.getXattr("", "user.top")?.toString()).toBe("1");
  });

  test("a top-level directory replaced by a link: a write below it follows the new link, not the old directory's cached descriptor", () => {
    for (const replace of ["remove", "removeAll"] as const) {
      mkdirSync(join(rootDir, "top"));
      root.writeFile("/top/a", { content: "a" }, { mode: 0o644 }); // caches /top as the parent
      if (replace === "remove") {
        root.remove("/top/a");
        root.lstat("/top/a"); // caches /top again: only removing /top itself can say it is stale
        root.remove("/top");
      } else root.removeAll("/top");
      root.symlink("/real", "/top");
      root.writeFile(`/top/b-${replace}`, { content: "b" }, { mode: 0o644 });
      expect(readFileSync(join(rootDir, `real/b-${replace}`), "utf8")).toBe("b");
      root.remove("/top");
    }
  });

  test("removeTree: never the parent itself ('/', '.', '..'); a relative name is below the working directory; a mount below is refused", () => {
    for (const path of ["/", ".", "..", "", "a/.."]) expect(() => removeTree(path)).toThrow("it names no directory below a parent");
    const cwd = process.cwd();
    process.chdir(rootDir);
    try {
      removeTree("real");
    } finally {
      process.chdir(cwd);
    }
    expect(existsSync(join(rootDir, "real"))).toBe(false);
    mkdirSync(join(rootDir, "t/a/m"), { recursive: true });
    mount("tmpfs", join(rootDir, "t/a/m"), "tmpfs", 0, "size=1m");
    try {
      expect(() => removeTree(join(rootDir, "t"))).toThrow(/^t\/a\/m is a mount point: not removing what is mounted there$/);
    } finally {
      umount(join(rootDir, "t/a/m"));
    }
    expect(() => removeTree(join(rootDir, "no-such", "x"))).not.toThrow();
    expect(hostState()).toBe("dir\ndir/file=host file\nmarker=host");
  });
});
