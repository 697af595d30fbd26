import { describe, expect, test } from "bun:test";
import { MAX_OVERLAY_LAYERS, mountOverlay, overlayLowers } from "./overlay.ts";

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
});
