/** The dashboard's pages as HTML strings; every reported value goes through esc(). */
import { barChart, lineChart, waterfall } from "./charts.ts";
import { ago, bytes, duration, esc, percent, shellWords, short, stateText } from "./format.ts";
import type { BuildStep, BuildSummary } from "../../report/events.ts";
import type { MountScopeInfo } from "../../remote/mount-types.ts";
import { mountsPanel } from "./mounts-panel.ts";

export { mountsPanel };
import { buildRecordsPanel, conflictsPanel, nondeterministicPanel, type ConflictView, type Nondeterministic, type Unreproducible } from "./reproducibility.ts";

export type Step = BuildStep;
/** A build as listed; the dashboard fills in its steps when it has them. */
export type Build = BuildSummary & { steps?: BuildStep[] };

export interface Stats {
  cache: { bytes: number; maxBytes: number | null; blobs: number; actions: number };
  hourly: { hour: number; builds: number; executed: number; cached: number; savedMs: number }[];
  topMissed: { name: string; misses: number }[];
  topSavers: { name: string; hits: number; savedMs: number }[];
  /** `name` when the token file names the token (`TOKEN rw name=ci`). */
  tokens: { token: string; name?: string; requests: number; bytesIn: number; bytesOut: number }[];
  conflicts: ConflictView[];
  /** Absent from an older server. */
  unreproducible?: Unreproducible[];
  nondeterministic?: Nondeterministic[];
  webhooks: { messageId: string; url: string; type: string; status: string; attempts: number; lastStatus?: number; lastError?: string; created: number }[];
}


/** Unnamed stages are shown as BuildKit shows them: stage-N. */
const stageName = (stage: string) => (/^\d+$/.test(stage) ? `stage-${stage}` : stage);
/** A build's name: its project (else its Dockerfile) and the stage it built when that is not the last one. */
const title = (b: Build) => `${b.project ?? b.dockerfile}${b.target ? ` → ${stageName(b.target)}` : ""}`;
const isHit = (state: string) => state === "cached-local" || state === "cached-remote";
/** The branch a build is listed under: its CI's, else its checkout's (as the server files it). */
export const branchOf = (b: Build) => b.ci?.branch ?? b.git?.branch;
const commitOf = (b: Build) => b.ci?.commit ?? b.git?.commit;
/** Who built it: the user, else the name of the token it reported with. */
const whoOf = (b: Build) => b.user ?? b.tokenName;

const clip = (text: string, max: number) => (text.length > max ? `${text.slice(0, max - 1)}…` : text);

/** What a lead scans a list for: branch and commit (dirty or not), who, tags, token, CI. */
function who(b: Build): string {
  const commit = commitOf(b);
  const parts = [
    branchOf(b) && `<span class="tag branch" title="branch">⎇ ${esc(branchOf(b))}</span>`,
    commit && `<code class="commit" title="${esc(commit)}">${esc(commit.slice(0, 8))}</code>${b.git?.dirty ? ' <span class="tag dirty" title="files changed since this commit">dirty</span>' : ""}`,
    whoOf(b) && `<span class="user" title="${b.user ? "user" : "token"}">${esc(whoOf(b))}${b.user ? ` @ ${esc(b.host)}` : ""}</span>`,
    b.tokenName && b.user && `<span class="tag token" title="the token it reported with">token ${esc(b.tokenName)}</span>`,
    b.ci && `<span class="tag ci">${esc(b.ci.provider)}</span>`,
    ...(b.tags ?? []).map((t) => `<span class="tag image-tag" title="-t">${esc(t)}</span>`),
  ];
  return parts.filter(Boolean).join(" ");
}

function badge(result: string): string {
  return `<span class="badge result-${esc(result)}">${esc(result === "success" ? "done" : result)}</span>`;
}

function labels(b: Build): string {
  return Object.entries(b.labels ?? {})
    .map(([k, v]) => `<span class="tag">${esc(`${k}=${v}`)}</span>`)
    .join(" ");
}

/** The list's filters, as the URL after #/? holds them (so a filtered list is a link to share). */
export interface Filters {
  project?: string;
  branch?: string;
  result?: string;
  label?: string;
  user?: string;
  q?: string;
}
export const FILTER_NAMES = ["project", "branch", "result", "label", "user", "q"] as const;

/** Whether a build is one the filters keep (as the server's filters do: GET /v1/builds). */
export function matches(b: Build, f: Filters): boolean {
  if (f.project && b.project !== f.project) return false;
  if (f.branch && branchOf(b) !== f.branch) return false;
  if (f.result && b.result !== f.result) return false;
  if (f.label) {
    const eq = f.label.indexOf("=");
    if (eq < 1 || b.labels?.[f.label.slice(0, eq)] !== f.label.slice(eq + 1)) return false;
  }
  if (f.user && b.user !== f.user && b.tokenName !== f.user) return false;
  if (f.q) {
    const { steps: _steps, ...rest } = b;
    if (!JSON.stringify(rest).toLowerCase().includes(f.q.toLowerCase())) return false;
  }
  return true;
}

/** The filter bar: drawn once per visit of the list (the page redraws around it, never under the cursor). */
export function filterBar(f: Filters): string {
  const input = (name: keyof Filters, label: string, placeholder: string) =>
    `<label>${label}<input name="${name}" list="known-${name}" value="${esc(f[name] ?? "")}" placeholder="${esc(placeholder)}" autocomplete="off"></label><datalist id="known-${name}"></datalist>`;
  const results = ["", "running", "success", "failed"].map((r) => `<option value="${r}"${f.result === r ? " selected" : ""}>${r === "" ? "any" : r === "success" ? "done" : r}</option>`).join("");
  return `<form class="filters card" role="search">
${input("project", "Project", "all")}${input("branch", "Branch", "all")}
<label>Result<select name="result">${results}</select></label>
${input("label", "Label", "name=value")}${input("user", "User", "anyone")}${input("q", "Search", "text, tag, commit…")}
<button type="reset" class="link">clear</button></form>`;
}

/** The values the filter inputs suggest, from the builds loaded. */
export function filterChoices(builds: Build[]): Record<"project" | "branch" | "label" | "user", string[]> {
  const distinct = (values: (string | undefined)[]) => [...new Set(values.filter((v): v is string => !!v))].sort().slice(0, 100);
  return {
    project: distinct(builds.map((b) => b.project)),
    branch: distinct(builds.map(branchOf)),
    label: distinct(builds.flatMap((b) => Object.entries(b.labels ?? {}).map(([k, v]) => `${k}=${v}`))),
    user: distinct(builds.flatMap((b) => [b.user, b.tokenName])),
  };
}

/** Stages side by side, each a column of its steps, coloured by state as they change. */
export function stepGraph(steps: Step[]): string {
  const stages = new Map<string, Step[]>();
  for (const step of [...steps].sort((a, b) => a.number - b.number)) {
    if (!stages.has(step.stage)) stages.set(step.stage, []);
    stages.get(step.stage)!.push(step);
  }
  const columns = [...stages].map(
    ([stage, list]) =>
      `<div class="stage"><div class="stage-name">${esc(stageName(stage))}</div>${list
        .map(
          (s) =>
            `<div class="step state-${esc(s.state)}${s.configOnly ? " config-only" : ""}" data-step="${esc(s.id)}" data-state="${esc(s.state)}" title="${esc(s.name)}"><span class="step-name">${esc(s.name.replace(/^\[[^\]]*\]\s*/, ""))}</span><span class="step-meta">${esc(stateText(s))}${s.durationMs !== undefined && !isHit(s.state) && !s.configOnly ? ` · ${duration(s.durationMs)}` : ""}</span></div>`,
        )
        .join("")}</div>`,
  );
  return `<div class="graph">${columns.join("")}</div>`;
}

/** Why a failed build failed, in the list: its failed step, else (interrupted, cut off) its error's first line. */
function failedAt(b: Build): string {
  if (b.failedStep) return ` <span class="failed-at" title="${esc(b.failedStep.name)}">failed at step ${b.failedStep.number}: <code>${esc(clip(b.failedStep.name.replace(/^\[[^\]]*\]\s*/, ""), 60))}</code></span>`;
  const first = b.result === "failed" ? b.error?.split("\n")[0] : undefined;
  return first ? ` <span class="failed-at" title="${esc(first)}">${esc(clip(first, 80))}</span>` : "";
}

export function buildsPage(running: Build[], recent: Build[], now: number, filtered = false): string {
  const live = running.length
    ? running
        .map(
          (b) => `<section class="card live" data-build="${esc(b.id)}">
  <header><a href="#/builds/${esc(b.id)}">${esc(title(b))}</a> ${badge(b.result)} <span class="muted">started ${esc(ago(b.started, now))}</span> ${who(b)} ${labels(b)}</header>
  ${b.steps ? stepGraph(b.steps) : '<p class="muted">Loading steps…</p>'}
</section>`,
        )
        .join("")
    : '<p class="muted">Nothing is building right now.</p>';
  const rows = recent
    .map(
      (b) => `<tr data-build="${esc(b.id)}" data-result="${esc(b.result)}">
  <td>${badge(b.result)}</td>
  <td><a href="#/builds/${esc(b.id)}">${esc(title(b))}</a>${failedAt(b)}<div class="who">${who(b)} ${labels(b)}</div></td>
  <td>${esc(ago(b.started, now))}</td>
  <td class="num">${esc(b.result === "running" ? duration(now - b.started) : duration(b.durationMs))}</td>
  <td class="num">${esc(percent(b.hitRate))}</td>
  <td class="num">${esc(duration(b.savedMs))}</td>
</tr>`,
    )
    .join("");
  return `<h2>Building now</h2>${live}
<h2>Recent builds</h2>
${recent.length ? `<table class="builds" data-count="${recent.length}"><thead><tr><th></th><th>Build</th><th>Started</th><th class="num">Duration</th><th class="num">Hit rate</th><th class="num">Time saved</th></tr></thead><tbody>${rows}</tbody></table>` : filtered
      ? '<p class="muted" data-empty="filtered">No build matches these filters.</p>'
      : '<p class="muted">No build has reported yet. Builds with <code>--remote</code> pointing here show up as they start.</p>'}`;
}

/** Where a step's bar on the timeline ends: its duration, else (failed, cancelled, running) the build's end or now. */
function stepLength(s: Step, b: Build, now: number): number {
  if (s.durationMs !== undefined) return s.durationMs;
  if (s.state === "running") return now - s.started!;
  return Math.max(0, (b.finished ?? now) - s.started!);
}

/** The command that reruns the build, as its client reported it (secret values masked there). */
function invocation(b: Build): string {
  if (!b.command?.length) return "";
  const masked = b.command.some((w) => w.includes("***"));
  return `<h3>Invocation</h3><pre class="invocation" data-invocation>${esc(shellWords(b.command))}</pre>${
    masked ? '<p class="muted">Secret values and tokens are shown as <code>***</code>: put yours back to rerun it.</p>' : ""
  }`;
}

/** A failed build says first which step failed and what it printed. */
function failure(b: Build, steps: Step[]): string {
  if (b.result !== "failed") return "";
  const failed = steps.find((s) => s.state === "failed");
  if (!failed) return b.error ? `<section class="card failure"><h3>The build failed</h3><pre class="output error">${esc(b.error)}</pre></section>` : "";
  const output = failed.tail?.length ? failed.tail : failed.reasons;
  // The build's error repeats the tail after "last output:": shown once, above it.
  // A step that failed without running (a COPY of a missing file) has the error as its reason.
  const trimmed = output?.length ? b.error?.replace(/\n\s*last output:\n[\s\S]*$/, "") : b.error;
  const error = trimmed && output?.join("\n").includes(trimmed) ? undefined : trimmed;
  return `<section class="card failure" data-failed-step="${esc(failed.id)}"><h3>Failed at step ${failed.number}: <code>${esc(failed.name)}</code> <a class="log-link" href="#/builds/${esc(encodeURIComponent(b.id))}/steps/${failed.number}">all its output</a></h3>
${output?.length ? `<pre class="output">${esc(output.join("\n"))}</pre>` : ""}${error ? `<pre class="output error">${esc(error)}</pre>` : ""}</section>`;
}

/** `records`: the hub's conflicts and steps not reproducible, for the ones this build took part in. */
export function buildPage(b: Build, now: number, records?: { conflicts: ConflictView[]; unreproducible: Unreproducible[] }): string {
  const steps = b.steps ?? [];
  const drawn = steps.filter((s) => s.started !== undefined);
  const lastEnd = Math.max(0, ...drawn.map((s) => s.started! - b.started + stepLength(s, b, now)));
  const timeline = [
    ...drawn.map((s) => ({ label: s.name, text: `${stateText(s)} ${duration(stepLength(s, b, now))}`, start: s.started! - b.started, length: stepLength(s, b, now), state: s.configOnly ? "config-only" : s.state })),
    // A step that failed before it ran (a COPY of a missing file) is a mark where the others ended.
    ...steps.filter((s) => s.started === undefined && s.state === "failed").map((s) => ({ label: s.name, text: "failed before it ran", start: lastEnd, length: 0, state: s.state })),
  ];
  const rows = steps
    .map(
      (s) => `<tr class="state-${esc(s.state)}" data-step="${esc(s.id)}" data-state="${esc(s.state)}">
  <td class="num">${s.number}</td>
  <td><code>${esc(s.name)}</code>${s.worker ? ` <span class="tag worker" title="the worker that ran or reused it">${esc(`worker ${s.worker}`)}</span>` : ""} <a class="log-link" href="#/builds/${esc(encodeURIComponent(b.id))}/steps/${s.number}">output</a>${s.reasons?.length ? `<ul class="reasons">${s.reasons.map((r) => `<li>${esc(r)}</li>`).join("")}</ul>` : ""}</td>
  <td class="status"><span class="dot state-${esc(s.state)}${s.configOnly ? " config-only" : ""}"></span>${esc(stateText(s))}</td>
  <td class="num">${esc(duration(s.durationMs))}</td>
  <td class="num">${esc(isHit(s.state) && !s.configOnly ? duration(s.savedMs) : "")}</td>
  <td class="num">${esc(s.layerSize !== undefined ? bytes(s.layerSize) : "")}</td>
</tr>`,
    )
    .join("");
  const repository = b.git?.repository ?? b.ci?.repository;
  const commit = commitOf(b);
  const facts = [
    ["Result", badge(b.result)],
    ["Project", b.project ? `<a href="#/?project=${esc(encodeURIComponent(b.project))}">${esc(b.project)}</a>` : "–"],
    ["Repository", repository ? `<code>${esc(repository)}</code>` : "–"],
    ["Branch", branchOf(b) ? esc(branchOf(b)) : "–"],
    ["Commit", commit ? `<code>${esc(commit)}</code>${b.git?.dirty ? ' <span class="tag dirty">dirty: files changed since this commit</span>' : b.git?.dirty === false ? ' <span class="muted">clean</span>' : ""}` : "–"],
    ["Built by", whoOf(b) ? `${esc(whoOf(b))}${b.user ? ` on ${esc(b.host)}` : ""}${b.tokenName ? ` <span class="tag token">token ${esc(b.tokenName)}</span>` : ""}` : esc(b.host)],
    ["Target", esc(b.target ? stageName(b.target) : "the last stage")],
    ["Dockerfile", `<code>${esc(b.dockerfile)}</code>`],
    ["Tags", b.tags?.length ? b.tags.map((t) => `<code>${esc(t)}</code>`).join(" ") : "–"],
    ["Started", esc(new Date(b.started).toISOString().replace("T", " ").slice(0, 19))],
    ["Duration", esc(b.result === "running" ? duration(now - b.started) : duration(b.durationMs))],
    ["Hit rate", esc(percent(b.hitRate))],
    ["Time saved", esc(duration(b.savedMs))],
    ["Image", b.image ? `<code>${esc(b.image)}</code>` : "–"],
    ["Context", b.context ? `<code>${esc(short(b.context))}</code>` : "–"],
    ["Platform", esc(b.platform)],
    ["CI", b.ci ? `${esc(b.ci.provider)} ${b.ci.url && /^https?:\/\//.test(b.ci.url) ? `<a href="${esc(b.ci.url)}" rel="noreferrer noopener" target="_blank">run</a>` : ""}` : "–"],
    ["Labels", labels(b) || "–"],
  ];
  return `<p><a href="#/">← all builds</a></p>
<h2>${esc(title(b))}</h2>
${failure(b, steps)}
<dl class="facts">${facts.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join("")}</dl>
${invocation(b)}
${records ? buildRecordsPanel(b.id, records.conflicts, records.unreproducible) : ""}
<h3>Steps</h3>
${stepGraph(steps)}
${timeline.length ? `<h3>Timeline</h3>${waterfall(timeline)}` : ""}
<table class="steps"><thead><tr><th class="num">#</th><th>Step (and why it ran)</th><th>Status</th><th class="num">Took</th><th class="num">Saved</th><th class="num">Layer</th></tr></thead><tbody>${rows}</tbody></table>`;
}

/** Per project, each finished build of the last 30 days: how long it took and how much hit (GET /v1/projects). */
export interface ProjectTrend {
  project: string;
  builds: { finished: number; durationMs: number; result: string; executed: number; cached: number; failed: number }[];
}

export function projectsPage(projects: ProjectTrend[]): string {
  if (!projects.length) return '<p class="muted">No project has finished a build in the last 30 days. A build names its project after its repository (or its context directory).</p>';
  const day = (t: number) => new Date(t).toISOString().slice(0, 16).replace("T", " ");
  return projects
    .map((p) => {
      const kind = (b: { result: string }) => (b.result === "failed" ? "failed" : undefined);
      const durations = p.builds.map((b) => ({ x: b.finished, y: b.durationMs, kind: kind(b), label: `${day(b.finished)}: ${duration(b.durationMs)} (${b.result === "success" ? "done" : b.result})` }));
      const rated = p.builds.filter((b) => b.executed + b.cached + b.failed > 0);
      const rates = rated.map((b) => ({ x: b.finished, kind: kind(b), y: b.cached / (b.executed + b.cached + b.failed), label: `${day(b.finished)}: ${percent(b.cached / (b.executed + b.cached + b.failed))} of ${b.executed + b.cached + b.failed} steps` }));
      const top = Math.max(...durations.map((d) => d.y), 1);
      const failed = p.builds.filter((b) => b.result === "failed").length;
      return `<section class="card project" data-project="${esc(p.project)}"><header><a href="#/?project=${esc(encodeURIComponent(p.project))}"><b>${esc(p.project)}</b></a> <span class="muted">${p.builds.length} build(s), ${failed} failed, last ${esc(ago(p.builds.at(-1)!.finished))}</span></header>
<div class="panels"><div><h3>Duration</h3>${lineChart(durations, { width: 560, height: 170, max: top, format: (v) => duration(v), aria: "duration over time" })}</div>
<div><h3>Hit rate</h3>${lineChart(rates, { width: 560, height: 170, empty: "No step decided yet.", aria: "hit rate over time" })}</div></div></section>`;
    })
    .join("");
}

export function cachePage(stats: Stats, mounts: MountScopeInfo[] = []): string {
  const { cache } = stats;
  const used = cache.maxBytes ? cache.bytes / cache.maxBytes : undefined;
  const points = stats.hourly
    .filter((h) => h.executed + h.cached > 0)
    .map((h) => ({ x: h.hour, y: h.cached / (h.executed + h.cached), label: `${new Date(h.hour).toISOString().slice(0, 13)}h: ${percent(h.cached / (h.executed + h.cached))} of ${h.executed + h.cached} steps, ${h.builds} builds` }));
  const tokens = stats.tokens.map((t) => ({ label: t.name ?? `token ${t.token}`, value: t.bytesIn + t.bytesOut, text: `${t.requests} req · ↑${bytes(t.bytesIn)} ↓${bytes(t.bytesOut)}` }));
  return `<div class="panels">
<section class="card"><h3>Cache size</h3><p class="big">${esc(bytes(cache.bytes))}${cache.maxBytes ? ` <span class="muted">of ${esc(bytes(cache.maxBytes))} (${esc(percent(used))})</span>` : ""}</p><p class="muted">${cache.blobs} blobs · ${cache.actions} step results</p></section>
<section class="card wide"><h3>Hit rate over time (per hour, last 7 days)</h3>${lineChart(points, { empty: "No finished build in the last 7 days." })}</section>
<section class="card"><h3>Steps that miss most</h3>${barChart(stats.topMissed.map((m) => ({ label: m.name, value: m.misses, text: `${m.misses}×` })), "No misses recorded.")}</section>
<section class="card"><h3>Steps that save the most time</h3>${barChart(stats.topSavers.map((m) => ({ label: m.name, value: m.savedMs, text: `${duration(m.savedMs)} (${m.hits} ${m.hits === 1 ? "hit" : "hits"})` })), "No hits recorded.")}</section>
<section class="card"><h3>Use by token</h3>${barChart(tokens, "No requests yet.")}</section>
<section class="card wide"><h3>Cache mounts</h3>${mountsPanel(mounts)}</section>
${nondeterministicPanel(stats.nondeterministic ?? [], stats.unreproducible ?? [])}
${conflictsPanel(stats.conflicts)}
<section class="card wide"><h3>Webhook deliveries</h3>${
    stats.webhooks.length
      ? `<table><thead><tr><th>Event</th><th>To</th><th>Status</th><th class="num">Attempts</th><th>Last answer</th><th>When</th></tr></thead><tbody>${stats.webhooks
          .map(
            (w) =>
              `<tr><td>${esc(w.type)}</td><td>${esc(w.url)}</td><td><span class="badge delivery-${esc(w.status)}">${esc(w.status)}</span></td><td class="num">${w.attempts}</td><td>${esc(w.lastStatus ?? w.lastError ?? "")}</td><td>${esc(ago(w.created))}</td></tr>`,
          )
          .join("")}</tbody></table>`
      : '<p class="muted">No webhook has fired (see <code>memobuild serve --webhook</code>).</p>'
  }</section>
</div>`;
}

/** Remote execution: what waits, what runs where, and the workers (GET /v1/jobs, /v1/workers). */
export interface Job {
  id: string;
  state: string;
  created: number;
  started?: number;
  finished?: number;
  worker?: string;
  attempts: number;
  affinity?: number;
  hints: number;
  error?: string;
  /** The hub build it is (or is part of), and the stage it builds when the build is spread over workers. */
  build?: string;
  stage?: string;
}

export interface Worker {
  name: string;
  labels: Record<string, string>;
  lastSeen: number;
  running: string[];
  /** Heard from within the lease time (idle, busy) or not (gone), as memobuild_workers counts them. */
  state: "idle" | "busy" | "gone";
  /** Its finished builds' steps (last 24 h): run, and cached here or in the shared cache. */
  steps?: { executed: number; cachedLocal: number; cachedRemote: number };
  hitRate?: number;
}

/** A worker's steps run and cached (here and in the shared cache) in its finished builds, and the share cached. */
function workerHits(w: Worker): string {
  const steps = w.steps ?? { executed: 0, cachedLocal: 0, cachedRemote: 0 };
  const cached = steps.cachedLocal + steps.cachedRemote;
  return `<td class="num steps-run">${steps.executed}</td><td class="num steps-cached" title="${esc(`${steps.cachedLocal} from its own cache, ${steps.cachedRemote} from the shared cache`)}">${cached}</td><td class="num hit-rate">${esc(w.hitRate !== undefined ? percent(w.hitRate) : "")}</td>`;
}

/** A job's short id, linked to its hub build when it reports one, with the stage it builds. */
function jobLink(id: string, job: Job | undefined): string {
  const code = `<code>${esc(short(id))}</code>`;
  const linked = job?.build ? `<a class="job-build" href="#/builds/${esc(encodeURIComponent(job.build))}">${code}</a>` : code;
  return job?.stage ? `${linked} <span class="tag stage">${esc(`stage ${job.stage}`)}</span>` : linked;
}

export function workersPage(jobs: Job[], depth: number, workers: Worker[], now: number): string {
  const byId = new Map(jobs.map((j) => [j.id, j]));
  const workerRows = workers
    .map((w) => `<tr data-worker="${esc(w.name)}"><td>${esc(w.name)}</td><td>${esc(w.state)}</td><td>${w.running.map((id) => jobLink(id, byId.get(id))).join(" ")}</td><td>${Object.entries(w.labels).map(([k, v]) => `<span class="tag">${esc(`${k}=${v}`)}</span>`).join(" ")}</td><td>${esc(ago(w.lastSeen, now))}</td>${workerHits(w)}</tr>`)
    .join("");
  const jobRows = jobs
    .map((j) => {
      const took = j.started ? duration((j.finished ?? now) - j.started) : "";
      const affinity = j.affinity !== undefined && j.hints ? `${j.affinity} of ${j.hints}` : "";
      return `<tr data-job="${esc(j.id)}" data-state="${esc(j.state)}"><td>${jobLink(j.id, j)}</td><td>${badge(j.state === "succeeded" ? "success" : j.state)}</td><td>${esc(j.worker ?? "")}</td><td>${esc(affinity)}</td><td>${j.attempts}</td><td>${esc(ago(j.created, now))}</td><td>${esc(took)}</td><td class="error">${esc(j.error?.split("\n")[0] ?? "")}</td></tr>`;
    })
    .join("");
  return `<section class="card"><h3>Queue</h3><p>${depth} build(s) waiting for a worker</p>
<table class="jobs"><thead><tr><th>Build</th><th>State</th><th>Worker</th><th>Steps it held</th><th>Attempts</th><th>Submitted</th><th>Took</th><th>Error</th></tr></thead><tbody>${jobRows || '<tr><td colspan="8" class="muted">No remote builds yet: <code>memobuild build --builder URL</code> queues one here.</td></tr>'}</tbody></table></section>
<section class="card"><h3>Workers</h3><table class="workers"><thead><tr><th>Name</th><th>State</th><th>Running</th><th>Labels</th><th>Last seen</th><th>Steps run</th><th>Cached</th><th>Hit rate</th></tr></thead><tbody>${workerRows || '<tr><td colspan="8" class="muted">No worker has asked for work yet: start one with <code>memobuild worker --server URL --token TOKEN</code> (a <code>worker</code> token).</td></tr>'}</tbody></table></section>`;
}
