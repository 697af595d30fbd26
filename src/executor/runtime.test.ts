/** The container watchdog: one per process, and what it does when that process dies. */
import { expect, test } from "bun:test";
import { chmodSync, closeSync, ftruncateSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findRuntime, sealedCopy } from "./runtime.ts";

/**
 * A process that starts a watchdog (as `dog`) over a runtime that only writes down how it was
 * called, into `calls`, then runs `lines`.
 */
function watchdogOwner(dir: string, lines: string[]) {
  const runtime = join(dir, "runtime");
  const calls = join(dir, "calls");
  writeFileSync(runtime, `#!/bin/sh\necho "$*" >> ${calls}\n`);
  chmodSync(runtime, 0o755);
  const script = [
    `import { startWatchdog } from ${JSON.stringify(join(import.meta.dir, "runtime.ts"))};`,
    `const dog = startWatchdog(${JSON.stringify(runtime)});`,
    ...lines,
  ].join("\n");
  return { calls, owner: Bun.spawn([process.execPath, "-e", script], { stdout: "ignore", stderr: "pipe" }) };
}

test("when its process is killed with -9, the watchdog kills and deletes the containers still running, and only those", async () => {
  const dir = mkdtempSync(join(tmpdir(), "memobuild-watchdog-"));
  try {
    const { calls, owner } = watchdogOwner(dir, [
      `for (const id of ["memobuild-1-aa", "memobuild-1-bb", "memobuild-1-cc"]) dog.watch(id);`,
      `dog.forget("memobuild-1-bb");`,
      // Give the pipe a moment, then die as a build killed by -9 does.
      `setTimeout(() => process.kill(process.pid, "SIGKILL"), 100);`,
    ]);
    expect(await owner.exited).not.toBe(0);
    let logged = "";
    for (let i = 0; i < 60 && logged.split("\n").length < 5; i++) {
      await Bun.sleep(50);
      logged = readFileSync(calls, { encoding: "utf8", flag: "a+" });
    }
    expect(logged.trim().split("\n").sort()).toEqual(["delete -f memobuild-1-aa", "delete -f memobuild-1-cc", "kill memobuild-1-aa KILL", "kill memobuild-1-cc KILL"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a watchdog told of no running container does nothing when its process exits", async () => {
  const dir = mkdtempSync(join(tmpdir(), "memobuild-watchdog-"));
  try {
    const { calls, owner } = watchdogOwner(dir, [
      `dog.watch("memobuild-1-aa"); dog.forget("memobuild-1-aa");`,
      `await Bun.sleep(100);`, // then the script ends: nothing else keeps the process alive
    ]);
    // It exits although the watchdog still runs: the watchdog does not hold it.
    expect(await owner.exited).toBe(0);
    await Bun.sleep(300);
    expect(readFileSync(calls, { encoding: "utf8", flag: "a+" })).toBe("");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("crun starts from a sealed copy in memory: the same bytes, runnable, and no one can write to it", () => {
  const runtime = findRuntime();
  if (!runtime.endsWith("/crun")) return; // runc starts from its path
  const copy = sealedCopy(runtime)!;
  expect(copy).toMatch(new RegExp(`^/proc/${process.pid}/fd/\\d+$`));
  expect(readFileSync(copy).equals(readFileSync(runtime))).toBe(true);
  const fd = openSync(copy, "r+");
  try {
    expect(() => writeSync(fd, "x")).toThrow(/EPERM/);
    expect(() => ftruncateSync(fd, 0)).toThrow(/EPERM/);
  } finally {
    closeSync(fd);
  }
  const version = Bun.spawnSync([copy, "--version"], { stdout: "pipe" });
  expect(version.stdout.toString()).toStartWith("crun version");
});
