/**
 * The dashboard in the browser: loads the recent builds, then follows GET /v1/events (a
 * WebSocket) and redraws what changed. A dropped connection reconnects from the last event id it
 * saw, so nothing is missed. Plain TypeScript bundled by `bun build`: a few kilobytes, nothing to
 * download from elsewhere, quick on a slow laptop.
 */
import { esc } from "./format.ts";
import { buildPage, buildsPage, cachePage, FILTER_NAMES, filterBar, filterChoices, matches, projectsPage, workersPage, type Build, type Filters, type Job, type ProjectTrend, type Stats, type Step, type Worker } from "./views.ts";
import type { MountScopeInfo } from "../../remote/mount-types.ts";
import { appendLog, stepLogPage, type StepLogView } from "./logs.ts";
import type { ConflictView, Unreproducible } from "./reproducibility.ts";

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
let projects: ProjectTrend[] | undefined;
/** Conflicts and steps not reproducible, for a build's page (read again after 10 s). */
let records: { conflicts: ConflictView[]; unreproducible: Unreproducible[] } | undefined;
let recordsLoaded = 0;
let projectsLoaded = 0;

/** Step logs opened in this page, by "build step-id": kept live from the WebSocket. */
const logs = new Map<string, StepLogView>();
const logKey = (build: string, step: string) => `${build} ${step}`;

const app = document.getElementById("app")!;
// Three parts, drawn apart: the filter bar is drawn once per visit of the list, so the page
// redrawing every second never takes the text field someone is typing in.
app.innerHTML = '<div id="top"></div><div id="filter-slot"></div><main id="page"></main>';
const top = document.getElementById("top")!;
const filterSlot = document.getElementById("filter-slot")!;
const pageEl = document.getElementById("page")!;
let filterShown: string | undefined;

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

/** The route (#/path) and the list's filters (#/?project=…&result=…). */
function currentView(): { route: string; filters: Filters } {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [route, query = ""] = hash.split("?");
  const params = new URLSearchParams(query);
  const filters: Filters = {};
  for (const name of FILTER_NAMES) if (params.get(name)) filters[name] = params.get(name)!;
  return { route: route || "/", filters };
}

const active = (f: Filters) => Object.keys(f).length > 0;

/** The builds the server finds for the filters (older ones the page has not loaded too). */
let filteredLoaded = "";
const filterQuery = (f: Filters) => new URLSearchParams({ ...(f as Record<string, string>), per_page: "100" }).toString();
async function loadFiltered(f: Filters) {
  const query = filterQuery(f);
  filteredLoaded = query;
  const list = await api<{ builds: Build[] }>(`/v1/builds?${query}`);
  for (const build of list.builds) builds.set(build.id, { ...builds.get(build.id), ...build });
  redraw();
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
      // A config-only step (FROM, ENV…) ran nothing: neither a hit nor a miss, as in the client's totals.
      if (change.configOnly) {
        // counted nowhere
      } else if (change.state === "executed") build.executed++;
      else if (change.state === "cached-local" || change.state === "cached-remote") {
        build.cached++;
        build.savedMs += (change.savedMs as number | undefined) ?? 0;
      }
      // A failed step is a miss (as the server counts it); the totals are the client's at the end.
      const failed = (build.steps ?? []).filter((s) => s.state === "failed").length;
      build.hitRate = build.cached / Math.max(1, build.executed + build.cached + failed);
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
      // As the server does: nothing stays in progress, and a failed step is a miss.
      for (const step of build.steps ?? []) if (step.state === "running" || step.state === "queued") step.state = step.state === "running" ? "cancelled" : "skipped";
      const failed = (build.steps ?? []).filter((s) => s.state === "failed").length;
      build.hitRate = build.executed + build.cached + failed > 0 ? build.cached / (build.executed + build.cached + failed) : undefined;
      const failedStep = build.steps?.find((s) => s.state === "failed");
      if (failedStep) build.failedStep = { number: failedStep.number, name: failedStep.name };
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
  const { route, filters } = currentView();
  const nav = (path: string, text: string, active: boolean) => `<a href="#${path}"${active ? ' class="active"' : ""}>${text}</a>`;
  top.innerHTML = `<header class="top"><h1>MemoBuild</h1><nav>${nav("/", "Builds", route === "/" || route.startsWith("/builds/"))}${nav("/projects", "Projects", route === "/projects")}${nav("/cache", "Cache", route === "/cache")}${nav("/workers", "Workers", route === "/workers")}</nav>
<span class="live-state ${connected ? "on" : "off"}" data-live="${connected}">${connected ? "live" : "reconnecting…"}</span>
<form method="post" action="/logout"><button type="submit" class="link">Log out</button></form></header>`;
  showFilters(route === "/" ? filters : undefined);
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
      if (step && !view) void loadLog(build, number).catch((e) => (pageEl.innerHTML = `<p class="error">${esc((e as Error).message)}</p>`));
    } else {
      body = '<p class="muted">Loading…</p>';
      void loadBuild(id).catch((e) => (pageEl.innerHTML = `<p class="error">${esc((e as Error).message)}</p>`));
    }
  } else if (match) {
    const build = builds.get(decodeURIComponent(match[1]));
    if (now - recordsLoaded > 10_000) {
      recordsLoaded = now;
      // An older server without GET /v1/unreproducible: the panel is then left out.
      void Promise.all([api<{ conflicts: ConflictView[] }>("/v1/conflicts"), api<{ unreproducible: Unreproducible[] }>("/v1/unreproducible")])
        .then(([c, u]) => ((records = { conflicts: c.conflicts, unreproducible: u.unreproducible }), redraw()))
        .catch(() => {});
    }
    if (build?.steps) body = buildPage(build, now, records);
    else {
      body = '<p class="muted">Loading…</p>';
      void loadBuild(decodeURIComponent(match[1])).catch((e) => (pageEl.innerHTML = `<p class="error">${esc((e as Error).message)}</p>`));
    }
  } else if (route === "/projects") {
    body = projects ? projectsPage(projects) : '<p class="muted">Loading…</p>';
    if (now - projectsLoaded > 10_000) {
      projectsLoaded = now;
      void api<{ projects: ProjectTrend[] }>("/v1/projects").then((p) => ((projects = p.projects), redraw()));
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
    const kept = all.filter((b) => matches(b, filters));
    // Once per set of filters: later builds that match come as events.
    if (active(filters) && filterQuery(filters) !== filteredLoaded) void loadFiltered(filters).catch(() => {});
    fillChoices(all);
    body = buildsPage(
      kept.filter((b) => b.result === "running"),
      kept.slice(0, 100),
      now,
      active(filters),
    );
  }
  pageEl.innerHTML = body;
}

/** Draws the filter bar when the list is shown (once per visit), removes it elsewhere. */
function showFilters(filters: Filters | undefined) {
  const key = filters ? JSON.stringify(filters) : undefined;
  if (key === undefined) {
    filterSlot.innerHTML = "";
    filterShown = undefined;
    return;
  }
  if (filterShown !== undefined) return; // drawn: what is in it is the user's (the URL follows it)
  filterShown = key;
  filterSlot.innerHTML = filterBar(filters!);
  const form = filterSlot.querySelector("form")!;
  let typing: ReturnType<typeof setTimeout> | undefined;
  const changed = () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      const params = new URLSearchParams();
      for (const name of FILTER_NAMES) {
        const value = (form.elements.namedItem(name) as HTMLInputElement | null)?.value.trim();
        if (value) params.set(name, value);
      }
      const query = params.toString();
      // The URL holds the filters (a link to share) without a hashchange that would redraw the bar.
      history.replaceState(null, "", `#/${query ? `?${query}` : ""}`);
      filterShown = JSON.stringify(currentView().filters);
      redraw();
    }, 250);
  };
  form.addEventListener("input", changed);
  form.addEventListener("change", changed);
  form.addEventListener("submit", (event) => event.preventDefault());
  form.addEventListener("reset", () => setTimeout(changed));
}

/** The values each filter suggests, from the builds loaded. */
function fillChoices(all: Build[]) {
  const choices = filterChoices(all);
  for (const [name, values] of Object.entries(choices)) {
    const list = filterSlot.querySelector(`#known-${name}`);
    const html = values.map((v) => `<option value="${esc(v)}"></option>`).join("");
    if (list && list.innerHTML !== html) list.innerHTML = html;
  }
}

addEventListener("hashchange", () => {
  // A link to another filtered list (a project's name) draws the bar again with its filters.
  filterShown = undefined;
  redraw();
});
// Durations of running builds tick; the cache page refreshes its panels.
setInterval(redraw, 1000);

loadBuilds()
  .catch((e) => (pageEl.innerHTML = `<p class="error">${esc((e as Error).message)}</p>`))
  .finally(() => {
    render();
    connect();
  });
