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
  // One stage of a build spread over workers: the job names its hub build and its stage.
  const running = (await (await post("/v1/jobs", TOKEN, { definition: { version: 1, build: "build-hostile-1", target: "deps" }, hints: [] })).json()) as { id: string };
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
  // The job, in the queue and as what the worker runs, links its build on the hub and names its stage.
  for (const row of [`tr[data-job="${running.id}"]`, 'tr[data-worker="runner-1"]']) {
    expect(await page.getAttribute(`${row} a.job-build`, "href")).toBe("#/builds/build-hostile-1");
    expect(await page.textContent(`${row} .stage`)).toBe("stage deps");
  }
  expect(await page.$(`tr[data-job="${waiting.id}"] a.job-build`)).toBeNull();
  expect(await page.evaluate(() => window.pwned)).toBeUndefined();
  expect(await screenshot(page, "dashboard-workers.png")).toBeGreaterThan(20);
  await page.close();
}, 60_000);

test("the Workers page shows each worker's steps run and cached, and its hit rate", async () => {
  const post = (path: string, token: string, body: unknown) => fetch(`${server.url}${path}`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify(body) });
  await post("/v1/jobs", TOKEN, { definition: { version: 1 }, hints: [] });
  const claimed = (await (await post("/v1/workers/claim", WORKER_TOKEN, { name: "runner-2", labels: {} })).json()) as { id: string; lease: string };
  const steps = ["executed", "cached-local", "cached-local", "cached-remote"].map((status, i) => ({ id: `s/${i}`, status }));
  expect((await post(`/v1/jobs/${claimed.id}/finish`, WORKER_TOKEN, { lease: claimed.lease, result: { steps } })).status).toBe(200);
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  await page.goto(server.url);
  await page.fill("#token", TOKEN);
  await page.click("button[type=submit]");
  await page.click('nav a[href="#/workers"]');
  await page.waitForSelector('tr[data-worker="runner-2"]');
  const cell = (name: string) => page.textContent(`tr[data-worker="runner-2"] td.${name}`);
  expect([await cell("steps-run"), await cell("steps-cached"), await cell("hit-rate")]).toEqual(["1", "3", "75%"]);
  await page.close();
}, 60_000);

test("a build's page names the worker of each step of a build run on a worker", async () => {
  const now = Date.now();
  const events = [
    { type: "build.started", seq: 1, time: now, dockerfile: "Dockerfile", platform: "linux/amd64", host: "laptop", labels: {}, steps: [{ id: "s/0", stage: "s", number: 1, name: "[s 1/1] RUN make" }] },
    { type: "step.updated", seq: 2, time: now, step: "s/0", state: "executed", durationMs: 5, worker: "ci-runner-7" },
    { type: "build.finished", seq: 3, time: now, result: "success", durationMs: 5, executed: 1, cached: 0, savedMs: 0 },
  ];
  expect((await fetch(`${server.url}/v1/builds/build-on-worker-1/events`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}` }, body: JSON.stringify({ events }) })).status).toBe(200);
  const page = await browser.newPage();
  await page.goto(server.url);
  await page.fill("#token", TOKEN);
  await page.click("button[type=submit]");
  await page.goto(`${server.url}/#/builds/build-on-worker-1`);
  await page.waitForSelector('tr[data-step="s/0"]');
  expect(await page.textContent('tr[data-step="s/0"] .worker')).toBe("worker ci-runner-7");
  await page.close();
}, 60_000);

/** Logs a new page in with the token; returns it at the list. */
async function loggedIn(viewport = { width: 1280, height: 900 }): Promise<Page> {
  const page = await browser.newPage({ viewport });
  await page.goto(server.url);
  await page.fill("#token", TOKEN);
  await page.click("button[type=submit]");
  await page.waitForSelector('[data-live="true"]');
  return page;
}

test("a failed build's page: which step failed and what it printed first, who built what from which commit, the command to rerun it, the timeline with the failed step drawn", async () => {
  const dir = writeProject(join(work, "widget"), { Dockerfile: "FROM memobuild/busybox AS app\nRUN echo preparing > /p\nRUN sleep 0.4 && echo 'cc: error: main.c:3: expected ;' && exit 2\nRUN echo never\n" });
  const git = (...args: string[]) => expect(Bun.spawnSync(["git", "-C", dir, "-c", "user.email=t@e", "-c", "user.name=t", ...args], { env: { ...process.env, GIT_CONFIG_GLOBAL: "/dev/null" } }).exitCode).toBe(0);
  git("init", "-q", "-b", "fix/parser");
  git("add", ".");
  git("commit", "-qm", "one");
  git("remote", "add", "origin", "https://github.com/acme/widget.git");
  const build = Bun.spawn([memobuildBinary(), "build", dir, "--cache-dir", machineWithBase(join(work, "cache-widget"), baseOci), "--remote", server.url, "--remote-token", TOKEN, "-t", "widget:fix", "--build-arg", "API_KEY=do-not-show-me"], { stdout: "ignore", stderr: "pipe", env: { ...process.env, SUDO_USER: "ana" } });
  expect(await build.exited).toBe(1);

  const page = await loggedIn();
  await page.waitForSelector('tr[data-result="failed"] >> text=widget');
  await page.click('tr[data-result="failed"] a >> text=widget');
  await page.waitForSelector("section.failure");
  const failure = (await page.textContent("section.failure"))!;
  expect(failure).toContain("Failed at step 3");
  expect(failure).toContain("cc: error: main.c:3: expected ;");
  const facts = (await page.textContent("dl.facts"))!;
  for (const fact of ["widget", "https://github.com/acme/widget.git", "fix/parser", "ana", "app", "widget:fix"]) expect(facts).toContain(fact);
  const invocation = (await page.textContent("pre.invocation"))!;
  expect(invocation).toContain(`memobuild build ${dir}`);
  expect(invocation).toContain("API_KEY=***");
  expect(await page.textContent("main")).not.toContain("do-not-show-me");
  // Every step final, drawn: the failed one named on the timeline with its bar.
  expect((await page.$$eval("table.steps tr[data-state]", (rows) => rows.map((r) => r.getAttribute("data-state")))).slice(1)).toEqual(["executed", "failed", "skipped"]);
  expect(await page.textContent('svg.waterfall g.row[data-state="failed"]')).toContain("RUN sleep 0.4");
  expect(await page.$$("svg.waterfall text.axis")).not.toHaveLength(0);
  expect(await screenshot(page, "dashboard-failed-build.png")).toBeGreaterThan(20);
  await page.close();
}, 120_000);

test("the list filters by project, branch, result, label, user and text; the filters are in the URL, and typing survives the live redraws", async () => {
  const report = (id: string, started: Record<string, unknown>, result: "success" | "failed") =>
    fetch(`${server.url}/v1/builds/${id}/events`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({
        events: [
          { type: "build.started", seq: 1, time: Date.now(), dockerfile: "Dockerfile", platform: "linux/amd64", host: "laptop", labels: {}, steps: [], ...started },
          { type: "build.finished", seq: 2, time: Date.now() + 500, result, durationMs: 500, executed: 1, cached: 1, savedMs: 10 },
        ],
      }),
    });
  expect((await report("build-filter-a1", { project: "gadget", user: "bo", git: { branch: "main", commit: "a".repeat(40) }, labels: { team: "ops" }, tags: ["gadget:1"] }, "success")).status).toBe(200);
  expect((await report("build-filter-a2", { project: "gadget", user: "cy", git: { branch: "release", commit: "b".repeat(40), dirty: true }, labels: { team: "web" } }, "failed")).status).toBe(200);
  expect((await report("build-filter-a3", { project: "sprocket", user: "bo", git: { branch: "main" } }, "success")).status).toBe(200);

  const page = await loggedIn();
  await page.waitForSelector('tr[data-build="build-filter-a3"]');
  expect(await screenshot(page, "dashboard-list.png")).toBeGreaterThan(20);
  const listed = () => page.$$eval("table.builds tbody tr", (rows) => rows.map((r) => r.getAttribute("data-build")));
  await page.fill('form.filters input[name="project"]', "gadget");
  await page.waitForFunction(() => (globalThis as unknown as { location: { hash: string } }).location.hash.includes("project=gadget"));
  await page.waitForSelector('tr[data-build="build-filter-a3"]', { state: "detached" });
  expect((await listed()).sort()).toEqual(["build-filter-a1", "build-filter-a2"]);
  await page.selectOption('form.filters select[name="result"]', "failed");
  await page.waitForSelector('tr[data-build="build-filter-a1"]', { state: "detached" });
  expect(await listed()).toEqual(["build-filter-a2"]);
  await page.selectOption('form.filters select[name="result"]', "");
  // Typing across a redraw (the list redraws every second): every key lands.
  await page.type('form.filters input[name="q"]', "gadget:1", { delay: 150 });
  expect(await page.inputValue('form.filters input[name="q"]')).toBe("gadget:1");
  await page.waitForSelector('tr[data-build="build-filter-a2"]', { state: "detached" });
  expect(await listed()).toEqual(["build-filter-a1"]);
  expect(await screenshot(page, "dashboard-filters.png")).toBeGreaterThan(20);
  await page.fill('form.filters input[name="q"]', "");
  await page.fill('form.filters input[name="project"]', "");
  for (const [name, value, expected] of [["branch", "release", ["build-filter-a2"]], ["label", "team=ops", ["build-filter-a1"]], ["user", "bo", ["build-filter-a3", "build-filter-a1"]]] as const) {
    await page.fill(`form.filters input[name="${name}"]`, value);
    await page.waitForFunction((n) => (globalThis as unknown as { location: { hash: string } }).location.hash.includes(`${n}=`), name);
    await page.waitForFunction((want) => JSON.stringify([...(globalThis as unknown as { document: { querySelectorAll(s: string): { getAttribute(a: string): string }[] } }).document.querySelectorAll("table.builds tbody tr")].map((r) => r.getAttribute("data-build"))) === want, JSON.stringify(expected));
    await page.fill(`form.filters input[name="${name}"]`, "");
  }
  // A filtered list is a link: opened afresh, the same builds and the same fields.
  const shared = await loggedIn();
  await shared.goto(`${server.url}/#/?project=gadget&result=failed`);
  await shared.reload();
  await shared.waitForSelector('tr[data-build="build-filter-a2"]');
  expect(await shared.$$eval("table.builds tbody tr", (rows) => rows.map((r) => r.getAttribute("data-build")))).toEqual(["build-filter-a2"]);
  expect(await shared.inputValue('form.filters input[name="project"]')).toBe("gadget");
  // The projects page: each project's duration and hit rate over time.
  await shared.click('nav a[href="#/projects"]');
  await shared.waitForSelector('section.project[data-project="gadget"] svg[aria-label="duration over time"]');
  expect(await screenshot(shared, "dashboard-projects.png")).toBeGreaterThan(20);
  await shared.close();
  await page.close();
}, 120_000);

test("a running build's hit rate leaves out config-only steps (FROM, ENV…), as its final one does", async () => {
  const page = await loggedIn();
  const post = (events: unknown[]) => fetch(`${server.url}/v1/builds/build-config-only-1/events`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}` }, body: JSON.stringify({ events }) });
  const now = Date.now();
  const steps = [{ id: "0/0", stage: "0", number: 1, name: "[1/3] FROM base" }, { id: "0/1", stage: "0", number: 2, name: "[2/3] RUN make" }, { id: "0/2", stage: "0", number: 3, name: "[3/3] RUN test" }];
  expect((await post([{ type: "build.started", seq: 1, time: now, dockerfile: "Dockerfile", platform: "linux/amd64", host: "laptop", labels: {}, project: "config-only", steps }])).status).toBe(200);
  await page.waitForSelector('tr[data-build="build-config-only-1"]');
  expect((await post([
    { type: "step.updated", seq: 2, time: now + 1, step: "0/0", state: "executed", durationMs: 0, configOnly: true },
    { type: "step.updated", seq: 3, time: now + 2, step: "0/1", state: "cached-local", durationMs: 1, savedMs: 900 },
  ])).status).toBe(200);
  // One step decided, a hit: 100% (not one run and one hit, 50%); the FROM reads "config".
  await page.waitForFunction(() => (globalThis as unknown as { document: { querySelector(s: string): { textContent: string } | null } }).document.querySelector('tr[data-build="build-config-only-1"] td:nth-child(5)')?.textContent === "100%");
  expect(await page.textContent('.live[data-build="build-config-only-1"] [data-step="0/0"] .step-meta')).toBe("config");
  await page.close();
}, 60_000);

test("every page opens without an error in the browser's console (no request answered 404: not even an icon)", async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors: string[] = [];
  page.on("console", (message) => void (message.type() === "error" && errors.push(message.text())));
  page.on("pageerror", (error) => void errors.push(String(error)));
  await page.goto(server.url);
  await page.fill("#token", TOKEN);
  await page.click("button[type=submit]");
  await page.waitForSelector('[data-live="true"]');
  for (const route of ["projects", "cache", "workers"]) {
    await page.click(`nav a[href="#/${route}"]`);
    await page.waitForSelector("main section, main p.muted");
  }
  await Bun.sleep(500);
  expect(errors).toEqual([]);
  await page.close();
}, 60_000);
