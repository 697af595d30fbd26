/**
 * Parse-and-plan time of a 1,000-line Dockerfile (goal: under 30 ms warm), beside the
 * `dockerfile-ast` library parsing the same text (parse only: it does not plan), and the
 * whole `memobuild graph` command through the compiled binary (process start included).
 *
 *   bun run bench/parse-plan.ts
 */
import { DockerfileParser } from "dockerfile-ast";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseDockerfile } from "../src/frontend/parser.ts";
import { plan } from "../src/frontend/plan.ts";
import { buildGraph } from "../src/graph/graph.ts";
import { memobuildBinary } from "../test/support/binary.ts";
import { generateDockerfile } from "./generate-dockerfile.ts";

const text = generateDockerfile(1000);
const lineCount = text.split("\n").length - 1;

function median(samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function time(fn: () => void, runs: number): { first: number; median: number } {
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = Bun.nanoseconds();
    fn();
    samples.push((Bun.nanoseconds() - start) / 1e6);
  }
  return { first: samples[0], median: median(samples.slice(1)) };
}

const memobuild = time(() => buildGraph(plan(parseDockerfile(text, "Dockerfile"))), 50);
const parseOnly = time(() => parseDockerfile(text, "Dockerfile"), 50);
const peer = time(() => DockerfileParser.parse(text).getInstructions(), 50);

const dir = mkdtempSync(join(tmpdir(), "memobuild-bench-"));
writeFileSync(join(dir, "Dockerfile"), text);
const binary = memobuildBinary();
const cli = time(() => {
  const result = Bun.spawnSync([binary, "graph", dir, "--format", "json"], { stdout: "ignore", stderr: "pipe" });
  if (result.exitCode !== 0) throw new Error(result.stderr.toString());
}, 11);
rmSync(dir, { recursive: true, force: true });

const ms = (n: number) => `${n.toFixed(2)} ms`;
console.log(`Dockerfile: ${lineCount} lines`);
console.log(`memobuild parse+plan+graph   cold ${ms(memobuild.first)}   warm median ${ms(memobuild.median)}   (goal < 30 ms warm)`);
console.log(`memobuild parse only         cold ${ms(parseOnly.first)}   warm median ${ms(parseOnly.median)}`);
console.log(`dockerfile-ast parse only    cold ${ms(peer.first)}   warm median ${ms(peer.median)}`);
console.log(`ratio parse (memobuild / dockerfile-ast): ${(parseOnly.median / peer.median).toFixed(2)}x`);
console.log(`memobuild graph via binary   median ${ms(cli.median)} (process start included)`);
if (memobuild.median >= 30) {
  console.log("GOAL MISSED: warm parse+plan is not under 30 ms");
  process.exitCode = 1;
}
