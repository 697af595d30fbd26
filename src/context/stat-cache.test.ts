/**
 * Racy stat entries made for real: a file system with whole-second timestamps (ext4 with small
 * inodes), loop-mounted by the test, so an edit within the same second as the hash leaves size,
 * mtime and ctime unchanged and only the racy guard can notice it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadContext } from "./context.ts";
import { StatCache } from "./stat-cache.ts";

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
