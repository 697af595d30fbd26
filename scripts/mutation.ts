/**
 * `make mutation`: StrykerJS over the modules that protect users, one module at a time, each
 * with the in-process tests that exercise it (so a mutant runs seconds of tests, not the suite).
 * Every mutant's tests run in scripts/mutation-jail.sh: a mutant of tree-deleting code once
 * emptied /root here, so nothing a mutant does may reach the machine.
 *
 *   bun scripts/mutation.ts [module...]     (default: all; see MODULES)
 *
 * Stryker runs under Bun (it needs Node 22; Bun runs it), with its command runner calling
 * `bun test`. Each module's report goes to reports/mutation/<module>.json and its surviving
 * mutants, one per line, to <module>.survivors.txt; the summary table (killed, survived,
 * ignored, score) is printed at the end and written to reports/mutation/summary.txt. "Ignored"
 * are mutants a `// Stryker disable` comment switches off: each comment says why the mutant
 * cannot change what users get (an equivalent mutant), and they do not count in the score.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { conformanceRoot } from "../test/support/conformance.ts";

const ROOT = resolve(import.meta.dir, "..");
const BUN = process.execPath;
const JAIL = join(ROOT, "scripts/mutation-jail.sh");

interface Module {
  name: string;
  mutate: string[];
  /** Test files that exercise it (in process: the jail keeps the sandbox read-only). */
  tests: string;
  /** Stryker's allowance over the tests' own time; lower it where mutants loop and the tests take milliseconds. */
  timeoutMS?: number;
}

/**
 * `file:start-end` for Stryker: the lines of the function whose first line contains `opening`,
 * up to the closing brace at its indentation (found by text, so edits above it do not shift it).
 */
function span(file: string, opening: string): string {
  const lines = readFileSync(join(ROOT, file), "utf8").split("\n");
  const start = lines.findIndex((line) => line.includes(opening));
  if (start < 0) throw new Error(`${file}: no line contains ${JSON.stringify(opening)}`);
  const indent = /^\s*/.exec(lines[start])![0];
  const end = lines.findIndex((line, i) => i > start && (line === `${indent}}` || line === `${indent}};`));
  if (end < 0) throw new Error(`${file}: the function at line ${start + 1} has no closing brace at its indentation`);
  return `${file}:${start + 1}-${end + 1}`;
}

/** `file:N-N` for Stryker: the one line that contains `text` (a check inside a longer function). */
function line(file: string, text: string): string {
  const lines = readFileSync(join(ROOT, file), "utf8").split("\n");
  const found = lines.filter((l) => l.includes(text)).length;
  if (found !== 1) throw new Error(`${file}: ${found} lines contain ${JSON.stringify(text)}, not one`);
  const at = lines.findIndex((l) => l.includes(text)) + 1;
  return `${file}:${at}-${at}`;
}

export const MODULES: Module[] = [
  { name: "server-storage-auth", mutate: ["src/server/storage.ts", "src/server/auth.ts"], tests: "src/server/storage.test.ts src/server/auth.test.ts src/server/app.test.ts src/remote/client.test.ts" },
  { name: "remote-client", mutate: ["src/remote/client.ts"], tests: "src/remote/client.test.ts src/server/app.test.ts" },
  { name: "cache-store-gc", mutate: ["src/cache/store.ts", "src/cache/gc.ts"], tests: "src/cache/store.test.ts" },
  // The key rule, and the operations that say what each step's key is made of (what it reads, its base).
  { name: "step-keys", mutate: ["src/solver/keys.ts", ...["operation", "from", "run", "transfer", "workdir", "config", "index"].map((op) => `src/solver/ops/${op}.ts`)], tests: "src/solver/solver.test.ts" },
  { name: "stat-cache", mutate: ["src/context/stat-cache.ts"], tests: "src/context/stat-cache.test.ts" },
  { name: "layer-extraction", mutate: ["src/snapshot/extract.ts"], tests: "src/snapshot/snapshot.test.ts" },
  { name: "secrets", mutate: ["src/executor/private-tmpfs.ts"], tests: "src/executor/private-tmpfs.test.ts" },
  { name: "root-resolver", mutate: ["src/rootfs/root.ts"], tests: "src/rootfs/root.test.ts src/snapshot/snapshot.test.ts src/cache/store.test.ts" },
  // Where a project file (which a pull request can change) may not send the user's token.
  { name: "config-trust", mutate: ["src/config/remote.ts"], tests: "src/config/settings.test.ts src/config/remote.test.ts src/config/remote-trust.test.ts" },
  // The hub's same-origin check for browser requests and its in-memory login sessions (auth.ts is in server-storage-auth).
  { name: "hub-http-sessions", mutate: ["src/server/http.ts", span("src/server/sessions.ts", "export class Sessions ")], tests: "src/server/app.test.ts src/server/hub.test.ts src/server/session-expiry.test.ts src/server/http-checks.test.ts" },
  { name: "dashboard-escaping", mutate: [span("src/dashboard/ui/format.ts", "export function esc(")], tests: "src/dashboard/ui/format.test.ts src/dashboard/views.test.ts" },
  { name: "webhooks", mutate: ["src/server/webhooks.ts"], tests: "src/server/webhook-rules.test.ts src/server/webhooks.test.ts", timeoutMS: 15_000 },
  { name: "image-validation", mutate: ["src/image/validate.ts"], tests: "src/image/validate.test.ts src/image/layout.test.ts" },
  // Its tests take well under a second, and some mutants (a header length made 0) loop: 5 s is plenty.
  { name: "tar", mutate: ["src/sys/tar.ts"], tests: "src/sys/tar.test.ts src/sys/tar-gnu.test.ts src/snapshot/snapshot.test.ts", timeoutMS: 5_000 },
  // What --allow consents to (run.ts is also in step-keys; this is the check alone, for its own row).
  { name: "entitlements", mutate: [span("src/solver/ops/run.ts", "function checkEntitlements(")], tests: "src/solver/solver.test.ts" },
  { name: "downloads", mutate: ["src/executor/download.ts"], tests: "src/executor/download.test.ts" },
  { name: "network-limits", mutate: ["src/util/network.ts"], tests: "src/util/network.test.ts" },
  // RUN's seccomp deny list (the end-to-end tests in test/confinement.test.ts need crun, outside the jail's reach).
  { name: "seccomp", mutate: ["src/executor/seccomp.ts"], tests: "src/executor/seccomp.test.ts" },
  // ADD on a worker: no hop of a job's download reaches the worker's loopback.
  { name: "loopback-guard", mutate: ["src/util/loopback-guard.ts"], tests: "src/util/loopback-guard.test.ts src/executor/download.test.ts" },
  // What an untrusted submitter's job may ask for: its --ulimits, its entitlements, its version.
  {
    name: "job-rules",
    mutate: [span("src/remote/job-definition.ts", "export const UNTRUSTED_ULIMITS"), span("src/remote/job-definition.ts", "export function untrustedUlimitProblems("), span("src/remote/job-definition.ts", "function entitlements("), line("src/remote/job-definition.ts", "value.version !== 1")],
    tests: "src/remote/job-definition.test.ts src/worker/worker.test.ts src/server/jobs.test.ts",
  },
  // serve's fast path for blob reads: a token is checked before any byte is served.
  { name: "blob-reads", mutate: ["src/server/blob-reads.ts"], tests: "src/server/app.test.ts" },
];

interface Counts {
  killed: number;
  survived: number;
  timeout: number;
  noCoverage: number;
  /** Switched off by a `// Stryker disable` comment, which says why the mutant is equivalent. */
  ignored: number;
  errors: number;
}

interface ReportedMutant {
  status: string;
  mutatorName: string;
  replacement?: string;
  location: { start: { line: number; column: number }; end: { line: number; column: number } };
}

/** One line per surviving mutant: where, which mutator, the code and what it became. */
function survivorLines(files: Record<string, { source: string; mutants: ReportedMutant[] }>): string[] {
  const lines: string[] = [];
  for (const [file, { source, mutants }] of Object.entries(files)) {
    const text = source.split("\n");
    for (const mutant of mutants) {
      if (mutant.status !== "Survived" && mutant.status !== "NoCoverage") continue;
      const { start, end } = mutant.location;
      const original = start.line === end.line ? text[start.line - 1].slice(start.column - 1, end.column - 1) : `${text[start.line - 1].slice(start.column - 1)} …`;
      const shorten = (code: string) => code.replace(/\s+/g, " ").trim().slice(0, 80);
      lines.push(`${file}:${start.line} ${mutant.mutatorName}${mutant.status === "NoCoverage" ? " (no test reaches it)" : ""}: ${shorten(original)} => ${shorten(mutant.replacement ?? "")}`);
    }
  }
  return lines;
}

function run(module: Module): Counts {
  const reports = join(ROOT, "reports/mutation");
  mkdirSync(reports, { recursive: true });
  const report = join(reports, `${module.name}.json`);
  // Stryker runs the tests in a sandbox copy of the tree: the data is named by its absolute path.
  const conformance = conformanceRoot();
  const config = {
    testRunner: "command",
    // The server suites run on the embedded back end only: the jail has no PostgreSQL or S3 to start.
    commandRunner: { command: `${JAIL} env MEMOBUILD_CONFORMANCE_DIR=${conformance} MEMOBUILD_TEST_BACKENDS=sqlite+directory ${BUN} test ${module.tests}` },
    mutate: module.mutate,
    coverageAnalysis: "off",
    concurrency: 2,
    timeoutMS: module.timeoutMS ?? 60_000,
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
  return countReport(module);
}

/** Counts a module's report (and writes its survivor list). */
function countReport(module: Module): Counts {
  const reports = join(ROOT, "reports/mutation");
  const json = JSON.parse(readFileSync(join(reports, `${module.name}.json`), "utf8")) as { files: Record<string, { source: string; mutants: ReportedMutant[] }> };
  writeFileSync(join(reports, `${module.name}.survivors.txt`), survivorLines(json.files).join("\n") + "\n");
  const counts: Counts = { killed: 0, survived: 0, timeout: 0, noCoverage: 0, ignored: 0, errors: 0 };
  for (const file of Object.values(json.files)) {
    for (const mutant of file.mutants) {
      if (mutant.status === "Killed") counts.killed++;
      else if (mutant.status === "Survived") counts.survived++;
      else if (mutant.status === "Timeout") counts.timeout++;
      else if (mutant.status === "NoCoverage") counts.noCoverage++;
      else if (mutant.status === "Ignored") counts.ignored++;
      else counts.errors++;
    }
  }
  return counts;
}

/**
 * One row: killed (timeouts count as killed, as Stryker scores them), survived, ignored, the
 * score, and the score as if every ignored mutant had survived (so switching mutants off can
 * never be what makes the number).
 */
function row(name: string, counts: Counts): string {
  const detected = counts.killed + counts.timeout;
  const survived = counts.survived + counts.noCoverage;
  const percent = (part: number, all: number) => `${((100 * part) / Math.max(1, all)).toFixed(1)}%`;
  return [name.padEnd(22), String(detected).padStart(6), String(survived).padStart(9), String(counts.ignored).padStart(8), percent(detected, detected + survived).padStart(8), percent(detected, detected + survived + counts.ignored).padStart(16)].join(" ");
}

// Only when run: the module table is imported by its test. `--summary` only re-reads the reports.
if (import.meta.main) {
  const summaryOnly = process.argv.includes("--summary");
  const wanted = process.argv.slice(2).filter((arg) => arg !== "--summary");
  const unknown = wanted.filter((name) => !MODULES.some((m) => m.name === name));
  if (unknown.length) throw new Error(`unknown module ${unknown.join(", ")}; known: ${MODULES.map((m) => m.name).join(", ")}`);
  // In the order asked for.
  const chosen = wanted.length ? wanted.map((name) => MODULES.find((m) => m.name === name)!) : MODULES;
  const rows: string[] = [];
  const total: Counts = { killed: 0, survived: 0, timeout: 0, noCoverage: 0, ignored: 0, errors: 0 };
  for (const module of chosen) {
    const counts = summaryOnly ? countReport(module) : run(module);
    for (const key of Object.keys(total) as (keyof Counts)[]) total[key] += counts[key];
    rows.push(row(module.name, counts));
  }
  const header = ["module".padEnd(22), "killed".padStart(6), "survived".padStart(9), "ignored".padStart(8), "score".padStart(8), "ignored as lived".padStart(16)].join(" ");
  const summary = [header, ...rows, row("all", total)].join("\n");
  writeFileSync(join(ROOT, "reports/mutation/summary.txt"), summary + "\n");
  process.stdout.write(`\n${summary}\n`);
}
