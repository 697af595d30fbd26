/**
 * The dashboard in a real browser (Debian's chromium, driven by playwright-core, headless): log
 * in with a token, start a real build, watch it appear and its steps go from running to done
 * without a reload, open its page, and keep screenshots (test-artifacts/) that are checked not
 * to be blank. Every request the page makes goes to the server itself.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { memobuildBinary, REPO_ROOT } from "./support/binary.ts";
import { buildBaseImage, machineWithBase, writeProject } from "./support/base-image.ts";
import { startCacheServer, type CacheServer } from "./support/server.ts";

// Code passed to page.evaluate runs in the browser; the project's types have no DOM.
declare const window: Record<string, unknown>;
declare const document: { createElement(tag: "canvas"): { width: number; height: number; getContext(kind: "2d"): { drawImage(image: unknown, x: number, y: number): void; getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } } | null } };
declare const Image: new () => { src: string; width: number; height: number; decode(): Promise<void> };

const work = mkdtempSync(join(tmpdir(), "memobuild-dashboard-"));
const ARTIFACTS = join(REPO_ROOT, "test-artifacts");
const TOKEN = "dashboard-token-for-tests";
const WORKER_TOKEN = "dashboard-worker-token";
const baseOci = join(work, "base-oci");
let browser: Browser;
let server: CacheServer;

beforeAll(async () => {
  buildBaseImage(work, baseOci);
  server = await startCacheServer(join(work, "data"), ["--token", TOKEN, "--worker-token", WORKER_TOKEN]);
  // Root runs chromium without its user-namespace sandbox (it has none to drop into here).
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: ["--no-sandbox"] });
  mkdirSync(ARTIFACTS, { recursive: true });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  rmSync(work, { recursive: true, force: true });
});

/** How many different colours a screenshot has: a blank page has one or two. */
async function colours(page: Page, png: Buffer): Promise<number> {
  return page.evaluate(async (data) => {
    const image = new Image();
    image.src = `data:image/png;base64,${data}`;
    await image.decode();
    const canvas = document.createElement("canvas");
    canvas.width = image.width;
    canvas.height = image.height;
    const context = canvas.getContext("2d")!;
    context.drawImage(image, 0, 0);
    const pixels = context.getImageData(0, 0, image.width, image.height).data;
    const seen = new Set<number>();
    for (let i = 0; i < pixels.length; i += 4) seen.add((pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2]);
    return seen.size;
  }, png.toString("base64"));
}

async function screenshot(page: Page, name: string): Promise<number> {
  const png = await page.screenshot({ fullPage: true });
  writeFileSync(join(ARTIFACTS, name), png);
  return colours(page, png);
}

test("log in, watch a build live, open its page", async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const elsewhere: string[] = [];
  const origin = new URL(server.url).host;
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (url.protocol !== "data:" && url.host !== origin) elsewhere.push(request.url());
  });

  await page.goto(server.url);
  await page.fill("#token", "not-the-token");
  await page.click("button[type=submit]");
  await page.waitForSelector("text=That token is not valid.");
  await page.fill("#token", TOKEN);
  await page.click("button[type=submit]");
  await page.waitForSelector("text=Nothing is building right now.");
  await page.waitForSelector('[data-live="true"]');
  // Set in this page only: still there at the end means the page never reloaded.
  await page.evaluate(() => (window.stayed = true));

  const dir = writeProject(join(work, "app"), { Dockerfile: "FROM memobuild/busybox\nRUN sleep 1.5 && echo one > /1\nRUN sleep 1.5 && echo two > /2\n" });
  const cache = machineWithBase(join(work, "cache"), baseOci);
  const build = Bun.spawn([memobuildBinary(), "build", dir, "--cache-dir", cache, "--remote", server.url, "--remote-token", TOKEN, "--build-label", "demo=dashboard"], { stdout: "ignore", stderr: "pipe" });

  // The build appears, its first RUN runs, then is done while the second runs.
  await page.waitForSelector('.live [data-step="0/1"][data-state="running"]', { timeout: 30_000 });
  await page.waitForSelector('.live [data-step="0/1"][data-state="executed"]', { timeout: 30_000 });
  await page.waitForSelector('.live [data-step="0/2"][data-state="running"]', { timeout: 30_000 });
  expect(await screenshot(page, "dashboard-live.png")).toBeGreaterThan(20);
  expect(await build.exited).toBe(0);
  await page.waitForSelector('tr[data-result="success"]', { timeout: 30_000 });
  expect(await page.evaluate(() => window.stayed)).toBe(true);

  await page.click('tr[data-result="success"] a');
  await page.waitForSelector('table.steps tr[data-step="0/2"][data-state="executed"]');
  const text = await page.textContent("main");
  expect(text).toContain("demo=dashboard");
  expect(text).toContain("RUN sleep 1.5 && echo two > /2");
  expect(text).toContain("no earlier build of this step to compare with");
  expect(await page.$("svg.waterfall")).not.toBeNull();
  expect(await screenshot(page, "dashboard-build.png")).toBeGreaterThan(20);

  await page.click('nav a[href="#/cache"]');
  await page.waitForSelector("svg.chart.line");
  expect(await page.textContent("main")).toContain("Steps that miss most");
  await page.waitForSelector("text=No shared cache mount yet"); // the cache mounts panel, from GET /v1/mounts
  expect(await screenshot(page, "dashboard-cache.png")).toBeGreaterThan(20);

  expect(elsewhere).toEqual([]);
  await page.close();
}, 120_000);

test("what builds report is shown as text, never run as markup", async () => {
  const hostile = `<img src=x onerror="window.pwned=1">`;
  const events = [
    { type: "build.started", seq: 1, time: Date.now(), dockerfile: hostile, target: "<b>t</b>", platform: "linux/amd64", host: hostile, labels: { [hostile]: hostile }, ci: { provider: "ci", url: "javascript:window.pwned=2" }, steps: [{ id: "s/1", stage: hostile, number: 1, name: `<script>window.pwned=3</script>` }] },
    { type: "step.updated", seq: 2, time: Date.now(), step: "s/1", state: "failed", tail: [hostile], reasons: [hostile] },
    { type: "build.finished", seq: 3, time: Date.now(), result: "failed", durationMs: 5, executed: 0, cached: 0, savedMs: 0, error: hostile },
  ];
  const posted = await fetch(`${server.url}/v1/builds/build-hostile-1/events`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}` }, body: JSON.stringify({ events }) });
  expect(posted.status).toBe(200);
  const page = await browser.newPage();
  await page.goto(server.url);
  await page.fill("#token", TOKEN);
  await page.click("button[type=submit]");
  await page.waitForSelector('tr[data-build="build-hostile-1"]');
  await page.goto(`${server.url}/#/builds/build-hostile-1`);
  await page.waitForSelector("pre.output");
  expect(await page.textContent("main")).toContain(hostile);
  expect(await page.$("main img")).toBeNull();
  expect(await page.$('a[href^="javascript:"]')).toBeNull();
  expect(await page.evaluate(() => window.pwned)).toBeUndefined();
  await page.close();
}, 60_000);

test("the Workers page shows the queue, where each remote build runs, and the workers, as text", async () => {
  const hostile = `<img src=x onerror="window.pwned=1">`;
  const post = (path: string, token: string, body: unknown) => fetch(`${server.url}${path}`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify(body) });
  const running = (await (await post("/v1/jobs", TOKEN, { definition: { version: 1 }, hints: [] })).json()) as { id: string };
  const claimed = (await (await post("/v1/workers/claim", WORKER_TOKEN, { name: "runner-1", labels: { zone: hostile } })).json()) as { id: string };
  expect(claimed.id).toBe(running.id);
  const waiting = (await (await post("/v1/jobs", TOKEN, { definition: { version: 1 }, hints: [] })).json()) as { id: string };
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  await page.goto(server.url);
  await page.fill("#token", TOKEN);
  await page.click("button[type=submit]");
  await page.click('nav a[href="#/workers"]');
  await page.waitForSelector(`tr[data-job="${running.id}"][data-state="running"]`);
  await page.waitForSelector(`tr[data-job="${waiting.id}"][data-state="queued"]`);
  const text = await page.textContent("main");
  expect(text).toContain("1 build(s) waiting for a worker");
  expect(await page.textContent('tr[data-worker="runner-1"]')).toContain(`zone=${hostile}`);
  expect(await page.evaluate(() => window.pwned)).toBeUndefined();
  expect(await screenshot(page, "dashboard-workers.png")).toBeGreaterThan(20);
  await page.close();
}, 60_000);
