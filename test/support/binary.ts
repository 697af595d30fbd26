import { existsSync, readdirSync, statSync } from "node:fs";
import { join, resolve } from "node:path";

export const REPO_ROOT = resolve(import.meta.dir, "../..");
export const BINARY = resolve(REPO_ROOT, "dist/memobuild");

/** The newest modification time among the sources the binary is built from. */
function newestSource(): number {
  let newest = 0;
  const visit = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) visit(path);
      else if (/\.(ts|css)$/.test(entry.name) && !entry.name.endsWith(".test.ts")) newest = Math.max(newest, statSync(path).mtimeMs);
    }
  };
  for (const dir of ["src", "bin"]) visit(join(REPO_ROOT, dir));
  for (const file of ["package.json", "bun.lock"]) newest = Math.max(newest, statSync(join(REPO_ROOT, file)).mtimeMs);
  return newest;
}

let checked = false;

/**
 * The compiled binary the end-to-end tests run. `make test` builds it first; when it is missing
 * or older than a source file (a bare `bun test` after an edit), it is rebuilt here so the tests
 * never exercise a stale executable.
 */
export function memobuildBinary(): string {
  // To prove a test fails on an older build: MEMOBUILD_TEST_BINARY=/path/to/old/memobuild bun test ...
  if (process.env.MEMOBUILD_TEST_BINARY) return process.env.MEMOBUILD_TEST_BINARY;
  if (!checked && (!existsSync(BINARY) || statSync(BINARY).mtimeMs < newestSource())) {
    // The Makefile's rule, so tests run the binary users get (its compile flags are chosen there).
    const build = Bun.spawnSync(["make", "--no-print-directory", "-s", "build", `BUN=${process.execPath}`], {
      cwd: REPO_ROOT,
      stderr: "pipe",
    });
    if (build.exitCode !== 0) throw new Error(`building ${BINARY} failed: ${build.stderr.toString()}`);
  }
  checked = true;
  return BINARY;
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/**
 * The binary without blocking this process: for tests whose server (a child of this process)
 * must keep answering while the command runs.
 */
export async function runMemobuildAsync(args: string[], env: Record<string, string> = {}): Promise<RunResult> {
  const child = Bun.spawn([memobuildBinary(), ...args], { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  const [stdout, stderr, exitCode] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  return { stdout, stderr, exitCode };
}

export function runMemobuild(args: string[], options: { cwd?: string; stdin?: string; binary?: string; env?: Record<string, string> } = {}): RunResult {
  const result = Bun.spawnSync([options.binary ?? memobuildBinary(), ...args], {
    cwd: options.cwd,
    env: options.env ? { ...process.env, ...options.env } : undefined,
    stdin: options.stdin === undefined ? "ignore" : new TextEncoder().encode(options.stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  return { exitCode: result.exitCode ?? -1, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
}
