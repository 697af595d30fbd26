/**
 * Racy stat entries made for real: a file system with whole-second timestamps (ext4 with small
 * inodes), loop-mounted by the test, so an edit within the same second as the hash leaves size,
 * mtime and ctime unchanged and only the racy guard can notice it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadContext } from "./context.ts";
import { racyWindowNs, StatCache } from "./stat-cache.ts";

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
    const cached = (await loadContext({ contextDir: dir, statCache: cache })).byPath.get("file.txt")!;
    const truth = (await loadContext({ contextDir: dir })).byPath.get("file.txt")!;
    return { cached: hex(cached.contentDigest), truth: hex(truth.contentDigest) };
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
      const { cached, truth } = await editWithinOneSecond(dir, cache, touchOld);
      expect(cached).toBe(truth);
      cache.close();
    });
  }
});

describe("the stat cache's rules, on stat values made up to isolate each one", () => {
  const HOUR = 3_600_000_000_000n;
  const base = { size: 10n, mtimeNs: 1_700_000_000_123_456_789n, ctimeNs: 1_700_000_000_223_456_789n, ino: 42n, mode: 0o100644n, uid: 1000n, gid: 1000n };
  const stat = (changes: Partial<typeof base> = {}) => ({ ...base, ...changes }) as unknown as import("node:fs").BigIntStats;
  const digest = new Uint8Array([1, 2, 3]);
  const later = base.ctimeNs + HOUR;

  test("a row is used only when size, mtime, ctime, inode, mode, owner and group are all unchanged", () => {
    const cache = StatCache.inMemory();
    cache.record("f", stat(), digest, later);
    expect(cache.lookup("f", stat())).toEqual(digest);
    const changes: Partial<typeof base>[] = [{ size: 11n }, { mtimeNs: base.mtimeNs + 1n }, { ctimeNs: base.ctimeNs + 1n }, { ino: 43n }, { mode: 0o100755n }, { uid: 0n }, { gid: 0n }];
    for (const change of changes) expect({ change, hit: cache.lookup("f", stat(change)) }).toEqual({ change, hit: undefined });
    expect(cache.lookup("other", stat())).toBeUndefined();
  });

  test("racy: a change within the window of the hash (by mtime or by ctime alone) is never trusted", () => {
    const cache = StatCache.inMemory();
    const window = 100_000_000n;
    cache.record("by-mtime", stat({ mtimeNs: later - window + 1n, ctimeNs: later - HOUR }), digest, later);
    cache.record("by-ctime", stat({ mtimeNs: later - HOUR, ctimeNs: later - window + 1n }), digest, later);
    cache.record("at-the-edge", stat({ mtimeNs: later - window, ctimeNs: later - window }), digest, later);
    expect(cache.lookup("by-mtime", stat({ mtimeNs: later - window + 1n, ctimeNs: later - HOUR }))).toBeUndefined();
    expect(cache.lookup("by-ctime", stat({ mtimeNs: later - HOUR, ctimeNs: later - window + 1n }))).toBeUndefined();
    expect(cache.lookup("at-the-edge", stat({ mtimeNs: later - window, ctimeNs: later - window }))).toEqual(digest);
  });

  test("the window is two seconds when both times are whole seconds (a coarse file system), else 100 ms", () => {
    expect(racyWindowNs(5_000_000_000n, 6_000_000_000n)).toBe(2_000_000_000n);
    expect(racyWindowNs(5_000_000_000n, 6_000_000_001n)).toBe(100_000_000n);
    expect(racyWindowNs(5_000_000_001n, 6_000_000_000n)).toBe(100_000_000n);
  });

  test("rows survive a reopen; rows of paths no longer seen are dropped once they outnumber the live ones", () => {
    const file = join(mkdtempSync(join(tmpdir(), "memobuild-statcache-")), "c.db");
    const cache = StatCache.open(file);
    for (let i = 0; i < 1200; i++) cache.record(`gone-${i}`, stat(), digest, later);
    cache.record("kept", stat(), digest, later);
    cache.flush(new Set(["kept"]));
    cache.close();
    const reopened = StatCache.open(file);
    expect(reopened.size).toBe(1);
    expect(reopened.lookup("kept", stat())).toEqual(digest);
    reopened.close();
    const small = StatCache.open(file);
    for (let i = 0; i < 10; i++) small.record(`few-${i}`, stat(), digest, later);
    small.flush(new Set(["kept"])); // 11 rows for 1 live path: under the threshold, nothing dropped
    small.close();
    expect(StatCache.open(file).size).toBe(11);
  });

  test("pruning starts past twice the live paths plus 1,000, and what it drops is gone from memory too", () => {
    const file = join(mkdtempSync(join(tmpdir(), "memobuild-statcache-")), "c.db");
    const cache = StatCache.open(file);
    const live = new Set<string>();
    for (let i = 0; i < 10; i++) live.add(`live-${i}`);
    for (const path of live) cache.record(path, stat(), digest, later);
    // 2 × 10 + 1000 rows in all: at the threshold, nothing is dropped.
    for (let i = 0; i < 1010; i++) cache.record(`gone-${i}`, stat(), digest, later);
    cache.flush(live);
    expect(cache.size).toBe(1020);
    cache.record("gone-one-more", stat(), digest, later);
    cache.flush(live);
    expect(cache.size).toBe(10);
    expect(cache.lookup("gone-0", stat())).toBeUndefined();
    cache.close();
    expect(StatCache.open(file).size).toBe(10);
  });

  test("a new cache file is created, and closing checkpoints it (no write-ahead log left behind)", () => {
    const file = join(mkdtempSync(join(tmpdir(), "memobuild-statcache-")), "new", "c.db");
    const cache = StatCache.open(file);
    cache.record("f", stat(), digest, later);
    cache.flush();
    expect(existsSync(`${file}-wal`)).toBe(true);
    cache.close();
    expect(existsSync(`${file}-wal`)).toBe(false);
    expect(StatCache.open(file).lookup("f", stat())).toEqual(digest);
  });
});
