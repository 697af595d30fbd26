/**
 * The fuzz harness: mutated inputs for every parser that reads untrusted bytes (targets.ts),
 * each target in its own process with a watchdog, so a crash, a hang (an input that runs past
 * the time limit) or unbounded memory is caught and reported with the input that caused it.
 *
 *   bun test/fuzz/run.ts                         # every target, 60 s each, a random seed
 *   bun test/fuzz/run.ts --seconds 600 --seed 7  # longer, reproducible
 *   bun test/fuzz/run.ts --target tar --count 100000 --seed 1
 *   bun test/fuzz/run.ts --target tar --seed 1 --from 4242 --count 1   # run one input again
 *   bun test/fuzz/run.ts --replay test/fuzz/regressions                 # the saved regressions
 *
 * Input i of a target is a pure function of (seed, target, i): a failure's numbers reproduce it.
 */
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { mutate, Random } from "./mutate.ts";
import { removeScratch, TARGETS, type Target } from "./targets.ts";

// Flags only when run as a command: imported by the test, the defaults hold (and the test
// runner's own arguments are not read as ours).
const { values } = parseArgs({
  args: import.meta.main ? process.argv.slice(2) : [],
  options: {
    target: { type: "string" },
    seed: { type: "string" },
    count: { type: "string" },
    seconds: { type: "string" },
    from: { type: "string", default: "0" },
    "time-limit": { type: "string", default: "5000" },
    "max-rss": { type: "string", default: "1536" },
    "crash-dir": { type: "string", default: join(import.meta.dir, "crashes") },
    worker: { type: "boolean", default: false },
    /** A saved input (or a directory of them, one subdirectory per target) run as it is. */
    replay: { type: "string" },
  },
});

export interface Figures {
  target: string;
  inputs: number;
  seconds: number;
  slowestMs: number;
  peakRssMb: number;
  /** Distinct outcomes (accepted, or each rejection message with numbers blanked), up to 100,000: how far inputs reach. */
  outcomes: number;
}

/** The input-specific seed: (seed, target, index) mixed so neighbouring indexes differ entirely. */
const inputSeed = (seed: number, target: string, index: number) => {
  let h = seed ^ 0x811c9dc5;
  for (const ch of target) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193);
  return (Math.imul(h ^ index, 0x9e3779b1) ^ (index >>> 16)) >>> 0;
};

function saveInput(target: string, seed: number, index: number, input: Uint8Array, why: string): string {
  mkdirSync(values["crash-dir"]!, { recursive: true });
  const file = join(values["crash-dir"]!, `${target}-seed${seed}-input${index}.bin`);
  writeFileSync(file, input);
  return `${why}: ${target} input ${index} (seed ${seed}), saved as ${file}; replay: bun test/fuzz/run.ts --target ${target} --seed ${seed} --from ${index} --count 1`;
}

/** The worker: runs one target's inputs and reports progress lines on stdout. */
async function work(target: Target, seed: number, from: number, count: number, seconds: number) {
  const timeLimit = Number(values["time-limit"]);
  const maxRss = Number(values["max-rss"]) * 1024 * 1024;
  // The watchdog thread sees the input being run; if it runs past the limit it saves it and kills us.
  const shared = new SharedArrayBuffer(16 + 1024 * 1024);
  const state = new Int32Array(shared, 0, 4); // [index, length, running, unused]
  const bytes = new Uint8Array(shared, 16);
  const watchdog = new Worker(new URL("./watchdog.ts", import.meta.url).href);
  watchdog.postMessage({ shared, target: target.name, seed, hangMs: timeLimit * 5, crashDir: values["crash-dir"] });
  watchdog.unref();

  const replayed = values.replay ? readFileSync(values.replay) : undefined;
  const corpus = replayed ? [] : target.seeds();
  const outcomes = new Set<string>();
  const started = performance.now();
  let slowest = 0;
  let peakRss = 0;
  let lastReport = started;
  let done = 0;
  for (let index = from; done < count && performance.now() - started < seconds * 1000; index++, done++) {
    const input = replayed ?? mutate(corpus, new Random(inputSeed(seed, target.name, index)));
    const length = Math.min(input.length, bytes.length);
    bytes.set(input.subarray(0, length));
    Atomics.store(state, 1, length);
    Atomics.store(state, 0, index);
    Atomics.store(state, 2, 1);
    const t0 = performance.now();
    let result: string;
    try {
      result = target.run(input);
    } catch (error) {
      console.log(`fail ${saveInput(target.name, seed, index, input, "crash")}\n${(error as Error).stack ?? error}`);
      process.exit(1);
    }
    const ms = performance.now() - t0;
    Atomics.store(state, 2, 0);
    slowest = Math.max(slowest, ms);
    if (ms > timeLimit) {
      console.log(`fail ${saveInput(target.name, seed, index, input, `slow (${Math.round(ms)} ms, the limit is ${timeLimit})`)}`);
      process.exit(1);
    }
    // Counted up to a bound: the harness's own memory must not hide the target's.
    if (outcomes.size < 100_000) outcomes.add(result.replace(/[0-9a-f]{12,}/g, "#").replace(/\d+/g, "N").slice(0, 200));
    if (done % 500 === 0) {
      peakRss = Math.max(peakRss, process.memoryUsage.rss());
      if (peakRss > maxRss) {
        console.log(`fail memory: ${target.name} reached ${Math.round(peakRss / 1048576)} MB by input ${index} (seed ${seed})`);
        process.exit(1);
      }
    }
    if (performance.now() - lastReport > 1000) {
      console.log(`progress ${done}`);
      lastReport = performance.now();
    }
  }
  removeScratch();
  peakRss = Math.max(peakRss, process.memoryUsage.rss());
  const figures: Figures = { target: target.name, inputs: done, seconds: (performance.now() - started) / 1000, slowestMs: slowest, peakRssMb: Math.round(peakRss / 1048576), outcomes: outcomes.size };
  console.log(`done ${JSON.stringify(figures)}`);
  process.exit(0);
}

/** Runs one target's worker; resolves to its figures, or throws with the failure it reported. */
export async function fuzzTarget(name: string, seed: number, options: { count?: number; seconds?: number; from?: number; replay?: string }): Promise<Figures> {
  const args = [...(options.replay ? ["--replay", options.replay] : []), "--worker", "--target", name, "--seed", String(seed), "--from", String(options.from ?? 0), "--time-limit", values["time-limit"]!, "--max-rss", values["max-rss"]!, "--crash-dir", values["crash-dir"]!];
  if (options.count !== undefined) args.push("--count", String(options.count));
  if (options.seconds !== undefined) args.push("--seconds", String(options.seconds));
  const child = Bun.spawn([process.execPath, import.meta.path, ...args], { stdout: "pipe", stderr: "pipe" });
  const silentLimitMs = Number(values["time-limit"]) * 5 + 10_000;
  let figures: Figures | undefined;
  let failure = "";
  let timer = setTimeout(() => child.kill("SIGKILL"), silentLimitMs);
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of child.stdout) {
    clearTimeout(timer);
    timer = setTimeout(() => child.kill("SIGKILL"), silentLimitMs);
    pending += decoder.decode(chunk, { stream: true });
    const lines = pending.split("\n");
    pending = lines.pop()!;
    for (const line of lines) {
      if (line.startsWith("done ")) figures = JSON.parse(line.slice(5)) as Figures;
      else if (!line.startsWith("progress ")) failure += line + "\n";
    }
  }
  clearTimeout(timer);
  const exitCode = await child.exited;
  const stderr = await new Response(child.stderr).text();
  if (exitCode !== 0 || !figures) throw new Error(`${name}: ${failure.trim() || `the worker ended with ${exitCode} (${child.signalCode ?? "no signal"})`}\n${stderr.trim()}`);
  return figures;
}

/** Saved inputs under `path`: `TARGET/NAME` files (or one file, its target named by its directory). */
export function savedInputs(path: string): { target: string; path: string }[] {
  if (!statSync(path).isDirectory()) return [{ target: basename(dirname(path)), path }];
  return readdirSync(path)
    .filter((target) => statSync(join(path, target)).isDirectory())
    .flatMap((target) => readdirSync(join(path, target)).map((name) => ({ target, path: join(path, target, name) })));
}

if (import.meta.main) {
  const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
  const count = values.count !== undefined ? Number(values.count) : Infinity;
  const seconds = values.seconds !== undefined ? Number(values.seconds) : values.count !== undefined ? Infinity : 60;
  const names = values.target ? values.target.split(",") : TARGETS.map((t) => t.name);
  if (values.worker && values.replay) {
    const target = TARGETS.find((t) => t.name === names[0])!;
    await work(target, 0, 0, 1, Infinity);
  } else if (values.replay) {
    let failed = false;
    for (const file of savedInputs(values.replay)) {
      try {
        const f = await fuzzTarget(file.target, 0, { replay: file.path, count: 1 });
        console.log(`${file.target.padEnd(15)} ${file.path}: ${f.slowestMs.toFixed(1)} ms`);
      } catch (error) {
        failed = true;
        console.log(`FAIL ${(error as Error).message}`);
      }
    }
    process.exit(failed ? 1 : 0);
  } else if (values.worker) {
    const target = TARGETS.find((t) => t.name === names[0]);
    if (!target) throw new Error(`no fuzz target ${names[0]} (there are: ${TARGETS.map((t) => t.name).join(", ")})`);
    await work(target, seed, Number(values.from), count, seconds);
  } else {
    console.log(`seed ${seed}`);
    let failed = false;
    let total = 0;
    for (const name of names) {
      try {
        const f = await fuzzTarget(name, seed, { count: Number.isFinite(count) ? count : undefined, seconds: Number.isFinite(seconds) ? seconds : undefined, from: Number(values.from) });
        total += f.inputs;
        console.log(`${f.target.padEnd(15)} ${String(f.inputs).padStart(9)} inputs  ${(f.inputs / f.seconds).toFixed(0).padStart(7)}/s  slowest ${f.slowestMs.toFixed(1)} ms  peak RSS ${f.peakRssMb} MB  ${f.outcomes} distinct outcomes`);
      } catch (error) {
        failed = true;
        console.log(`FAIL ${(error as Error).message}`);
      }
    }
    console.log(`${total} inputs in total, ${failed ? "with failures" : "no crash, hang or runaway memory"}`);
    process.exit(failed ? 1 : 0);
  }
}
