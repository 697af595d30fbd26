/**
 * The fuzz worker's watchdog thread: an input still running past the hang limit (a parser in an
 * endless loop never returns to report itself) is saved, named on stdout, and the process killed.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

declare const self: Worker;

self.onmessage = (event: MessageEvent) => {
  const { shared, target, seed, hangMs, crashDir } = event.data as { shared: SharedArrayBuffer; target: string; seed: number; hangMs: number; crashDir: string };
  const state = new Int32Array(shared, 0, 4);
  const bytes = new Uint8Array(shared, 16);
  let seen = -1;
  let since = performance.now();
  setInterval(() => {
    const index = Atomics.load(state, 0);
    const running = Atomics.load(state, 2) === 1;
    if (index !== seen || !running) {
      seen = index;
      since = performance.now();
      return;
    }
    if (performance.now() - since < hangMs) return;
    mkdirSync(crashDir, { recursive: true });
    const file = join(crashDir, `${target}-seed${seed}-input${index}.bin`);
    writeFileSync(file, bytes.slice(0, Atomics.load(state, 1)));
    process.stdout.write(`fail hang (over ${hangMs} ms): ${target} input ${index} (seed ${seed}), saved as ${file}; replay: bun test/fuzz/run.ts --target ${target} --seed ${seed} --from ${index} --count 1\n`);
    process.kill(process.pid, "SIGKILL");
  }, 100);
};
