/**
 * Racy stat entries made for real: a file system with whole-second timestamps (ext4 with small
 * inodes), loop-mounted by the test, so an edit within the same second as the hash leaves size,
 * mtime and ctime unchanged and only the racy guard can notice it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadContext } from "./context.ts";
import { isRacy, racyWindowNs, StatCache } from "./stat-cache.ts";
import { statTableOf, type StatFields } from "./scan.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-coarse-"));
const mountPoint = join(work, "fs");
const image = join(work, "fs.img");

function run(command: string[]) {
  const result = Bun.spawnSync(command, { stderr: "pipe" });
  if (result.exitCode !== 0) throw new Error(`${command.join(" ")}: ${result.stderr.toString()}`);
}

beforeAll(() => {
  run(["truncate", "-s", "16M", image]);
  run(["mkfs.ext4", "-q", "-I", "128", image]); // 128-byte inodes keep whole seconds only
  mkdirSync(mountPoint);
  run(["mount", "-o", "loop", image, mountPoint]);
});
afterAll(() => {
  Bun.spawnSync(["umount", mountPoint]);
  rmSync(work, { recursive: true, force: true });
});

const OLD = new Date("2020-01-01T00:00:00Z");
const hex = (bytes?: Uint8Array) => Buffer.from(bytes ?? []).toString("hex");

/**
 * Writes `first`, hashes the context with `cache`, then writes `second` (same size) within the
 * same second, with `touchOld` setting the mtime back each time (as a checkout or `cp -p`
 * does, leaving only the ctime recent). Returns the digests seen with the cache and without.
 */
async function editWithinOneSecond(dir: string, cache: StatCache, touchOld: boolean) {
  const file = join(dir, "file.txt");
  for (let attempt = 0; attempt < 20; attempt++) {
    writeFileSync(file, "AAAA");
    if (touchOld) utimesSync(file, OLD, OLD);
    const before = statSync(file, { bigint: true });
    await loadContext({ contextDir: dir, statCache: cache });
    writeFileSync(file, "BBBB");
    if (touchOld) utimesSync(file, OLD, OLD);
    const after = statSync(file, { bigint: true });
    // A second boundary passed in between: the stat changed anyway, so try again.
    if (after.ctimeNs !== before.ctimeNs || after.mtimeNs !== before.mtimeNs) continue;
    const cached = await loadContext({ contextDir: dir, statCache: cache });
    const truth = await loadContext({ contextDir: dir });
    const digestOf = (ctx: typeof truth) => hex(ctx.byPath.get("file.txt")!.contentDigest);
    // The directory's digest too: the cache keeps it, made from the racy file's first content.
    return { cached: digestOf(cached), truth: digestOf(truth), cachedTree: cached.digest(), truthTree: truth.digest() };
  }
  throw new Error("could not edit the file twice within one second");
}

describe("the stat cache on a file system with whole-second timestamps", () => {
  test("the timestamps really are whole seconds here", () => {
    const file = join(mountPoint, "probe");
    writeFileSync(file, "x");
    expect(statSync(file, { bigint: true }).mtimeNs % 1_000_000_000n).toBe(0n);
  });

  const cases: [string, string, boolean][] = [
    ["both-recent", "an edit in the same second as the hash (mtime and ctime unchanged) is never missed", false],
    ["ctime-recent", "nor when only the ctime is recent (the mtime was set back, as a checkout does)", true],
  ];
  for (const [dirName, name, touchOld] of cases) {
    test(name, async () => {
      const dir = join(mountPoint, dirName);
      mkdirSync(dir);
      const cache = StatCache.inMemory();
      const { cached, truth, cachedTree, truthTree } = await editWithinOneSecond(dir, cache, touchOld);
      expect(cached).toBe(truth);
      expect(cachedTree).toBe(truthTree);
      cache.close();
    });
  }
});

describe("the stat cache's rules, on stat values made up to isolate each one", () => {
  const HOUR_MS = 3_600_000;
  const base: StatFields = { size: 10, mtime: [1_700_000_000, 123_456_789], ctime: [1_700_000_000, 223_456_789], ino: 42, dev: [8, 1], mode: 0o100644, uid: 1000, gid: 1000, nlink: 1 };
  const table = (changes: Partial<StatFields> = {}) => statTableOf([{ ...base, ...changes }]);
  const digest = new Uint8Array(32).fill(7);
  const later = 1_700_000_000_000 + HOUR_MS;

  /** One load of file `name` in each of `dirs`: looked up, and when missed, recorded as hashed at `hashedAtMs`. */
  function loadIn(cache: StatCache, dirs: string[], name: string, stats = table(), hashedAtMs = later): (Uint8Array | undefined)[] {
    const hits = dirs.map((dir) => {
      const hit = cache.lookup(dir, name, stats, 0);
      if (!hit) cache.record(dir, name, stats, 0, digest, hashedAtMs);
      return hit;
    });
    cache.flush();
    return hits;
  }
  const load = (cache: StatCache, name: string, stats = table(), hashedAtMs = later, dir = "d") => loadIn(cache, [dir], name, stats, hashedAtMs)[0];

  test("a digest is used only when size, mtime, ctime (seconds and nanoseconds), inode, device, mode, owner, group and links are unchanged", () => {
    const changes: Partial<StatFields>[] = [
      { size: 11 }, { mtime: [base.mtime[0] + 1, base.mtime[1]] }, { mtime: [base.mtime[0], base.mtime[1] + 1] },
      { ctime: [base.ctime[0] + 1, base.ctime[1]] }, { ctime: [base.ctime[0], base.ctime[1] + 1] }, { ino: 43 }, { ino: 42 + 2 ** 32 },
      { dev: [8, 2] }, { dev: [9, 1] }, { mode: 0o100755 }, { uid: 0 }, { gid: 0 }, { nlink: 2 }, { size: 10 + 2 ** 32 },
    ];
    for (const change of changes) {
      const cache = StatCache.inMemory();
      load(cache, "f");
      expect(load(cache, "f")).toEqual(digest);
      expect({ change, hit: load(cache, "f", table(change)) }).toEqual({ change, hit: undefined });
    }
    const cache = StatCache.inMemory();
    load(cache, "f");
    expect(load(cache, "other")).toBeUndefined();
    expect(load(cache, "f", table(), later, "elsewhere")).toBeUndefined();
  });

  test("racy: a change within the window of the hash (by mtime or by ctime alone), or after it began, is never trusted", () => {
    const at = (ms: number, ns = 0): [number, number] => [Math.floor(ms / 1000), (ms % 1000) * 1e6 + ns];
    const cases: [string, Partial<StatFields>, boolean][] = [
      ["by-mtime", { mtime: at(later - 100, 1), ctime: at(later - HOUR_MS) }, false],
      ["by-ctime", { mtime: at(later - HOUR_MS), ctime: at(later - 100, 1) }, false],
      ["ctime-after-the-hash-began", { mtime: at(later - HOUR_MS), ctime: at(later + 5) }, false],
      ["at-the-edge", { mtime: at(later - 100, 0), ctime: at(later - 100, 0) }, true],
    ];
    for (const [name, change, trusted] of cases) {
      const cache = StatCache.inMemory();
      load(cache, name, table(change));
      expect({ name, hit: load(cache, name, table(change), later + HOUR_MS) !== undefined }).toEqual({ name, hit: trusted });
      // Re-hashed once the tick is long past: now the entry is trusted.
      expect({ name, hit: load(cache, name, table(change)) !== undefined }).toEqual({ name, hit: true });
    }
  });

  test("the window is two seconds when both times are whole seconds (a coarse file system), else 100 ms", () => {
    expect(racyWindowNs(0, 0)).toBe(2e9);
    expect(racyWindowNs(0, 1)).toBe(1e8);
    expect(racyWindowNs(1, 0)).toBe(1e8);
    const whole = { mtime: [1_700_000_000, 0], ctime: [1_700_000_000, 0] } as Partial<StatFields>;
    expect(isRacy(table(whole), 0, 1_700_000_001_999)).toBe(true);
    expect(isRacy(table(whole), 0, 1_700_000_002_000)).toBe(false);
  });

  test("files of a directory are found wherever they moved in it; one edited file leaves its neighbours cached", () => {
    const cache = StatCache.inMemory();
    const names = ["a", "b", "c"];
    const tables = names.map((_, i) => table({ ino: 100 + i }));
    names.forEach((name, i) => cache.lookup("d", name, tables[i], 0) ?? cache.record("d", name, tables[i], 0, Buffer.alloc(32, i), later));
    cache.flush();
    // "a" is gone and "0" is new: "b" and "c" are at other positions now.
    expect(cache.lookup("d", "0", table({ ino: 99 }), 0)).toBeUndefined();
    cache.record("d", "0", table({ ino: 99 }), 0, Buffer.alloc(32, 9), later);
    expect(cache.lookup("d", "b", tables[1], 0)).toEqual(Buffer.alloc(32, 1));
    expect(cache.lookup("d", "c", table({ ino: 102, size: 99 }), 0)).toBeUndefined();
    cache.record("d", "c", table({ ino: 102, size: 99 }), 0, Buffer.alloc(32, 3), later);
    cache.flush();
    expect(cache.size).toBe(3);
    expect(cache.lookup("d", "0", table({ ino: 99 }), 0)).toEqual(Buffer.alloc(32, 9));
    expect(cache.lookup("d", "a", tables[0], 0)).toBeUndefined();
    expect(cache.lookup("d", "c", table({ ino: 102, size: 99 }), 0)).toEqual(Buffer.alloc(32, 3));
  });

  test("rows survive a reopen; rows of directories no longer looked into are dropped once they outnumber the live ones", () => {
    const folder = mkdtempSync(join(tmpdir(), "memobuild-statcache-"));
    const file = join(folder, "c.db");
    try {
      const cache = StatCache.open(file);
      const gone = Array.from({ length: 120 }, (_, i) => `gone-${i}`);
      loadIn(cache, gone, "f");
      cache.close();
      const reopened = StatCache.open(file);
      expect(reopened.size).toBe(120);
      // 121 rows for 1 live directory: past 2 × 1 + 100, the others go.
      expect(load(reopened, "f", table(), later, "kept")).toBeUndefined();
      expect(reopened.size).toBe(1);
      reopened.close();
      const again = StatCache.open(file);
      expect(again.size).toBe(1);
      expect(load(again, "f", table(), later, "kept")).toEqual(digest);
      // Under the threshold, rows of directories not looked into stay.
      loadIn(again, Array.from({ length: 50 }, (_, i) => `few-${i}`), "f");
      expect(load(again, "f", table(), later, "kept")).toEqual(digest);
      expect(again.size).toBe(51);
      again.close();
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });

  test("rows of the layout before directory digests (`directory_rows`, which a binary from before may still write) are dropped, never read", () => {
    const folder = mkdtempSync(join(tmpdir(), "memobuild-statcache-"));
    try {
      const file = join(folder, "before.db");
      const before = new Database(file, { create: true });
      before.exec("CREATE TABLE directory_rows (path BLOB PRIMARY KEY, names BLOB NOT NULL, keys BLOB NOT NULL, digests BLOB NOT NULL, racy BLOB NOT NULL)");
      before.query("INSERT INTO directory_rows VALUES (?, ?, ?, ?, ?)").run(Buffer.from("d"), Buffer.from("f"), new Uint8Array(72), digest, new Uint8Array(1));
      before.close();
      const cache = StatCache.open(file);
      expect(cache.size).toBe(0);
      cache.close();
      const after = new Database(file, { readonly: true });
      expect(after.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'directory_rows'").get()).toBeNull();
      after.close();
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });

  test("a new cache file has 16 KiB pages; one of the layout before (4 KiB pages, rows in `directories`) is emptied into them", () => {
    const folder = mkdtempSync(join(tmpdir(), "memobuild-statcache-"));
    const pageSize = (file: string) => {
      const db = new Database(file, { readonly: true });
      try {
        return (db.query("PRAGMA page_size").get() as { page_size: number }).page_size;
      } finally {
        db.close();
      }
    };
    try {
      const fresh = join(folder, "new.db");
      const cache = StatCache.open(fresh);
      load(cache, "f");
      cache.close();
      expect(pageSize(fresh)).toBe(16384);

      const old = join(folder, "old.db");
      const before = new Database(old, { create: true });
      before.exec("PRAGMA journal_mode = WAL");
      before.exec("CREATE TABLE directories (path BLOB PRIMARY KEY, names BLOB NOT NULL, keys BLOB NOT NULL, digests BLOB NOT NULL, racy BLOB NOT NULL) WITHOUT ROWID");
      before.query("INSERT INTO directories VALUES (?, ?, ?, ?, ?)").run(Buffer.from("d"), Buffer.from("f"), new Uint8Array(72), digest, new Uint8Array(1));
      before.close();
      expect(pageSize(old)).toBe(4096);
      const converted = StatCache.open(old);
      expect(converted.size).toBe(0);
      expect(load(converted, "f")).toBeUndefined();
      converted.close();
      expect(pageSize(old)).toBe(16384);
      const reopened = StatCache.open(old);
      expect(load(reopened, "f")).toEqual(digest);
      reopened.close();
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });

  test("an old-layout file that another connection (another process) has open is emptied all the same and keeps its pages", () => {
    const folder = mkdtempSync(join(tmpdir(), "memobuild-statcache-"));
    const old = join(folder, "old.db");
    try {
      const other = new Database(old, { create: true });
      other.exec("PRAGMA journal_mode = WAL");
      other.exec("CREATE TABLE directories (path BLOB PRIMARY KEY, names BLOB NOT NULL, keys BLOB NOT NULL, digests BLOB NOT NULL, racy BLOB NOT NULL) WITHOUT ROWID");
      const cache = StatCache.open(old);
      expect(cache.size).toBe(0);
      expect(load(cache, "f")).toBeUndefined();
      cache.close();
      expect((other.query("PRAGMA page_size").get() as { page_size: number }).page_size).toBe(4096);
      other.close();
      const reopened = StatCache.open(old);
      expect(load(reopened, "f")).toEqual(digest);
      reopened.close();
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });

  test("a new cache file is created, and closing checkpoints it (no write-ahead log left behind)", () => {
    const folder = mkdtempSync(join(tmpdir(), "memobuild-statcache-"));
    const file = join(folder, "new", "c.db");
    try {
      const cache = StatCache.open(file);
      load(cache, "f");
      expect(existsSync(`${file}-wal`)).toBe(true);
      cache.close();
      expect(existsSync(`${file}-wal`)).toBe(false);
      const reopened = StatCache.open(file);
      expect(load(reopened, "f")).toEqual(digest);
      reopened.close();
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });

  /** Looks up (and records when missed) each of `names` in `dir`, in order; the hits. */
  function loadFiles(cache: StatCache, dir: string, names: string[], tables: ReturnType<typeof table>[], hashedAtMs = later): boolean[] {
    return names.map((name, i) => {
      const hit = cache.lookup(dir, name, tables[i], 0);
      if (!hit) cache.record(dir, name, tables[i], 0, Buffer.alloc(32, i + 1), hashedAtMs);
      return hit !== undefined;
    });
  }

  test("a warm load writes no directory; an edited or deleted file rewrites its own directory only", () => {
    const cache = StatCache.inMemory();
    const tables = [table({ ino: 1 }), table({ ino: 2 }), table({ ino: 3 })];
    loadFiles(cache, "a", ["x", "y", "z"], tables);
    loadFiles(cache, "b", ["x"], tables);
    expect(cache.flush()).toBe(2);
    expect(loadFiles(cache, "a", ["x", "y", "z"], tables)).toEqual([true, true, true]);
    loadFiles(cache, "b", ["x"], tables);
    expect(cache.flush()).toBe(0);
    // y deleted from a: a is written again without it.
    expect(loadFiles(cache, "a", ["x", "z"], [tables[0], tables[2]])).toEqual([true, true]);
    loadFiles(cache, "b", ["x"], tables);
    expect(cache.flush()).toBe(1);
    expect(cache.size).toBe(3);
    // x edited in b: only b.
    loadFiles(cache, "a", ["x", "z"], [tables[0], tables[2]]);
    expect(loadFiles(cache, "b", ["x"], [table({ ino: 1, size: 99 })])).toEqual([false]);
    expect(cache.flush()).toBe(1);
  });

  test("only the file that was racy is re-hashed; its trusted neighbours stay cached", () => {
    const cache = StatCache.inMemory();
    const recent = table({ ino: 1, mtime: [Math.floor(later / 1000), (later % 1000) * 1e6] });
    const tables = [recent, table({ ino: 2 }), table({ ino: 3 })];
    expect(loadFiles(cache, "d", ["a", "b", "c"], tables)).toEqual([false, false, false]);
    cache.flush();
    expect(loadFiles(cache, "d", ["a", "b", "c"], tables, later + HOUR_MS)).toEqual([false, true, true]);
    cache.flush();
    expect(loadFiles(cache, "d", ["a", "b", "c"], tables)).toEqual([true, true, true]);
  });

  test("a name not in the directory is never given another file's digest, even with the same stat", () => {
    const cache = StatCache.inMemory();
    const same = [table(), table(), table()];
    loadFiles(cache, "d", ["a", "c", "e"], same);
    cache.flush();
    for (const name of ["0", "b", "d", "f"]) expect({ name, hit: cache.lookup("d", name, table(), 0) }).toEqual({ name, hit: undefined });
    cache.discard();
    // Found by search when earlier files are gone (the position hint misses).
    expect(loadFiles(cache, "d", ["c", "e"], same)).toEqual([true, true]);
    cache.discard();
    expect(loadFiles(cache, "d", ["e"], same)).toEqual([true]);
    const five = StatCache.inMemory();
    loadFiles(five, "d", ["a", "b", "c", "d", "e"], [table(), table(), table(), table(), table()]);
    five.flush();
    // "a" gone: "b" is left of the middle of the stored names.
    expect(loadFiles(five, "d", ["b"], [table()])).toEqual([true]);
  });

  test("a directory's files before and after one of its subdirectories all stay in its row", () => {
    const cache = StatCache.inMemory();
    const tables = [table({ ino: 1 }), table({ ino: 2 }), table({ ino: 3 })];
    const walk = () => [...loadFiles(cache, "d", ["a"], tables), ...loadFiles(cache, "d/sub", ["x"], [tables[1]]), ...loadFiles(cache, "d", ["z"], [tables[2]])];
    expect(walk()).toEqual([false, false, false]);
    cache.flush();
    expect(walk()).toEqual([true, true, true]);
  });

  test("a file looked up but never recorded is not stored; recording one never looked up is an error naming it", () => {
    const folder = mkdtempSync(join(tmpdir(), "memobuild-statcache-"));
    try {
      const cache = StatCache.open(join(folder, "c.db"));
      expect(cache.lookup("d", "unread", table(), 0)).toBeUndefined();
      cache.flush();
      expect(cache.size).toBe(0);
      expect(() => cache.record("d", "other", table(), 0, digest, later)).toThrow('stat cache: "other" in "d" was recorded without a lookup');
      cache.close();
      const reopened = StatCache.open(join(folder, "c.db"));
      expect(reopened.size).toBe(0);
      reopened.close();
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });

  test("several files per directory survive a reopen under their own names", () => {
    const folder = mkdtempSync(join(tmpdir(), "memobuild-statcache-"));
    try {
      const names = ["alpha.txt", "beta", "gamma.dat"];
      const tables = names.map((_, i) => table({ ino: 10 + i }));
      const cache = StatCache.open(join(folder, "c.db"));
      loadFiles(cache, "src/lib", names, tables);
      cache.flush();
      cache.close();
      const reopened = StatCache.open(join(folder, "c.db"));
      expect(reopened.size).toBe(3);
      expect(names.map((name, i) => Buffer.from(reopened.lookup("src/lib", name, tables[i], 0) ?? []).toString("hex"))).toEqual(names.map((_, i) => Buffer.alloc(32, i + 1).toString("hex")));
      reopened.close();
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });

  test("rows of directories not looked into are pruned past exactly twice the live ones plus 100", () => {
    const cache = StatCache.inMemory();
    const live = ["live-1", "live-2"];
    const stale = (count: number) => Array.from({ length: count }, (_, i) => `gone-${i}`);
    loadIn(cache, [...live, ...stale(100)], "f");
    // 102 rows for 2 live directories: 2 × 2 + 100 = 104 is the limit.
    loadIn(cache, live, "f");
    expect(cache.size).toBe(102);
    loadIn(cache, [...live, ...stale(102)], "f");
    loadIn(cache, live, "f");
    expect(cache.size).toBe(104);
    loadIn(cache, [...live, ...stale(103)], "f");
    loadIn(cache, live, "f");
    expect(cache.size).toBe(2);
  });

  test("a load that failed half-way leaves nothing behind for the next one", () => {
    const cache = StatCache.inMemory();
    load(cache, "f");
    expect(cache.lookup("d", "g", table({ ino: 5 }), 0)).toBeUndefined();
    cache.discard();
    expect(load(cache, "f")).toEqual(digest);
    expect(cache.size).toBe(1);
  });
});
