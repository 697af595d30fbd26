import { afterAll, beforeEach, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, linkSync, mkdirSync, mkdtempSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hardLinkGroups, loadContext } from "./context.ts";
import { StatCache } from "./stat-cache.ts";
import { Database } from "bun:sqlite";
import { ContextError } from "./errors.ts";
import { blake3Hex } from "../hash/blake3.ts";
import { directoryDigests, walkOrderDigests } from "./digest.ts";
import { IgnoreMatcher, parseIgnoreFile } from "./dockerignore.ts";
import { rootBuffer } from "./paths.ts";
import { walkContext, type WalkedEntry } from "./walk.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-context-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

let dir: string;
let cacheFile: string;
let counter = 0;
beforeEach(() => {
  dir = join(work, `ctx${++counter}`);
  mkdirSync(dir);
  cacheFile = join(work, `cache${counter}.db`);
});

function write(relative: string, content = relative) {
  const full = join(dir, relative);
  mkdirSync(join(full, ".."), { recursive: true });
  writeFileSync(full, content);
}
const load = (options: { dockerfile?: string; cache?: boolean } = {}) =>
  loadContext({ contextDir: dir, dockerfile: options.dockerfile, statCacheFile: options.cache === false ? undefined : cacheFile });
const names = (ctx: Awaited<ReturnType<typeof load>>) => ctx.entries.map((e) => e.name);

describe(".dockerignore in the walk", () => {
  test("excluded directories are skipped unless an exception may re-include below them", async () => {
    write("src/a.ts");
    write("node_modules/x/index.js");
    write("vendor/keep/k.go");
    write("vendor/drop/d.go");
    write("notes.md");
    write(".dockerignore", "node_modules\nvendor\n!vendor/keep\n*.md\n");
    const ctx = await load();
    expect(names(ctx)).toEqual([".dockerignore", "src", "src/a.ts", "vendor", "vendor/keep", "vendor/keep/k.go"]);
    const excluded = Object.fromEntries(ctx.excluded.map((e) => [e.path, e.decidedBy?.source?.line]));
    expect(excluded).toEqual({ "node_modules": 1, "vendor/drop": 2, "notes.md": 4 });
  });

  test("the walk tells of each included file as it finds it, in the order of its entries (a re-included one too)", () => {
    write("b/2.txt");
    write("a.txt");
    write("vendor/keep/k.go");
    write("vendor/drop/d.go");
    write("b/1.txt");
    const matcher = new IgnoreMatcher(parseIgnoreFile("vendor\n!vendor/keep\n"));
    const told: WalkedEntry[] = [];
    const walked = walkContext(rootBuffer(dir), matcher, (entry) => told.push(entry));
    expect(told.map((e) => e.path)).toEqual(["a.txt", "b/1.txt", "b/2.txt", "vendor/keep/k.go"]);
    expect(told).toEqual(walked.entries.filter((e) => e.type === "file"));
  });

  test("hashed while the walk goes on (past the size where workers start), every file's digest is its content's", async () => {
    const count = 2800; // 2,400 files sent: past PARALLEL_MIN_FILES (2,000) in parallel.ts
    for (let i = 0; i < count; i++) write(`d${i % 7}/f${i}`, `content ${i}`);
    write(".dockerignore", "d6\n!d6/f6\n");
    const ctx = await load({ cache: false });
    const files = ctx.entries.filter((e) => e.type === "file" && e.path !== ".dockerignore");
    expect(files.length).toBe(count - count / 7 + 1);
    for (const file of files) expect(Buffer.from(file.contentDigest!).toString("hex")).toBe(blake3Hex(`content ${file.path.split("/f")[1]}`));
    expect(ctx.stats).toMatchObject({ files: files.length + 1, hashed: files.length + 1, fromCache: 0 });
  });

  test("<Dockerfile>.dockerignore beside the Dockerfile wins over the root .dockerignore", async () => {
    write("a.txt");
    write("b.txt");
    write(".dockerignore", "a.txt\n");
    write("build/app.Dockerfile", "FROM scratch\n");
    write("build/app.Dockerfile.dockerignore", "b.txt\n");
    const ctx = await load({ dockerfile: join(dir, "build/app.Dockerfile") });
    expect(ctx.ignoreFile).toBe(join(dir, "build/app.Dockerfile.dockerignore"));
    expect(names(ctx)).toContain("a.txt");
    expect(names(ctx)).not.toContain("b.txt");
    expect(names(await load({ dockerfile: join(dir, "Dockerfile") }))).not.toContain("a.txt");
  });

  test("an invalid pattern is an error naming the file and line", async () => {
    write(".dockerignore", "ok\n!\n");
    expect(load()).rejects.toThrow(new ContextError(`${join(dir, ".dockerignore")}:2: illegal exclusion pattern: "!"`));
  });
});

describe("content digests", () => {
  beforeEach(() => {
    write("app/main.sh", "echo hi\n");
    write("app/lib/util.sh", "util\n");
    write("README", "readme\n");
  });

  test("touch changes nothing", async () => {
    const before = (await load({ cache: false })).digest();
    utimesSync(join(dir, "app/main.sh"), new Date(2001, 1, 1), new Date(2001, 1, 1));
    expect((await load({ cache: false })).digest()).toBe(before);
  });

  test("editing, renaming, chmod and symlink targets all change it", async () => {
    const digests = new Set([(await load()).digest()]);
    write("app/main.sh", "echo hello\n");
    digests.add((await load()).digest());
    renameSync(join(dir, "README"), join(dir, "README.md"));
    digests.add((await load()).digest());
    chmodSync(join(dir, "app/main.sh"), 0o755);
    digests.add((await load()).digest());
    chmodSync(join(dir, "app/lib"), 0o700);
    digests.add((await load()).digest());
    symlinkSync("main.sh", join(dir, "app/link"));
    digests.add((await load()).digest());
    rmSync(join(dir, "app/link"));
    symlinkSync("lib", join(dir, "app/link"));
    digests.add((await load()).digest());
    expect(digests.size).toBe(7);
  });

  test("the owner files land with is part of the digest", async () => {
    const ctx = await load();
    expect(ctx.digest({ uid: 1000, gid: 1000 })).not.toBe(ctx.digest());
  });

  test("select: files, directories, wildcards, excludes", async () => {
    write("config/a.json", "{}");
    write("config/b.json", "[]");
    write("config/c.yaml", "");
    const ctx = await load();
    const dirSelection = ctx.select(["app"]);
    expect(dirSelection.roots).toEqual([{ source: "app", path: "app", name: "app", type: "dir" }]);
    expect(dirSelection.entries.map((e) => e.name)).toEqual(["app", "app/lib", "app/lib/util.sh", "app/main.sh"]);
    expect(ctx.select(["./app/"]).digest).toBe(dirSelection.digest);

    const glob = ctx.select(["config/*.json", "README"]);
    expect(glob.roots.map((r) => r.path)).toEqual(["config/a.json", "config/b.json", "README"]);
    expect(ctx.select(["config/?.json"]).entries).toHaveLength(2);
    expect(ctx.select(["config/[ab].json"]).entries).toHaveLength(2);

    const excluded = ctx.select(["."], { excludes: ["**/*.json", "app/lib"] });
    expect(excluded.entries.map((e) => e.name)).toEqual(["README", "app", "app/main.sh", "config", "config/c.yaml"]);
    expect(excluded.digest).not.toBe(ctx.select(["."]).digest);

    // A change outside the selection does not change its digest; one inside does.
    write("README", "changed\n");
    const after = await load();
    expect(after.select(["app"]).digest).toBe(dirSelection.digest);
    write("app/main.sh", "changed\n");
    expect((await load()).select(["app"]).digest).not.toBe(dirSelection.digest);
  });

  test("select: sources outside the context or missing are errors", async () => {
    const ctx = await load();
    expect(() => ctx.select(["../etc/passwd"])).toThrow('source "../etc/passwd" is outside the build context');
    expect(() => ctx.select(["app/../../x"])).toThrow("is outside the build context");
    expect(() => ctx.select(["missing.txt"])).toThrow('source "missing.txt" not found in the build context');
    expect(ctx.select(["*.nothing"]).roots).toEqual([]);
  });
});

describe("symlinks", () => {
  test("are hashed as links and never followed by the walk, loops included", async () => {
    write("real/file", "content");
    symlinkSync("b", join(dir, "a"));
    symlinkSync("a", join(dir, "b"));
    symlinkSync("..", join(dir, "real/up"));
    symlinkSync("/etc/passwd", join(dir, "abs"));
    const ctx = await load();
    expect(names(ctx)).toEqual(["a", "abs", "b", "real", "real/file", "real/up"]);
    expect(ctx.byPath.get("abs")).toMatchObject({ type: "symlink", linkTarget: "/etc/passwd" });
    expect(() => ctx.select(["a"])).toThrow('source "a": too many levels of symbolic links');
  });

  test("a context directory named through a symlink is walked (the root's link is followed, no other)", async () => {
    write("real/file", "content");
    symlinkSync("real", join(dir, "alias"));
    const direct = await loadContext({ contextDir: join(dir, "real") });
    const throughLink = await loadContext({ contextDir: join(dir, "alias") });
    expect(throughLink.entries.map((e) => e.path)).toEqual(["file"]);
    expect(throughLink.digest()).toBe(direct.digest());
  });

  test("files hard-linked to each other share an inode key; others have none", async () => {
    write("a", "same");
    write("c", "other");
    linkSync(join(dir, "a"), join(dir, "b"));
    const ctx = await load();
    expect(ctx.byPath.get("a")!.inode).toBeDefined();
    expect(ctx.byPath.get("b")!.inode).toBe(ctx.byPath.get("a")!.inode);
    expect(ctx.byPath.get("c")!.inode).toBeUndefined();
    expect([...hardLinkGroups(ctx.entries)]).toEqual([["b", "a"]]);
  });

  test("a source through a symlink resolves inside the context only", async () => {
    write("real/file", "content");
    symlinkSync("real", join(dir, "alias"));
    symlinkSync("../outside", join(dir, "escape"));
    const ctx = await load();
    expect(ctx.select(["alias/file"]).roots).toEqual([{ source: "alias/file", path: "real/file", name: "file", type: "file" }]);
    expect(() => ctx.select(["escape/x"])).toThrow('leads outside the build context through symlink escape');
  });

  test("a symlink to a path missing in the context says so, and where an absolute target is read", async () => {
    write("real/file", "content");
    symlinkSync("/etc/passwd", join(dir, "abs"));
    symlinkSync("real/gone", join(dir, "dangling"));
    symlinkSync("real", join(dir, "alias"));
    const ctx = await load();
    expect(() => ctx.select(["abs"])).toThrow(
      'source "abs": symlink abs points to "/etc/passwd", which is not in the build context, and an absolute target is read inside the context, as BuildKit does',
    );
    expect(() => ctx.select(["dangling"])).toThrow('source "dangling": symlink dangling points to "real/gone", which is not in the build context');
    // Past the link's own target, a missing name is the source's fault, not the link's.
    expect(() => ctx.select(["alias/missing"])).toThrow('source "alias/missing" not found in the build context');
  });
});

describe("special files and names", () => {
  test("FIFOs are skipped with a warning", async () => {
    write("file");
    expect(Bun.spawnSync(["mkfifo", join(dir, "pipe")]).exitCode).toBe(0);
    const ctx = await load();
    expect(names(ctx)).toEqual(["file"]);
    expect(ctx.warnings).toEqual(["skipping named pipe pipe: only files, directories and symlinks are sent"]);
    expect(() => ctx.select(["pipe"])).toThrow('source "pipe": pipe is a named pipe; only files, directories and symlinks can be copied');
  });

  test("names with spaces, newlines and bytes that are not UTF-8", async () => {
    const root = Buffer.from(dir);
    const odd = [Buffer.from("with space.txt"), Buffer.from("new\nline"), Buffer.from([0x62, 0x61, 0x64, 0xff, 0xfe])];
    for (const name of odd) writeFileSync(Buffer.concat([root, Buffer.from("/"), name]), name);
    const ctx = await load();
    expect(ctx.entries.map((e) => Buffer.from(e.path, "latin1").toString("hex")).sort()).toEqual(odd.map((n) => n.toString("hex")).sort());
    expect(ctx.entries.every((e) => e.contentDigest?.length === 32)).toBe(true);
    expect(ctx.select(["with space.txt"]).entries).toHaveLength(1);
    expect(ctx.select(["new\nline"]).entries).toHaveLength(1);
    expect(ctx.select(["bad*"]).entries).toHaveLength(1);
    // The raw bytes are what is hashed: renaming the invalid name changes the digest.
    const before = ctx.digest();
    renameSync(Buffer.concat([root, Buffer.from("/"), odd[2]]), Buffer.concat([root, Buffer.from([0x2f, 0x62, 0x61, 0x64, 0xff, 0xfd])]));
    expect((await load()).digest()).not.toBe(before);
  });
});

describe("stat cache", () => {
  test("an unchanged file is not read again; an edited one is", async () => {
    for (let i = 0; i < 20; i++) write(`f${i}`, `content ${i}`);
    Bun.sleepSync(150); // past the racy window, so the first load stores trusted rows
    const cold = await load();
    expect(cold.stats).toMatchObject({ files: 20, hashed: 20, fromCache: 0 });
    const warm = await load();
    expect(warm.stats).toMatchObject({ files: 20, hashed: 0, fromCache: 20 });
    expect(warm.digest()).toBe(cold.digest());
    write("f3", "content 3 edited");
    const edited = await load();
    expect(edited.stats).toMatchObject({ hashed: 1, fromCache: 19 });
    expect(edited.digest()).not.toBe(cold.digest());
  });

  test("a file rewritten with the same size and its mtime set back is read again (its ctime moved)", async () => {
    write("f", "AAAA");
    write("g", "same");
    utimesSync(join(dir, "f"), new Date("2020-01-01T00:00:00Z"), new Date("2020-01-01T00:00:00Z"));
    Bun.sleepSync(150); // past the racy window: the cache trusts what it stores now
    const first = await load();
    expect(first.stats).toMatchObject({ hashed: 2 });
    expect((await load()).stats).toMatchObject({ hashed: 0, fromCache: 2 });
    write("f", "BBBB");
    utimesSync(join(dir, "f"), new Date("2020-01-01T00:00:00Z"), new Date("2020-01-01T00:00:00Z"));
    const after = await load();
    expect(after.stats).toMatchObject({ hashed: 1, fromCache: 1 });
    expect(Buffer.from(after.byPath.get("f")!.contentDigest!).toString("hex")).toBe(blake3Hex(Buffer.from("BBBB")));
  });

  test("a file replaced by another of the same size and times (a new inode) is read again", async () => {
    write("f", "AAAA");
    Bun.sleepSync(150);
    await load();
    const stat = statSync(join(dir, "f"));
    write("f.new", "BBBB");
    utimesSync(join(dir, "f.new"), stat.atime, stat.mtime);
    renameSync(join(dir, "f.new"), join(dir, "f"));
    const after = await load();
    expect(Buffer.from(after.byPath.get("f")!.contentDigest!).toString("hex")).toBe(blake3Hex(Buffer.from("BBBB")));
  });
});

describe("directory digests in one pass over the walk's order", () => {
  test("equal directoryDigests' for every directory and owner, and decline entries in another order", async () => {
    for (const path of ["a/b/c.txt", "a/b-c", "a/b.d/e", "a/ba", "z", "m/n/o/p/q", "m/n2", "vendor/keep/k", "vendor/drop/d"]) write(path);
    mkdirSync(join(dir, "empty"));
    symlinkSync("a/b", join(dir, "link"));
    writeFileSync(Buffer.concat([Buffer.from(dir + "/a/"), Buffer.from([0xff, 0x41])]), "odd");
    write(".dockerignore", "vendor\n!vendor/keep\n");
    const ctx = await load();
    for (const owner of [{ uid: 0, gid: 0 }, { uid: 1000, gid: 50 }]) {
      const fast = walkOrderDigests(ctx.entries, owner)!;
      const slow = directoryDigests(ctx.entries, owner);
      expect([...fast.keys()].sort()).toEqual([...slow.keys()].sort());
      for (const [path, digest] of slow) expect({ path, digest: fast.get(path)!.toString("hex") }).toEqual({ path, digest: digest.toString("hex") });
    }
    expect(walkOrderDigests([...ctx.entries].reverse())).toBeUndefined();
    const swapped = [...ctx.entries];
    const [first, second] = [swapped.findIndex((e) => e.path === "a/b-c"), swapped.findIndex((e) => e.path === "a/b.d")];
    [swapped[first], swapped[second]] = [swapped[second], swapped[first]];
    expect(walkOrderDigests(swapped)).toBeUndefined();
  });
});

test("a tree of 100,000 entries", async () => {
  // On tmpfs when there is one: creating 100,000 files on this ext4 takes a minute.
  const base = existsSync("/dev/shm") ? mkdtempSync("/dev/shm/memobuild-big-") : dir;
  dir = base;
  const root = join(dir, "big");
  for (let d = 0; d < 100; d++) {
    const sub = join(root, `d${d}`);
    mkdirSync(sub, { recursive: true });
    for (let f = 0; f < 999; f++) writeFileSync(join(sub, `f${f}`), `${d}/${f}`);
  }
  const ctx = await load();
  expect(ctx.entries.length).toBe(1 + 100 + 100 * 999); // big, 100 dirs, 99,900 files = 100,001
  expect(ctx.stats.hashed).toBe(99_900);
  const again = await load();
  expect(again.digest()).toBe(ctx.digest());
  expect(ctx.select(["big/d7"]).entries).toHaveLength(1000);
  rmSync(base, { recursive: true, force: true });
}, 120_000);

describe("directory digests kept in the stat cache", () => {
  const dockerfile = () => join(work, `Dockerfile${counter}`); // its .dockerignore lies outside the context
  /** Counts the stored directory digests a load took (those the cache offered and the directory matched). */
  async function loadCounting(contextDir = dir): Promise<{ digest: string; reused: number }> {
    const offered = StatCache.prototype.storedTree;
    let reused = 0;
    StatCache.prototype.storedTree = function (this: StatCache, dir: string) {
      const tree = offered.call(this, dir);
      if (tree) reused += 0.5; // asked when a directory opens and when it closes
      return tree;
    };
    try {
      const ctx = await loadContext({ contextDir, dockerfile: dockerfile(), statCacheFile: cacheFile });
      return { digest: ctx.digest(), reused: Math.floor(reused) };
    } finally {
      StatCache.prototype.storedTree = offered;
    }
  }
  const truth = async () => (await loadContext({ contextDir: dir, dockerfile: dockerfile() })).digest();

  /** A tree whose files and directory digests are all stored and trusted (past the racy window). */
  async function settled(ignore = "nothing-matches\n") {
    write("top.txt");
    write("a/one.txt", "one!");
    write("a/two.txt");
    write("a/sub/three.txt");
    write("a/sub/deeper/four.txt");
    symlinkSync("one.txt", join(dir, "a/link"));
    writeFileSync(`${dockerfile()}.dockerignore`, ignore);
    await Bun.sleep(150);
    await loadCounting();
    const warm = await loadCounting();
    // a, a/sub, a/sub/deeper and the root: every directory with files.
    expect(warm.reused).toBe(4);
    expect(warm.digest).toBe(await truth());
    return warm.digest;
  }

  const changes: [string, () => void, boolean?][] = [
    ["a file's content (same size, its mtime set back)", () => {
      const { mtime } = statSync(join(dir, "a/one.txt"));
      writeFileSync(join(dir, "a/one.txt"), "ONE!");
      utimesSync(join(dir, "a/one.txt"), mtime, mtime);
    }],
    ["a file added", () => write("a/new.txt")],
    ["a file removed", () => rmSync(join(dir, "a/two.txt"))],
    ["a file renamed", () => renameSync(join(dir, "a/two.txt"), join(dir, "a/zwo.txt"))],
    ["a file's mode", () => chmodSync(join(dir, "a/one.txt"), 0o755)],
    ["a file deep below", () => write("a/sub/deeper/four.txt", "longer than before")],
    ["a symlink's target", () => (rmSync(join(dir, "a/link")), symlinkSync("two.txt", join(dir, "a/link")))],
    ["a symlink added", () => symlinkSync("two.txt", join(dir, "a/link2"))],
    ["a symlink replaced by a file of the same name", () => (rmSync(join(dir, "a/link")), write("a/link", "one.txt"))],
    ["an empty subdirectory added", () => mkdirSync(join(dir, "a/empty"))],
    ["a subdirectory removed", () => rmSync(join(dir, "a/sub"), { recursive: true })],
    ["a subdirectory renamed", () => renameSync(join(dir, "a/sub"), join(dir, "a/sub2"))],
    ["a subdirectory's mode", () => chmodSync(join(dir, "a/sub"), 0o700)],
    [".dockerignore now excluding a file", () => writeFileSync(`${dockerfile()}.dockerignore`, "a/two.txt\n")],
    [".dockerignore now excluding a subdirectory", () => writeFileSync(`${dockerfile()}.dockerignore`, "a/sub\n")],
    [".dockerignore now excluding a symlink", () => writeFileSync(`${dockerfile()}.dockerignore`, "a/link\n")],
    // Adversarial review (ec4c30b): type swaps keeping a name, specials, and hard links.
    ["a file replaced by a directory of the same name", () => (rmSync(join(dir, "a/two.txt")), write("a/two.txt/inner", "a/two.txt"))],
    ["a subdirectory replaced by a symlink of the same name", () => (rmSync(join(dir, "a/sub"), { recursive: true }), symlinkSync("sub", join(dir, "a/sub")))],
    ["a symlink replaced by an empty directory of the same name", () => (rmSync(join(dir, "a/link")), mkdirSync(join(dir, "a/link")))],
    ["a FIFO added (skipped, so the digest stays)", () => Bun.spawnSync(["mkfifo", join(dir, "a/fifo")]), false],
    ["a file's content edited through a hard link elsewhere", () => {
      linkSync(join(dir, "a/two.txt"), join(dir, "elsewhere"));
      const { mtime } = statSync(join(dir, "a/two.txt"));
      writeFileSync(join(dir, "elsewhere"), "a/TWO.txt");
      utimesSync(join(dir, "a/two.txt"), mtime, mtime);
    }],
    ["a deep file edited below a directory with no files of its own", () => (renameSync(join(dir, "a/sub/three.txt"), join(dir, "a/sub/deeper/three.txt")), write("a/sub/deeper/four.txt", "FOUR"))],
    ["a subdirectory renamed to a name that is not UTF-8", () => renameSync(join(dir, "a/sub"), Buffer.concat([Buffer.from(join(dir, "a/")), Buffer.from([0x73, 0xff, 0x0a])]) as unknown as string)],
    ["the setgid bit on a subdirectory", () => chmodSync(join(dir, "a/sub"), 0o2755)],
    // Owners are not part of a whole context's digest (files land as root): still the truth.
    ["a file's owner", () => Bun.spawnSync(["chown", "1234:1234", join(dir, "a/one.txt")]), false],
  ];
  for (const [what, change, changesDigest = true] of changes) {
    test(`${what}: the next load's digest is the truth, never a stored one`, async () => {
      const before = await settled();
      change();
      const after = await loadCounting();
      expect(after.digest).toBe(await truth());
      if (changesDigest) expect(after.digest).not.toBe(before);
    });
  }

  test("another context sharing the cache file, hard-linked file by file (cp -al), differing in its other children: its own truth", async () => {
    await settled();
    const copy = `${dir}-copy`;
    Bun.spawnSync(["cp", "-al", dir, copy]);
    await Bun.sleep(150); // linking moved every file's ctime: let it settle, then store the trees again
    await loadCounting();
    // The copy's files are the same inodes with the same stats, so the stored trees are offered.
    expect((await loadCounting(copy)).reused).toBe(4);
    await loadCounting();
    rmSync(join(copy, "a/link"));
    symlinkSync("two.txt", join(copy, "a/link"));
    chmodSync(join(copy, "a/sub/deeper"), 0o700);
    const shared = await loadCounting(copy);
    const own = await loadContext({ contextDir: copy, dockerfile: dockerfile() });
    rmSync(copy, { recursive: true, force: true });
    expect(shared.digest).toBe(own.digest());
  });

  test("trees stored by a binary with another digest format are never reused", async () => {
    await settled();
    // What a binary whose format differs (only its header, so its `others` read alike) leaves.
    const db = new Database(cacheFile);
    const format = Buffer.from("memobuild-tree-v1\0");
    for (const { path, others } of db.query("SELECT path, others FROM directory_trees").all() as { path: Uint8Array; others: Uint8Array }[]) {
      const theirs = Buffer.from(others).subarray(Buffer.from(others).subarray(0, format.length).equals(format) ? format.length : 0);
      db.query("UPDATE directory_trees SET tree = randomblob(32), others = ? WHERE path = ?").run(theirs, path);
    }
    db.close();
    expect((await loadCounting()).digest).toBe(await truth());
  });

  test(".dockerignore no longer excluding a file: it is in the digest again", async () => {
    const before = await settled("a/two.txt\n");
    writeFileSync(`${dockerfile()}.dockerignore`, "nothing-matches\n");
    const after = await loadCounting();
    expect(after.digest).toBe(await truth());
    expect(after.digest).not.toBe(before);
  });

  test("a COPY of a subdirectory, with and without --chown, gets the same digests as without a cache", async () => {
    await settled();
    write("a/sub/five.txt");
    const cached = await loadContext({ contextDir: dir, dockerfile: dockerfile(), statCacheFile: cacheFile });
    const fresh = await loadContext({ contextDir: dir, dockerfile: dockerfile() });
    for (const options of [{}, { owner: { uid: 7, gid: 7 } }]) expect(cached.select(["a/"], options).digest).toBe(fresh.select(["a/"], options).digest);
  });
});
