/**
 * The dashboard in the browser: loads the recent builds, then follows GET /v1/events (a
 * WebSocket) and redraws what changed. A dropped connection reconnects from the last event id it
 * saw, so nothing is missed. Plain TypeScript bundled by `bun build`: a few kilobytes, nothing to
 * download from elsewhere, quick on a slow laptop.
 */
import { esc } from "./format.ts";
import { buildPage, buildsPage, cachePage, workersPage, type Build, type Job, type Stats, type Step, type Worker } from "./views.ts";
import type { MountScopeInfo } from "../../remote/mount-types.ts";
import { appendLog, stepLogPage, type StepLogView } from "./logs.ts";

interface HubEvent {
  id: number;
  type: string;
  build: string;
  time: number;
  [field: string]: unknown;
}

const builds = new Map<string, Build>();
let lastEvent = 0;
let stats: Stats | undefined;
let mounts: MountScopeInfo[] = [];
let statsLoaded = 0;
let connected = false;
let queue: { jobs: Job[]; depth: number; workers: Worker[] } | undefined;
let queueLoaded = 0;

/** Step logs opened in this page, by "build step-id": kept live from the WebSocket. */
const logs = new Map<string, StepLogView>();
const logKey = (build: string, step: string) => `${build} ${step}`;

const app = document.getElementById("app")!;

async function api<T>(path: string): Promise<T> {
  const response = await fetch(path, { credentials: "same-origin" });
  if (response.status === 401) {
    location.reload(); // the session ended: the server shows the login page
    throw new Error("logged out");
  }
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return (await response.json()) as T;
}

async function loadBuilds() {
  const list = await api<{ builds: Build[]; lastEvent: number }>("/v1/builds?per_page=50");
  for (const build of list.builds) builds.set(build.id, { ...builds.get(build.id), ...build });
  lastEvent = Math.max(lastEvent, list.lastEvent);
  await Promise.all(list.builds.filter((b) => b.result === "running").map((b) => loadBuild(b.id)));
}

async function loadBuild(id: string) {
  const build = await api<Build>(`/v1/builds/${encodeURIComponent(id)}`);
  builds.set(id, build);
  redraw();
}

/** Reads a step's log once; step.log events keep it up to date from then on. */
async function loadLog(build: Build, number: number) {
  const step = build.steps?.find((s) => s.number === number);
  if (!step || logs.has(logKey(build.id, step.id))) return;
  const view: StepLogView = { text: "", lastEvent: Number.MAX_SAFE_INTEGER }; // events wait for the read
  logs.set(logKey(build.id, step.id), view);
  const response = await fetch(`/v1/builds/${encodeURIComponent(build.id)}/steps/${number}/log`, { credentials: "same-origin" }).catch(() => undefined);
  const text = response?.ok ? await response.text().catch(() => undefined) : undefined;
  // Output that came while the log was read: appended below when the read did not include it.
  const mine = (event: HubEvent) => event.build === build.id && event.step === step.id;
  const waited = early.filter(mine);
  early.splice(0, early.length, ...early.filter((event) => !mine(event)));
  if (text === undefined) {
    logs.delete(logKey(build.id, step.id)); // read again when the page is drawn next
    throw new Error(`step ${number}'s output: ${response ? `HTTP ${response.status}` : "the server did not answer"}`);
  }
  view.text = text;
  view.lastEvent = Number(response!.headers.get("memobuild-last-event") ?? 0);
  for (const event of waited) appendLog(view, String(event.text), event.id);
  redraw();
}
/** step.log events for logs being read, held until the read says which ones it had. */
const early: HubEvent[] = [];

function apply(event: HubEvent) {
  lastEvent = Math.max(lastEvent, event.id);
  const build = builds.get(event.build);
  switch (event.type) {
    case "build.started": {
      const { id: _id, type: _type, seq: _seq, time, build: id, steps, ...info } = event as HubEvent & { steps: Omit<Step, "state">[] };
      builds.set(id, { ...(info as unknown as Build), id, result: "running", started: time, executed: 0, cached: 0, savedMs: 0, steps: steps.map((s) => ({ ...s, state: "queued" })) });
      break;
    }
    case "step.updated": {
      if (!build) return void loadBuild(event.build).catch(() => {});
      const step = build.steps?.find((s) => s.id === event.step);
      if (!step) return;
      const { id: _id, type: _type, seq: _seq, time, build: _build, step: _step, ...change } = event;
      Object.assign(step, change);
      if (change.state === "running") step.started = time;
      if (change.state === "executed") build.executed++;
      if (change.state === "cached-local" || change.state === "cached-remote") {
        build.cached++;
        build.savedMs += (change.savedMs as number | undefined) ?? 0;
      }
      build.hitRate = build.cached / Math.max(1, build.executed + build.cached);
      break;
    }
    case "step.log": {
      const view = logs.get(logKey(event.build, String(event.step)));
      if (!view) return;
      if (view.lastEvent === Number.MAX_SAFE_INTEGER) early.push(event);
      else appendLog(view, String(event.text), event.id);
      break;
    }
    case "build.finished": {
      if (!build) return void loadBuild(event.build).catch(() => {});
      const { id: _id, type: _type, seq: _seq, time, build: _build, ...outcome } = event;
      Object.assign(build, outcome, { finished: time });
      build.hitRate = build.executed + build.cached > 0 ? build.cached / (build.executed + build.cached) : undefined;
      break;
    }
    case "resync":
      void loadBuilds().then(redraw);
      return;
  }
  redraw();
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/v1/events?since=${lastEvent}`);
  socket.onopen = () => {
    connected = true;
    redraw();
  };
  socket.onmessage = (message) => apply(JSON.parse(String(message.data)) as HubEvent);
  socket.onclose = () => {
    connected = false;
    redraw();
    // Resumes after the last event seen; the server replays what was missed.
    setTimeout(connect, 1000);
  };
}

let pending = false;
function redraw() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    render();
  });
}

function render() {
  const now = Date.now();
  const route = location.hash.replace(/^#/, "") || "/";
  const nav = (path: string, text: string, active: boolean) => `<a href="#${path}"${active ? ' class="active"' : ""}>${text}</a>`;
  const header = `<header class="top"><h1>MemoBuild</h1><nav>${nav("/", "Builds", route === "/" || route.startsWith("/builds/"))}${nav("/cache", "Cache", route === "/cache")}${nav("/workers", "Workers", route === "/workers")}</nav>
<span class="live-state ${connected ? "on" : "off"}" data-live="${connected}">${connected ? "live" : "reconnecting…"}</span>
<form method="post" action="/logout"><button type="submit" class="link">Log out</button></form></header>`;
  let body: string;
  const match = /^\/builds\/([^/]+)$/.exec(route);
  const stepMatch = /^\/builds\/([^/]+)\/steps\/(\d+)$/.exec(route);
  if (stepMatch) {
    const id = decodeURIComponent(stepMatch[1]);
    const number = Number(stepMatch[2]);
    const build = builds.get(id);
    if (build?.steps) {
      const step = build.steps.find((s) => s.number === number);
      const view = step && logs.get(logKey(id, step.id));
      body = stepLogPage(build, number, view && view.lastEvent !== Number.MAX_SAFE_INTEGER ? view : undefined);
      if (step && !view) void loadLog(build, number).catch((e) => (app.innerHTML = `${header}<p class="error">${esc((e as Error).message)}</p>`));
    } else {
      body = '<p class="muted">Loading…</p>';
      void loadBuild(id).catch((e) => (app.innerHTML = `${header}<p class="error">${esc((e as Error).message)}</p>`));
    }
  } else if (match) {
    const build = builds.get(decodeURIComponent(match[1]));
    if (build?.steps) body = buildPage(build, now);
    else {
      body = '<p class="muted">Loading…</p>';
      void loadBuild(decodeURIComponent(match[1])).catch((e) => (app.innerHTML = `${header}<p class="error">${esc((e as Error).message)}</p>`));
    }
  } else if (route === "/workers") {
    body = queue ? workersPage(queue.jobs, queue.depth, queue.workers, now) : '<p class="muted">Loading…</p>';
    if (now - queueLoaded > 2_000) {
      queueLoaded = now;
      void Promise.all([api<{ jobs: Job[]; depth: number }>("/v1/jobs"), api<{ workers: Worker[] }>("/v1/workers")]).then(([j, w]) => ((queue = { ...j, workers: w.workers }), redraw()));
    }
  } else if (route === "/cache") {
    body = stats ? cachePage(stats, mounts) : '<p class="muted">Loading…</p>';
    if (now - statsLoaded > 10_000) {
      statsLoaded = now;
      // A server without shared cache mounts (older) answers 404: the panel is then empty.
      const shared = api<{ scopes: MountScopeInfo[] }>("/v1/mounts").catch(() => ({ scopes: [] }));
      void Promise.all([api<Stats>("/v1/stats"), shared]).then(([s, m]) => ((stats = s), (mounts = m.scopes), redraw()));
    }
  } else {
    const all = [...builds.values()].sort((a, b) => b.started - a.started);
    body = buildsPage(
      all.filter((b) => b.result === "running"),
      all.slice(0, 50),
      now,
    );
  }
  app.innerHTML = `${header}<main>${body}</main>`;
}

addEventListener("hashchange", redraw);
// Durations of running builds tick; the cache page refreshes its panels.
setInterval(redraw, 1000);

loadBuilds()
  .catch((e) => (app.innerHTML = `<p class="error">${esc((e as Error).message)}</p>`))
  .finally(() => {
    render();
    connect();
  });
