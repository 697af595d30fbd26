/**
 * The root-confined file system: lookups resolve as the kernel would with the root as `/`,
 * and no operation ever reaches a host file, also when a link is swapped in between a check
 * and a use. Every test plants host markers outside the root and proves them untouched.
 */
import { afterAll, beforeEach, describe, expect, test } from "bun:test";
import { closeSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mount, umount } from "../snapshot/libc.ts";
import { removeTree, Root } from "./root.ts";

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
