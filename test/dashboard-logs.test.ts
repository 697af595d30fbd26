/**
 * The dashboard in a real browser (Debian's chromium, playwright-core, headless) for what a team
 * lead reads beyond states: a running step's output as it is printed (secrets masked), and the
 * non-deterministic steps with the files that differed and the builds on both sides, apart from
 * real conflicts. Screenshots go to test-artifacts/ (or $MEMOBUILD_SCREENSHOTS) and are checked
 * not to be blank.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { memobuildBinary, REPO_ROOT, runMemobuildAsync } from "./support/binary.ts";
import { buildBaseImage, machineWithBase, writeProject } from "./support/base-image.ts";
import { startCacheServer, type CacheServer } from "./support/server.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-dashboard-logs-"));
const SHOTS = process.env.MEMOBUILD_SCREENSHOTS ?? join(REPO_ROOT, "test-artifacts");
const TOKEN = "dashboard-logs-token";
const OTHER = "dashboard-logs-other-token";
const baseOci = join(work, "base-oci");
let browser: Browser;
let server: CacheServer;

beforeAll(async () => {
  buildBaseImage(work, baseOci);
  server = await startCacheServer(join(work, "data"), ["--token", TOKEN, "--token", OTHER]);
  // Root runs chromium without its user-namespace sandbox (it has none to drop into here).
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: ["--no-sandbox"] });
  mkdirSync(SHOTS, { recursive: true });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(work, { recursive: true, force: true });
});

/** How many different colours a screenshot has: a blank page has one or two. */
async function screenshot(page: Page, name: string): Promise<number> {
  const png = await page.screenshot({ fullPage: true });
  writeFileSync(join(SHOTS, name), png);
  const pixels = await page.evaluate(async (data) => {
    const image = new Image();
    image.src = `data:image/png;base64,${data}`;
    await image.decode();
    const canvas = document.createElement("canvas");
    canvas.width = image.width;
    canvas.height = image.height;
    const context = canvas.getContext("2d")!;
    context.drawImage(image, 0, 0);
    const bytes = context.getImageData(0, 0, image.width, image.height).data;
    const seen = new Set<number>();
    for (let i = 0; i < bytes.length; i += 4) seen.add((bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2]);
    return seen.size;
  }, png.toString("base64"));
  return pixels;
}

// Code passed to page.evaluate runs in the browser; the project's types have no DOM.
declare const window: Record<string, unknown>;
declare const document: { createElement(tag: "canvas"): { width: number; height: number; getContext(kind: "2d"): { drawImage(image: unknown, x: number, y: number): void; getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } } | null } };
declare const Image: new () => { src: string; width: number; height: number; decode(): Promise<void> };

async function login(page: Page) {
  await page.goto(server.url);
  await page.fill("#token", TOKEN);
  await page.click("button[type=submit]");
  await page.waitForSelector('[data-live="true"]');
}

test("a running step's output shows as it is printed, secrets masked, and stays after the build", async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  await login(page);
  await page.evaluate(() => (window.stayed = true));
  const dir = writeProject(join(work, "live"), {
    Dockerfile: "FROM memobuild/busybox\nRUN --mount=type=secret,id=api echo compiling with $(cat /run/secrets/api) && sleep 2 && echo linking && sleep 2 && echo done\n",
  });
  const build = Bun.spawn(
    [memobuildBinary(), "build", dir, "--cache-dir", machineWithBase(join(work, "machine-live"), baseOci), "--remote", server.url, "--remote-token", TOKEN, "--secret", "id=api,env=API_KEY"],
    { stdout: "ignore", stderr: "pipe", env: { ...process.env, API_KEY: "sk-live-0123456789" } },
  );
  await page.waitForSelector('.live [data-step="0/1"][data-state="running"]', { timeout: 30_000 });
  await page.click(".live header a");
  await page.click('table.steps tr[data-step="0/1"] a.log-link');
  // Printed before the step ends, read while it runs; then a later line arrives without a reload.
  await page.waitForSelector("pre.log >> text=compiling with ****", { timeout: 30_000 });
  expect(await page.getAttribute("[data-log-state]", "data-log-state")).toBe("running");
  await page.waitForSelector("pre.log >> text=linking", { timeout: 30_000 });
  expect(await page.getAttribute("[data-log-state]", "data-log-state")).toBe("running");
  expect(await screenshot(page, "dashboard-step-log-live.png")).toBeGreaterThan(20);
  expect(await build.exited).toBe(0);
  await page.waitForSelector('[data-log-state="executed"]', { timeout: 30_000 });
  expect(await page.textContent("pre.log")).toBe("compiling with ****\nlinking\ndone\n");
  expect(await page.textContent("main")).not.toContain("sk-live-0123456789");
  expect(await page.evaluate(() => window.stayed)).toBe(true);
  // Afterwards, from the server alone: a new page reads the log back.
  const url = page.url();
  await page.goto("about:blank");
  await page.goto(url);
  await page.waitForSelector("pre.log >> text=linking");
  expect(await page.textContent("pre.log")).toBe("compiling with ****\nlinking\ndone\n");
  expect(await screenshot(page, "dashboard-step-log-after.png")).toBeGreaterThan(20);
  // The text endpoint says the same, the secret masked there too.
  const text = await page.evaluate(async (path) => (await fetch(path)).text(), (await page.getAttribute('a[href$="/log"]', "href"))!);
  expect(text).toBe("compiling with ****\nlinking\ndone\n");
  await page.click("text=← the build");
  await page.waitForSelector('table.steps tr[data-step="0/1"] a.log-link');
  expect(await screenshot(page, "dashboard-build-outputs.png")).toBeGreaterThan(20);
  await page.close();
}, 120_000);

test("the cache page names the non-deterministic steps, the files that differed and both builds, apart from conflicts", async () => {
  const dir = writeProject(join(work, "dates"), { Dockerfile: "FROM memobuild/busybox AS build\nRUN date > /d\n" });
  const machine = machineWithBase(join(work, "machine-dates"), baseOci);
  const remote = (token: string) => ["--remote", server.url, "--remote-token", token];
  const nextSecond = () => Bun.sleep(1000 - (Date.now() % 1000) + 50); // `date` prints seconds
  expect((await runMemobuildAsync(["build", dir, "--cache-dir", machine, ...remote(TOKEN)])).exitCode).toBe(0);
  for (let i = 0; i < 2; i++) {
    await nextSecond();
    expect((await runMemobuildAsync(["build", dir, "--cache-dir", machine, "--no-cache", ...remote(TOKEN)])).exitCode).toBe(0);
  }
  await nextSecond();
  expect((await runMemobuildAsync(["build", dir, "--cache-dir", machineWithBase(join(work, "machine-other"), baseOci), "--no-cache", ...remote(OTHER)])).exitCode).toBe(0);

  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  await login(page);
  await page.click('nav a[href="#/cache"]');
  await page.waitForSelector('[data-panel="nondeterministic"] tr[data-nondeterministic]');
  const panel = (await page.textContent('[data-panel="nondeterministic"]'))!;
  expect(panel).toContain("[build 2/2] RUN date > /d");
  expect(panel).toContain("2×");
  expect(panel).toContain("/d");
  expect(panel).toContain("content");
  expect(await page.$$eval('[data-panel="nondeterministic"] tr[data-unreproducible]', (rows) => rows.length)).toBe(2);
  const conflicts = (await page.textContent('[data-panel="conflicts"]'))!;
  expect(conflicts).toContain("[build 2/2] RUN date > /d");
  expect(await page.$$eval('[data-panel="conflicts"] tr[data-conflict] a.build-link', (links) => links.length)).toBe(2);
  expect(await screenshot(page, "dashboard-nondeterministic.png")).toBeGreaterThan(20);
  // Each side links to its build's page.
  const first = await page.getAttribute('[data-panel="nondeterministic"] tr[data-unreproducible] a.build-link', "href");
  await page.click('[data-panel="nondeterministic"] tr[data-unreproducible] a.build-link');
  await page.waitForSelector("table.steps >> text=RUN date > /d");
  expect(page.url()).toEndWith(first!);
  await page.close();
}, 120_000);
