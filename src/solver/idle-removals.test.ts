import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { IdleRemovals } from "./idle-removals.ts";

function withDir(use: (dir: string) => Promise<void> | void) {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), "memobuild-removals-"));
    try {
      await use(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

/** `turns` turns of the event loop (each of IdleRemovals' timers runs in one). */
async function idle(turns: number) {
  for (let i = 0; i < turns; i++) await new Promise((resolve) => setTimeout(resolve, 0));
}

/** A staging directory with a file and a subdirectory in it. */
function staging(dir: string, name: string): string {
  const path = join(dir, name);
  mkdirSync(join(path, "sub"), { recursive: true });
  writeFileSync(join(path, "sub", "f"), "x");
  return path;
}

describe("IdleRemovals", () => {
  test("directories are removed once the event loop is idle, one per turn, not when added", withDir(async (dir) => {
    const removals = new IdleRemovals();
    const a = staging(dir, "a");
    const b = staging(dir, "b");
    removals.add(a);
    removals.add(b);
    expect([existsSync(a), existsSync(b)]).toEqual([true, true]);
    await idle(1);
    expect([existsSync(a), existsSync(b)]).toEqual([false, true]);
    await idle(1);
    expect(existsSync(b)).toBe(false);
    removals.flush();
  }));

  test("flush removes what is pending at once", withDir((dir) => {
    const removals = new IdleRemovals();
    const a = staging(dir, "a");
    removals.add(a);
    removals.flush();
    expect(existsSync(a)).toBe(false);
  }));

  test("a removal that fails in the timer is thrown by flush, and the others still go", withDir(async (dir) => {
    const removals = new IdleRemovals();
    const bad = `${dir}/..`; // names no directory below a parent: removeTree refuses it
    const good = staging(dir, "good");
    removals.add(bad);
    removals.add(good);
    await idle(2);
    expect(existsSync(good)).toBe(false);
    expect(() => removals.flush()).toThrow();
    expect(() => removals.flush()).not.toThrow();
  }));
});
