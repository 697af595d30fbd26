/**
 * `make mutation`: StrykerJS over the modules that protect users, one module at a time, each
 * with the in-process tests that exercise it (so a mutant runs seconds of tests, not the suite).
 * Every mutant's tests run in scripts/mutation-jail.sh: a mutant of tree-deleting code once
 * emptied /root here, so nothing a mutant does may reach the machine.
 *
 *   bun scripts/mutation.ts [module...]     (default: all; see MODULES)
 *
 * Stryker runs under Bun (it needs Node 22; Bun runs it), with its command runner calling
 * `bun test`. Each module's report goes to reports/mutation/<module>.json; the summary table
 * (killed, survived, score) is printed at the end and written to reports/mutation/summary.txt.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");
const BUN = process.execPath;
const JAIL = join(ROOT, "scripts/mutation-jail.sh");

interface Module {
  name: string;
  mutate: string[];
  /** Test files that exercise it (in process: the jail keeps the sandbox read-only). */
  tests: string;
}

export const MODULES: Module[] = [
  { name: "server-storage-auth", mutate: ["src/server/storage.ts", "src/server/auth.ts"], tests: "src/server/storage.test.ts src/server/auth.test.ts src/server/app.test.ts src/remote/client.test.ts" },
  { name: "remote-client", mutate: ["src/remote/client.ts"], tests: "src/remote/client.test.ts src/server/app.test.ts" },
  { name: "cache-store-gc", mutate: ["src/cache/store.ts", "src/cache/gc.ts"], tests: "src/cache/store.test.ts" },
  // The key rule, and where the solver fills in what a key is made of (what a step reads, its base).
  { name: "step-keys", mutate: ["src/solver/keys.ts", "src/solver/solver.ts:232-306", "src/solver/solver.ts:521-565"], tests: "src/solver/solver.test.ts" },
  { name: "stat-cache", mutate: ["src/context/stat-cache.ts"], tests: "src/context/stat-cache.test.ts" },
  { name: "layer-extraction", mutate: ["src/snapshot/extract.ts"], tests: "src/snapshot/snapshot.test.ts" },
  { name: "secrets", mutate: ["src/executor/private-tmpfs.ts"], tests: "src/executor/private-tmpfs.test.ts" },
  { name: "root-resolver", mutate: ["src/rootfs/root.ts"], tests: "src/rootfs/root.test.ts src/snapshot/snapshot.test.ts src/cache/store.test.ts" },
];

interface Counts {
  killed: number;
  survived: number;
  timeout: number;
  noCoverage: number;
  errors: number;
}

function run(module: Module): Counts {
  const reports = join(ROOT, "reports/mutation");
  mkdirSync(reports, { recursive: true });
  const report = join(reports, `${module.name}.json`);
  const conformance = process.env.MEMOBUILD_CONFORMANCE_DIR ?? resolve(ROOT, "../shared/conformance");
  const config = {
    testRunner: "command",
    commandRunner: { command: `${JAIL} env MEMOBUILD_CONFORMANCE_DIR=${conformance} ${BUN} test ${module.tests}` },
    mutate: module.mutate,
    coverageAnalysis: "off",
    concurrency: 2,
    timeoutMS: 60_000,
    // The project's TypeScript is the native compiler (no JS API): Stryker must not touch tsconfig.
    tsconfigFile: "no-tsconfig.json",
    reporters: ["clear-text", "json"],
    jsonReporter: { fileName: report },
    clearTextReporter: { allowColor: false, logTests: false },
    tempDirName: ".stryker-tmp",
    ignorePatterns: [".tools", "dist", "reports", "test/corpus", "test/fuzz/crashes", ".stryker-tmp"],
    cleanTempDir: "always",
  };
  const configFile = join(reports, `${module.name}.stryker.json`);
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  const result = Bun.spawnSync([BUN, join(ROOT, "node_modules/@stryker-mutator/core/bin/stryker.js"), "run", configFile], { cwd: ROOT, stdout: "inherit", stderr: "inherit" });
  if (result.exitCode !== 0) throw new Error(`stryker failed on ${module.name} (exit ${result.exitCode})`);
  const json = JSON.parse(readFileSync(report, "utf8")) as { files: Record<string, { mutants: { status: string }[] }> };
  const counts: Counts = { killed: 0, survived: 0, timeout: 0, noCoverage: 0, errors: 0 };
  for (const file of Object.values(json.files)) {
    for (const mutant of file.mutants) {
      if (mutant.status === "Killed") counts.killed++;
      else if (mutant.status === "Survived") counts.survived++;
      else if (mutant.status === "Timeout") counts.timeout++;
      else if (mutant.status === "NoCoverage") counts.noCoverage++;
      else counts.errors++;
    }
  }
  return counts;
}

const wanted = process.argv.slice(2);
const chosen = wanted.length ? MODULES.filter((m) => wanted.includes(m.name)) : MODULES;
if (chosen.length !== (wanted.length || MODULES.length)) throw new Error(`unknown module; known: ${MODULES.map((m) => m.name).join(", ")}`);
const rows: string[] = [];
const total: Counts = { killed: 0, survived: 0, timeout: 0, noCoverage: 0, errors: 0 };
for (const module of chosen) {
  const counts = run(module);
  for (const key of Object.keys(total) as (keyof Counts)[]) total[key] += counts[key];
  // A timeout counts as killed (the mutant hung the tests), as Stryker scores it.
  const detected = counts.killed + counts.timeout;
  const all = detected + counts.survived + counts.noCoverage;
  rows.push(`${module.name.padEnd(22)} ${String(detected).padStart(6)} ${String(counts.survived + counts.noCoverage).padStart(9)} ${((100 * detected) / Math.max(1, all)).toFixed(1).padStart(7)}%`);
}
const detected = total.killed + total.timeout;
const summary = [
  `${"module".padEnd(22)} ${"killed".padStart(6)} ${"survived".padStart(9)} ${"score".padStart(8)}`,
  ...rows,
  `${"all".padEnd(22)} ${String(detected).padStart(6)} ${String(total.survived + total.noCoverage).padStart(9)} ${((100 * detected) / Math.max(1, detected + total.survived + total.noCoverage)).toFixed(1).padStart(7)}%`,
].join("\n");
writeFileSync(join(ROOT, "reports/mutation/summary.txt"), summary + "\n");
process.stdout.write(`\n${summary}\n`);
