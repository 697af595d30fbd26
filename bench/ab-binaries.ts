/**
 * Two MemoBuild binaries on the same input, interleaved in one run: the 20,000-file / 500 MB
 * COPY of build-vs-buildkit.ts (cold, no-op, one file edited). For checking that a change is no
 * slower than the build before it:
 *
 *   git worktree add /tmp/before HEAD~1 && (cd /tmp/before && ln -s $PWD/node_modules . && bun build --compile bin/memobuild.ts src/hash/hash-worker.ts --outfile /tmp/memobuild-before)
 *   sudo bun run bench/ab-binaries.ts --before /tmp/memobuild-before [--files N] [--mb M] [--runs R]
 */
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { memobuildBinary, REPO_ROOT } from "../test/support/binary.ts";
import { generateContext } from "./generate-context.ts";

const { values } = parseArgs({
  options: { before: { type: "string" }, files: { type: "string", default: "20000" }, mb: { type: "string", default: "500" }, runs: { type: "string", default: "3" } },
});
if (!values.before) throw new Error("--before BINARY is required");
const binaries = { before: values.before, after: memobuildBinary() };
const work = mkdtempSync(join(tmpdir(), "memobuild-ab-"));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function timed(command: string[]): number {
  const start = performance.now();
  const result = Bun.spawnSync(command, { stdout: "pipe", stderr: "pipe" });
  if (result.exitCode !== 0) throw new Error(`${command.join(" ")}:\n${result.stderr.toString().slice(-2000)}`);
  return performance.now() - start;
}

const project = join(work, "large");
mkdirSync(project);
generateContext(join(project, "data"), Number(values.files), Number(values.mb));
writeFileSync(join(project, "Dockerfile"), "FROM memobuild/busybox\nCOPY data/ /data/\nRUN find /data -type f | wc -l > /count\n");

const times: Record<string, Record<"cold" | "noop" | "edit", number[]>> = {};
for (let run = 0; run < Number(values.runs); run++) {
  for (const [name, binary] of Object.entries(binaries)) {
    const cache = join(work, `cache-${name}`);
    rmSync(cache, { recursive: true, force: true });
    timed([binary, "build", join(REPO_ROOT, "examples/base"), "-t", "memobuild/busybox:latest", "--cache-dir", cache]);
    const build = () => timed([binary, "build", project, "--cache-dir", cache]);
    const t = (times[name] ??= { cold: [], noop: [], edit: [] });
    t.cold.push(build());
    t.noop.push(build());
    appendFileSync(join(project, "data", "edited.txt"), `run ${run} ${name}\n`);
    t.edit.push(build());
  }
}
for (const kind of ["cold", "noop", "edit"] as const) {
  const before = median(times.before[kind]);
  const after = median(times.after[kind]);
  console.log(`${kind.padEnd(5)} before ${before.toFixed(0).padStart(6)} ms   after ${after.toFixed(0).padStart(6)} ms   ratio ${(after / before).toFixed(2)}`);
}
rmSync(work, { recursive: true, force: true });
