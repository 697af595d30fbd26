import { describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MAX_OVERLAY_LAYERS, mountOverlay, overlayLowers, unmount } from "./overlay.ts";

/** The lowerdir option the kernel shows for the mount at `target`. */
const lowerdirOf = (target: string) => {
  const line = readFileSync("/proc/self/mountinfo", "utf8").split("\n").find((l) => l.split(" ")[4] === target);
  return /lowerdir=([^,]*)/.exec(line ?? "")?.[1];
};

/** The mount's super options the kernel shows for `target` (fsync=volatile, say). */
const superOptionsOf = (target: string) => readFileSync("/proc/self/mountinfo", "utf8").split("\n").find((l) => l.split(" ")[4] === target)?.split(" - ")[1]?.split(" ")[2] ?? "";

/** `count` layers under `dir` (named by `name`), layer i holding file i, mounted at dir/merged. */
function mountLayers(dir: string, count: number, name: (i: number) => string): string {
  const layers = Array.from({ length: count }, (_, i) => {
    const layer = join(dir, name(i));
    mkdirSync(layer);
    writeFileSync(join(layer, `f${i}`), `${i}`);
    return layer;
  });
  const target = join(dir, "merged");
  mountOverlay({ layers, upper: join(dir, "upper"), work: join(dir, "work"), target });
  return target;
}

describe("overlay", () => {
  test("a stack deeper than overlayfs allows is refused before mounting, with a reason", () => {
    const layers = Array.from({ length: MAX_OVERLAY_LAYERS + 1 }, (_, i) => `/nonexistent/${i}`);
    expect(() => mountOverlay({ layers, target: "/nonexistent/target" })).toThrow(
      "501 layers are more than overlayfs can stack (500); squash some of the image's layers",
    );
  });

  test("a repeated layer keeps its top-most place; empty lowers fill in for scratch", () => {
    expect(overlayLowers(["c", "b", "c", "a"], false, (n) => `e${n}`)).toEqual(["c", "b", "a"]);
    expect(overlayLowers([], true, (n) => `e${n}`)).toEqual(["e0", "e1"]);
    expect(overlayLowers(["a"], true, (n) => `e${n}`)).toEqual(["a", "e0"]);
  });

  test("a volatile mount (a layer's upper directory) skips the sync at unmount; others keep it", () => {
    const dir = mkdtempSync(join(tmpdir(), "memobuild-overlay-"));
    try {
      const lower = join(dir, "lower");
      mkdirSync(lower);
      for (const volatile of [true, false]) {
        const sub = join(dir, String(volatile));
        const target = join(sub, "merged");
        mountOverlay({ layers: [lower], upper: join(sub, "upper"), work: join(sub, "work"), target, volatile });
        try {
          expect(superOptionsOf(target).split(",").includes("fsync=volatile")).toBe(volatile);
          writeFileSync(join(target, "f"), "x");
        } finally {
          unmount(target);
        }
        expect(readFileSync(join(sub, "upper", "f"), "utf8")).toBe("x");
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("lower directories go to the kernel as they are when they fit; through short names when too long or holding a separator", () => {
    const dir = mkdtempSync(join(tmpdir(), "memobuild-overlay-"));
    const cases: [string, number, (i: number) => string, (lowerdir: string, layers: string[]) => void][] = [
      ["fits", 3, (i) => `layer-${i}`, (lowerdir, layers) => expect(lowerdir).toBe(layers.reverse().join(":"))],
      ["too long", 60, (i) => `${"x".repeat(70)}-${i}`, (lowerdir) => expect(lowerdir).toBe(Array.from({ length: 60 }, (_, i) => i.toString(36)).join(":"))],
      ["a colon", 2, (i) => `a:${i}`, (lowerdir) => expect(lowerdir).toBe("0:1")],
    ];
    try {
      for (const [label, count, name, check] of cases) {
        const sub = join(dir, label.replaceAll(" ", "-"));
        mkdirSync(sub);
        const target = mountLayers(sub, count, name);
        try {
          check(lowerdirOf(target)!, Array.from({ length: count }, (_, i) => join(sub, name(i))));
          expect(readdirSync(target).sort()).toEqual(Array.from({ length: count }, (_, i) => `f${i}`).sort());
          expect(readdirSync(sub).filter((n) => n.endsWith(".lowers"))).toEqual([]);
        } finally {
          unmount(target);
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
