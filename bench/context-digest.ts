/**
 * Context digest benchmark, all in one run over the same generated context (20,000 files,
 * 500 MB): b3sum over every file, then `memobuild context digest` (the compiled binary, a
 * fresh process each time, as a user runs it) cold, warm (stat-cached) and after editing one
 * file. Goals (issue 28): cold within 1.2x of b3sum's wall time, warm at most 50 ms.
 *
 *   bun run bench/context-digest.ts [--files N] [--mb M] [--dir DIR]
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { memobuildBinary } from "../test/support/binary.ts";
import { generateContext } from "./generate-context.ts";

const { values } = parseArgs({
  options: { files: { type: "string", default: "20000" }, mb: { type: "string", default: "500" }, dir: { type: "string" } },
});
const files = Number(values.files);
const totalMB = Number(values.mb);
const work = mkdtempSync(join(values.dir ?? tmpdir(), "memobuild-bench-ctx-"));
const context = join(work, "context");
const cacheDir = join(work, "cache");

function run(command: string[], options: { cwd?: string } = {}): number {
  const start = performance.now();
  const result = Bun.spawnSync(command, { cwd: options.cwd, stdout: "pipe", stderr: "pipe" });
  const ms = performance.now() - start;
  if (result.exitCode !== 0) throw new Error(`${command.join(" ")} failed: ${result.stderr.toString()}`);
  return ms;
}

const median = (samples: number[]) => [...samples].sort((a, b) => a - b)[Math.floor(samples.length / 2)];
const repeat = (times: number, fn: () => number) => median(Array.from({ length: times }, fn));

try {
  if (!Bun.which("b3sum")) throw new Error("b3sum is not installed (apt-get install b3sum)");
  console.log(`generating ${files} files / ${totalMB} MB in ${context} ...`);
  mkdirSync(context);
  const generated = generateContext(context, files, totalMB);
  const mb = generated.bytes / 1024 / 1024;
  // Read everything once so every contender starts from the same page cache.
  run(["sh", "-c", "find . -type f -print0 | xargs -0 cat > /dev/null"], { cwd: context });
  Bun.sleepSync(300); // past the stat cache's racy window for the fresh files

  const b3sum = repeat(3, () => run(["sh", "-c", "find . -type f -print0 | xargs -0 b3sum > /dev/null"], { cwd: context }));
  const b3sumOne = repeat(3, () => run(["sh", "-c", "find . -type f -print0 | xargs -0 b3sum --num-threads 1 > /dev/null"], { cwd: context }));

  const binary = memobuildBinary();
  const digest = (cache: string) => run([binary, "context", "digest", context, "--cache-dir", cache]);
  const cold = repeat(3, () => {
    rmSync(cacheDir, { recursive: true, force: true });
    return digest(cacheDir);
  });
  digest(cacheDir);
  const warm = repeat(5, () => digest(cacheDir));
  const start = repeat(5, () => run([binary, "--version"]));
  const edited = repeat(3, () => {
    writeFileSync(join(context, "pkg3/mod0/file3.dat"), `edited ${performance.now()}`);
    return digest(cacheDir);
  });

  const line = (label: string, ms: number, extra = "") => console.log(`${label.padEnd(44)} ${ms.toFixed(0).padStart(6)} ms${extra}`);
  console.log(`\ncontext: ${files} files, ${mb.toFixed(0)} MB (median of runs)`);
  line("b3sum (all threads)", b3sum, `   ${(mb / (b3sum / 1000)).toFixed(0)} MB/s`);
  line("b3sum --num-threads 1", b3sumOne, `   ${(mb / (b3sumOne / 1000)).toFixed(0)} MB/s`);
  line("memobuild context digest, cold", cold, `   ${(mb / (cold / 1000)).toFixed(0)} MB/s   ${(cold / b3sum).toFixed(2)}x b3sum (goal <= 1.2x)`);
  line("memobuild context digest, warm (stat cache)", warm, `   goal <= 50 ms`);
  line("memobuild context digest, one file edited", edited);
  line("memobuild --version (process start alone)", start);
  if (existsSync("/proc/loadavg")) console.log(`(load average: ${(await Bun.file("/proc/loadavg").text()).trim()})`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
