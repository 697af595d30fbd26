/**
 * The hub's cache mounts panel in a real browser (Debian's chromium through playwright-core):
 * two machines share a cache mount through `memobuild serve` with real builds, and the cache
 * page shows the mount's versions, the files each publish changed, and what the fetches
 * downloaded, what the machine already had and the time that saved, with how that is
 * estimated. MEMOBUILD_SHOTS=DIR keeps a screenshot there (nothing is written otherwise).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser } from "playwright-core";
import { memobuildBinary } from "./support/binary.ts";
import { buildBaseImage, machineWithBase, writeProject } from "./support/base-image.ts";
import { startCacheServer, type CacheServer } from "./support/server.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-dashboard-mounts-"));
const TOKEN = "dashboard-mounts-token";
const baseOci = join(work, "base-oci");
let browser: Browser;
let server: CacheServer;

beforeAll(async () => {
  buildBaseImage(work, baseOci);
  server = await startCacheServer(join(work, "data"), ["--token", TOKEN]);
  // Root runs chromium without its user-namespace sandbox (it has none to drop into here).
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: ["--no-sandbox"] });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(work, { recursive: true, force: true });
});

let count = 0;

/** A build whose RUN "downloads" `files` into the npm cache mount (those it lacks), publishing it. */
async function build(machine: string, files: string[]) {
  const writes = files.map((f) => `[ -f /root/.npm/${f} ] || echo package-${f}-${"x".repeat(2000)} > /root/.npm/${f}`).join("; ");
  const dir = writeProject(join(work, `project-${++count}`), { Dockerfile: `FROM memobuild/busybox\nRUN --mount=type=cache,id=npm,target=/root/.npm,sharing=locked sh -c '${writes}; echo ${count} > /done'\n` });
  const child = Bun.spawn([memobuildBinary(), "build", dir, "--cache-dir", machine, "--remote", server.url, "--remote-token", TOKEN, "--remote-cache-mounts", "on", "--progress", "plain"], { stdout: "ignore", stderr: "pipe" });
  const [stderr, exitCode] = await Promise.all([new Response(child.stderr).text(), child.exited]);
  expect({ exitCode, stderr: exitCode ? stderr : "" }).toEqual({ exitCode: 0, stderr: "" });
}

test("the cache page shows each shared mount's versions, files changed per publish, and the time its fetches saved", async () => {
  const a = machineWithBase(join(work, "machine-a"), baseOci);
  const b = machineWithBase(join(work, "machine-b"), baseOci);
  const packages = Array.from({ length: 20 }, (_, i) => `p${i}.tgz`);
  await build(a, packages); // version 1: 20 files
  await build(b, [...packages, "q.tgz"]); // B fetches all 20, adds one: version 2
  await build(a, [...packages, "q.tgz", "r.tgz"]); // A had 20 of 21: fetches one, adds one: version 3

  const page = await browser.newPage({ viewport: { width: 1500, height: 900 } });
  await page.goto(server.url);
  await page.fill("#token", TOKEN);
  await page.click("button[type=submit]");
  await page.click('nav a[href="#/cache"]');
  const row = await page.waitForSelector('table.mounts tr[data-mount="npm"]');
  const cells = await row.$$eval("td", (tds) => tds.map((td) => td.textContent));
  expect(cells.slice(0, 4)).toEqual(["npm", "–", "3", "22 files, 43.3 KiB"]);
  expect(cells[5]).toBe("1 · 1 · 20"); // files changed by each publish, newest first
  expect(cells.slice(7, 10)).toEqual(["2", "21 files, 41.4 KiB", "20 files, 39.4 KiB"]);
  expect(cells[10]).toMatch(/^\d+(\.\d)? (ms|s)$/);
  expect(await page.textContent("main")).toContain("Time saved is an estimate: each fetch reports the files it did not download because the machine already had them");
  if (process.env.MEMOBUILD_SHOTS) {
    mkdirSync(process.env.MEMOBUILD_SHOTS, { recursive: true });
    await page.screenshot({ path: join(process.env.MEMOBUILD_SHOTS, "dashboard-cache-mounts.png"), fullPage: true });
  }
  await page.close();
}, 180_000);
