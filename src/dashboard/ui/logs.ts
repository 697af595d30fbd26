/**
 * A step's output in the dashboard: read once from GET /v1/builds/{id}/steps/{n}/log, then
 * followed through the step.log events of the WebSocket (only those after the last one the
 * read included, so nothing shows twice). Output passes the terminal sanitizer, then esc().
 */
import { STEP_LOG_MAX } from "../../report/events.ts";
import { terminalText } from "../../util/terminal-text.ts";
import { esc, stateText } from "./format.ts";
import type { Build } from "./views.ts";

export interface StepLogView {
  text: string;
  /** Events up to this id are in `text`. */
  lastEvent: number;
}

/** What a step printed, kept as the hub keeps it: its last STEP_LOG_MAX characters. */
export function appendLog(view: StepLogView, text: string, id: number) {
  if (id <= view.lastEvent) return;
  const added = view.text + terminalText(text, { multiline: true });
  view.text = added.length > STEP_LOG_MAX ? added.slice(-STEP_LOG_MAX) : added;
  view.lastEvent = id;
}

export function stepLogPage(build: Build, number: number, view: StepLogView | undefined): string {
  const step = build.steps?.find((s) => s.number === number);
  if (!step) return `<p><a href="#/builds/${esc(build.id)}">← the build</a></p><p class="muted">This build has no step ${number}.</p>`;
  const body = view === undefined ? '<p class="muted">Loading…</p>' : view.text ? `<pre class="output log" data-log-step="${esc(step.id)}">${esc(view.text)}</pre>` : `<p class="muted" data-log-step="${esc(step.id)}">${step.state === "queued" || step.state === "running" ? "Nothing printed yet." : step.configOnly ? "Nothing ran: this step changes only the image's config." : "This step printed nothing."}</p>`;
  return `<p><a href="#/builds/${esc(build.id)}">← the build</a></p>
<h2><code>${esc(step.name)}</code></h2>
<p><span class="dot state-${esc(step.state)}${step.configOnly ? " config-only" : ""}"></span><span data-log-state="${esc(step.state)}">${esc(stateText(step))}</span> · <a href="/v1/builds/${encodeURIComponent(build.id)}/steps/${number}/log" target="_blank" rel="noopener">as text</a></p>
${body}`;
}
