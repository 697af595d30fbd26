/**
 * The fuzz harness in CI: a fixed seed and a bounded number of inputs per parser (a few seconds
 * each), then every saved regression input. A crash, a hang past the per-input limit or runaway
 * memory fails the test with the input's numbers; the longer run is `bun test/fuzz/run.ts`.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { fuzzTarget, savedInputs } from "./run.ts";
import { TARGETS } from "./targets.ts";

const SEED = 20261121;
/** Inputs per target in CI: about two seconds each on a slow machine. */
const COUNT: Record<string, number> = {
  tar: 40_000,
  "tar-extract": 5_000,
  "archive-front": 3_000,
  "image-json": 60_000,
  dockerfile: 12_000,
  "shell-words": 100_000,
  dockerignore: 2_500,
  "auth-challenge": 80_000,
};

describe("fuzzing the parsers of untrusted bytes", () => {
  test("every target has a CI budget", () => {
    expect(Object.keys(COUNT).sort()).toEqual(TARGETS.map((t) => t.name).sort());
  });

  for (const target of TARGETS) {
    test(`${target.name}: ${COUNT[target.name]} inputs (seed ${SEED}), no crash, hang or runaway memory`, async () => {
      const figures = await fuzzTarget(target.name, SEED, { count: COUNT[target.name] });
      expect(figures.inputs).toBe(COUNT[target.name]);
      // The mutations reach past the first check: inputs are rejected in many different ways.
      expect(figures.outcomes).toBeGreaterThan(target.name === "archive-front" ? 2 : 20);
    }, 120_000);
  }

  for (const saved of savedInputs(join(import.meta.dir, "regressions"))) {
    test(`regression ${saved.target}/${saved.path.split("/").pop()} runs within the time limit`, async () => {
      expect((await fuzzTarget(saved.target, 0, { replay: saved.path, count: 1 })).inputs).toBe(1);
    }, 60_000);
  }
});
