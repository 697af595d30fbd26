import { existsSync } from "node:fs";
import { resolve } from "node:path";

export const REPO_ROOT = resolve(import.meta.dir, "../..");
export const BINARY = resolve(REPO_ROOT, "dist/memobuild");

/**
 * The compiled binary the end-to-end tests run. `make test` builds it first; when it is missing
 * (a bare `bun test`), it is built here so the tests still exercise the real executable.
 */
export function memobuildBinary(): string {
  if (!existsSync(BINARY)) {
    const build = Bun.spawnSync(["bun", "build", "--compile", "bin/memobuild.ts", "src/hash/hash-worker.ts", "--outfile", BINARY], {
      cwd: REPO_ROOT,
      stderr: "pipe",
    });
    if (build.exitCode !== 0) throw new Error(`building ${BINARY} failed: ${build.stderr.toString()}`);
  }
  return BINARY;
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
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
