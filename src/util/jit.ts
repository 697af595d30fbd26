/**
 * Keeps functions out of JavaScriptCore's top tier, the FTL JIT, for code that runs once per
 * entry of a build context (the walk, the stat cache's lookups, the directory digests).
 *
 * Why: a warm `context digest` of 20,000 files lasts ~150 ms. In that time the FTL compiled
 * 19 of these functions, ~34 ms of CPU on a JIT thread, for code that then ran a few
 * milliseconds more; the DFG tier below it compiles them in a fraction of that and runs them
 * nearly as fast. JSC's options (BUN_JSC_useFTLJIT=0) apply to a whole process and are read
 * at its start, and `serve` wants the FTL; `noFTL` is the one knob per function a running
 * process has. A long-running process (serve, worker) runs these functions at DFG speed.
 */
import { noFTL } from "bun:jsc";

export function keepOutOfFTL(...functions: ((...args: never[]) => unknown)[]) {
  for (const f of functions) noFTL(f as (...args: unknown[]) => unknown);
}
