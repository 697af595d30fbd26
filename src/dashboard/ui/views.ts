/** The dashboard's pages as HTML strings; every reported value goes through esc(). */
import { barChart, lineChart, waterfall } from "./charts.ts";
import { ago, bytes, duration, esc, percent, short } from "./format.ts";
import type { BuildStep, BuildSummary } from "../../report/events.ts";
import type { MountScopeInfo } from "../../remote/mount-types.ts";
import { mountsPanel } from "./mounts-panel.ts";

export { mountsPanel };
import { conflictsPanel, nondeterministicPanel, type ConflictView, type Nondeterministic, type Unreproducible } from "./reproducibility.ts";

export type Step = BuildStep;
/** A build as listed; the dashboard fills in its steps when it has them. */
export type Build = BuildSummary & { steps?: BuildStep[] };

export interface Stats {
  cache: { bytes: number; maxBytes: number | null; blobs: number; actions: number };
  hourly: { hour: number; builds: number; executed: number; cached: number; savedMs: number }[];
  topMissed: { name: string; misses: number }[];
  topSavers: { name: string; hits: number; savedMs: number }[];
  tokens: { token: string; requests: number; bytesIn: number; bytesOut: number }[];
  conflicts: ConflictView[];
  /** Absent from an older server. */
  unreproducible?: Unreproducible[];
  nondeterministic?: Nondeterministic[];
  webhooks: { messageId: string; url: string; type: string; status: string; attempts: number; lastStatus?: number; lastError?: string; created: number }[];
}

const STATE_TEXT: Record<string, string> = {
  queued: "queued",
  running: "running",
  executed: "ran",
  "cached-local": "cached",
  "cached-remote": "cached (remote)",
  failed: "failed",
};

/** Unnamed stages are shown as BuildKit shows them: stage-N. */
const stageName = (stage: string) => (/^\d+$/.test(stage) ? `stage-${stage}` : stage);
const title = (b: Build) => `${b.dockerfile}${b.target ? ` → ${stageName(b.target)}` : ""}`;
const isHit = (state: string) => state === "cached-local" || state === "cached-remote";

function badge(result: string): string {
  return `<span class="badge result-${esc(result)}">${esc(result === "success" ? "done" : result)}</span>`;
}

function labels(b: Build): string {
  const ci = b.ci ? [b.ci.repository, b.ci.branch && `⎇ ${b.ci.branch}`, b.ci.commit && short(b.ci.commit)].filter(Boolean) : [];
  const pairs = Object.entries(b.labels ?? {}).map(([k, v]) => `${k}=${v}`);
  return [...ci, ...pairs].map((t) => `<span class="tag">${esc(t)}</span>`).join(" ");
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
            `<div class="step state-${esc(s.state)}" data-step="${esc(s.id)}" data-state="${esc(s.state)}" title="${esc(s.name)}"><span class="step-name">${esc(s.name.replace(/^\[[^\]]*\]\s*/, ""))}</span><span class="step-meta">${esc(STATE_TEXT[s.state] ?? s.state)}${s.durationMs !== undefined && !isHit(s.state) ? ` · ${duration(s.durationMs)}` : ""}</span></div>`,
        )
        .join("")}</div>`,
  );
  return `<div class="graph">${columns.join("")}</div>`;
}

export function buildsPage(running: Build[], recent: Build[], now: number): string {
  const live = running.length
    ? running
        .map(
          (b) => `<section class="card live" data-build="${esc(b.id)}">
  <header><a href="#/builds/${esc(b.id)}">${esc(title(b))}</a> ${badge(b.result)} <span class="muted">${esc(b.host)} · started ${esc(ago(b.started, now))}</span> ${labels(b)}</header>
  ${b.steps ? stepGraph(b.steps) : '<p class="muted">Loading steps…</p>'}
</section>`,
        )
        .join("")
    : '<p class="muted">Nothing is building right now.</p>';
  const rows = recent
    .map(
      (b) => `<tr data-build="${esc(b.id)}" data-result="${esc(b.result)}">
  <td>${badge(b.result)}</td>
  <td><a href="#/builds/${esc(b.id)}">${esc(title(b))}</a><div>${labels(b)}</div></td>
  <td>${esc(ago(b.started, now))}</td>
  <td class="num">${esc(b.result === "running" ? duration(now - b.started) : duration(b.durationMs))}</td>
  <td class="num">${esc(percent(b.hitRate))}</td>
  <td class="num">${esc(duration(b.savedMs))}</td>
</tr>`,
    )
    .join("");
  return `<h2>Building now</h2>${live}
<h2>Recent builds</h2>
${recent.length ? `<table class="builds"><thead><tr><th></th><th>Build</th><th>Started</th><th class="num">Duration</th><th class="num">Hit rate</th><th class="num">Time saved</th></tr></thead><tbody>${rows}</tbody></table>` : '<p class="muted">No build has reported yet. Builds with <code>--remote</code> pointing here show up as they start.</p>'}`;
}

export function buildPage(b: Build, now: number): string {
  const steps = b.steps ?? [];
  const failed = steps.filter((s) => s.state === "failed");
  const timeline = steps
    .filter((s) => s.started !== undefined)
    .map((s) => ({ label: `${s.name}: ${STATE_TEXT[s.state] ?? s.state} ${duration(s.durationMs)}`, start: s.started! - b.started, length: s.durationMs ?? (s.state === "running" ? now - s.started! : 0), state: s.state }));
  const rows = steps
    .map(
      (s) => `<tr class="state-${esc(s.state)}" data-step="${esc(s.id)}" data-state="${esc(s.state)}">
  <td class="num">${s.number}</td>
  <td><code>${esc(s.name)}</code> <a class="log-link" href="#/builds/${esc(encodeURIComponent(b.id))}/steps/${s.number}">output</a>${s.reasons?.length ? `<ul class="reasons">${s.reasons.map((r) => `<li>${esc(r)}</li>`).join("")}</ul>` : ""}</td>
  <td><span class="dot state-${esc(s.state)}"></span>${esc(STATE_TEXT[s.state] ?? s.state)}</td>
  <td class="num">${esc(duration(s.durationMs))}</td>
  <td class="num">${esc(isHit(s.state) ? duration(s.savedMs) : "")}</td>
  <td class="num">${esc(s.layerSize !== undefined ? bytes(s.layerSize) : "")}</td>
</tr>`,
    )
    .join("");
  const output = failed
    .filter((s) => s.tail?.length)
    .map((s) => `<h3>Output of the failed step ${esc(s.name)}</h3><pre class="output">${esc(s.tail!.join("\n"))}</pre>`)
    .join("");
  const facts = [
    ["Result", badge(b.result)],
    ["Started", esc(new Date(b.started).toISOString().replace("T", " ").slice(0, 19))],
    ["Duration", esc(b.result === "running" ? duration(now - b.started) : duration(b.durationMs))],
    ["Hit rate", esc(percent(b.hitRate))],
    ["Time saved", esc(duration(b.savedMs))],
    ["Image", b.image ? `<code>${esc(b.image)}</code>` : "–"],
    ["Context", b.context ? `<code>${esc(short(b.context))}</code>` : "–"],
    ["Host", esc(`${b.host} (${b.platform})`)],
    ["CI", b.ci ? `${esc(b.ci.provider)} ${b.ci.url && /^https?:\/\//.test(b.ci.url) ? `<a href="${esc(b.ci.url)}" rel="noreferrer noopener" target="_blank">job</a>` : ""}` : "–"],
    ["Labels", labels(b) || "–"],
  ];
  return `<p><a href="#/">← all builds</a></p>
<h2>${esc(title(b))}</h2>
<dl class="facts">${facts.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join("")}</dl>
${b.error ? `<pre class="output error">${esc(b.error)}</pre>` : ""}
<h3>Steps</h3>
${stepGraph(steps)}
${timeline.length ? `<h3>Timeline</h3>${waterfall(timeline)}` : ""}
<table class="steps"><thead><tr><th class="num">#</th><th>Step (and why it ran)</th><th>Status</th><th class="num">Took</th><th class="num">Saved</th><th class="num">Layer</th></tr></thead><tbody>${rows}</tbody></table>
${output}`;
}

export function cachePage(stats: Stats, mounts: MountScopeInfo[] = []): string {
  const { cache } = stats;
  const used = cache.maxBytes ? cache.bytes / cache.maxBytes : undefined;
  const points = stats.hourly
    .filter((h) => h.executed + h.cached > 0)
    .map((h) => ({ x: h.hour, y: h.cached / (h.executed + h.cached), label: `${new Date(h.hour).toISOString().slice(0, 13)}h: ${percent(h.cached / (h.executed + h.cached))} of ${h.executed + h.cached} steps, ${h.builds} builds` }));
  const tokens = stats.tokens.map((t) => ({ label: `token ${t.token}`, value: t.bytesIn + t.bytesOut, text: `${t.requests} req · ↑${bytes(t.bytesIn)} ↓${bytes(t.bytesOut)}` }));
  return `<div class="panels">
<section class="card"><h3>Cache size</h3><p class="big">${esc(bytes(cache.bytes))}${cache.maxBytes ? ` <span class="muted">of ${esc(bytes(cache.maxBytes))} (${esc(percent(used))})</span>` : ""}</p><p class="muted">${cache.blobs} blobs · ${cache.actions} step results</p></section>
<section class="card wide"><h3>Hit rate over time (per hour, last 7 days)</h3>${lineChart(points, { empty: "No finished build in the last 7 days." })}</section>
<section class="card"><h3>Steps that miss most</h3>${barChart(stats.topMissed.map((m) => ({ label: m.name, value: m.misses, text: `${m.misses}×` })), "No misses recorded.")}</section>
<section class="card"><h3>Steps that save the most time</h3>${barChart(stats.topSavers.map((m) => ({ label: m.name, value: m.savedMs, text: `${duration(m.savedMs)} (${m.hits} hits)` })), "No hits recorded.")}</section>
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
}

export interface Worker {
  name: string;
  labels: Record<string, string>;
  lastSeen: number;
  running: string[];
}

export function workersPage(jobs: Job[], depth: number, workers: Worker[], now: number): string {
  const seen = (w: Worker) => (now - w.lastSeen < 60_000 ? (w.running.length ? "busy" : "idle") : "gone");
  const workerRows = workers
    .map((w) => `<tr data-worker="${esc(w.name)}"><td>${esc(w.name)}</td><td>${esc(seen(w))}</td><td>${w.running.map((id) => `<code>${esc(short(id))}</code>`).join(" ")}</td><td>${Object.entries(w.labels).map(([k, v]) => `<span class="tag">${esc(`${k}=${v}`)}</span>`).join(" ")}</td><td>${esc(ago(w.lastSeen, now))}</td></tr>`)
    .join("");
  const jobRows = jobs
    .map((j) => {
      const took = j.started ? duration((j.finished ?? now) - j.started) : "";
      const affinity = j.affinity !== undefined && j.hints ? `${j.affinity} of ${j.hints}` : "";
      return `<tr data-job="${esc(j.id)}" data-state="${esc(j.state)}"><td><code>${esc(short(j.id))}</code></td><td>${badge(j.state === "succeeded" ? "success" : j.state)}</td><td>${esc(j.worker ?? "")}</td><td>${esc(affinity)}</td><td>${j.attempts}</td><td>${esc(ago(j.created, now))}</td><td>${esc(took)}</td><td class="error">${esc(j.error?.split("\n")[0] ?? "")}</td></tr>`;
    })
    .join("");
  return `<section class="card"><h3>Queue</h3><p>${depth} build(s) waiting for a worker</p>
<table class="jobs"><thead><tr><th>Build</th><th>State</th><th>Worker</th><th>Steps it held</th><th>Attempts</th><th>Submitted</th><th>Took</th><th>Error</th></tr></thead><tbody>${jobRows || '<tr><td colspan="8" class="muted">No remote builds yet.</td></tr>'}</tbody></table></section>
<section class="card"><h3>Workers</h3><table class="workers"><thead><tr><th>Name</th><th>State</th><th>Running</th><th>Labels</th><th>Last seen</th></tr></thead><tbody>${workerRows || '<tr><td colspan="5" class="muted">No worker has asked for work yet.</td></tr>'}</tbody></table></section>`;
}
