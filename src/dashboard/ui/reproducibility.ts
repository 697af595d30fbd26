/**
 * The cache page's reproducibility panels: steps that made another result when their own writer
 * ran them again (not reproducible: which files differ, and both builds), the steps that were so
 * most often, and real conflicts (another writer), each with links to the builds involved.
 */
import { ago, esc, short } from "./format.ts";

interface FileDifference {
  path: string;
  how: string[];
}

export interface Unreproducible {
  key: string;
  time: number;
  step: string | null;
  first: { build: string | null };
  second: { build: string | null };
  differences: { files: FileDifference[]; more: number; note?: string };
}

export interface Nondeterministic {
  step: string;
  count: number;
  last: number;
  lastBuild: string | null;
}

export interface ConflictView {
  key: string;
  time: number;
  step?: string | null;
  first: ConflictSide;
  second: ConflictSide;
}

/** `authorName` when the token file names the author's token (`TOKEN rw name=ci`). */
interface ConflictSide {
  author: string | null;
  authorName?: string;
  signer: string | null;
  build?: string | null;
}

/** A writer: its token by name (else by id), and its signing key when it signed. */
function writer(side: ConflictSide): string {
  const token = side.authorName ? esc(side.authorName) : `token <code>${esc(side.author ?? "?")}</code>`;
  return side.signer ? `${token} <span class="muted">key ${esc(short(side.signer.replace(/^ed25519:/, "")))}</span>` : token;
}

/** A link to a build's page, or a dash when the upload named none. */
export function buildLink(id: string | null | undefined): string {
  return id ? `<a class="build-link" href="#/builds/${esc(encodeURIComponent(id))}">${esc(short(id))}</a>` : "–";
}

const stepText = (step: string | null | undefined, key: string) => (step ? `<code>${esc(step)}</code>` : `step <code>${esc(short(key))}</code>`);

function differences(d: Unreproducible["differences"]): string {
  if (d.note) return `<span class="muted">${esc(d.note)}</span>`;
  if (!d.files.length) return '<span class="muted">no file differs (packed differently)</span>';
  const listed = d.files.slice(0, 4).map((f) => `<code>${esc(f.path)}</code> <span class="muted">${esc(f.how.join(", "))}</span>`);
  const rest = d.files.length - listed.length + d.more;
  // Only file times differ (a WORKDIR made now, a COPY's directory): the usual cause, and its cure.
  const timesOnly = d.more === 0 && d.files.every((f) => f.how.length === 1 && f.how[0] === "mtime only");
  const hint = timesOnly ? '<br><span class="muted" data-hint="times-only">only file times differ: building with SOURCE_DATE_EPOCH makes them the same</span>' : "";
  return listed.join("<br>") + (rest ? `<br><span class="muted">and ${rest} more</span>` : "") + hint;
}

export function nondeterministicPanel(steps: Nondeterministic[], recent: Unreproducible[]): string {
  if (!steps.length) return '<section class="card wide" data-panel="nondeterministic"><h3>Non-deterministic steps</h3><p class="muted">None: every step rebuilt by its writer made the same result.</p></section>';
  const top = steps
    .map((s) => `<tr data-nondeterministic="${esc(s.step)}"><td><code>${esc(s.step)}</code></td><td class="num">${s.count}×</td><td class="when">${esc(ago(s.last))}</td><td>${buildLink(s.lastBuild)}</td></tr>`)
    .join("");
  const rows = recent
    .map((u) => `<tr data-unreproducible="${esc(u.key)}"><td>${stepText(u.step, u.key)}</td><td>${differences(u.differences)}</td><td>${buildLink(u.first.build)} → ${buildLink(u.second.build)}</td><td class="when">${esc(ago(u.time))}</td></tr>`)
    .join("");
  return `<section class="card wide" data-panel="nondeterministic"><h3>Non-deterministic steps</h3>
<p class="muted">Steps whose own writer (same token and signer) made another result when it ran them again. The cache keeps the first result; these are not conflicts.</p>
<table><thead><tr><th>Step</th><th class="num">Times</th><th>Last</th><th>Last build</th></tr></thead><tbody>${top}</tbody></table>
<h4>Latest, with the files that differed</h4>
<table><thead><tr><th>Step</th><th>Files that differ</th><th>First build → rebuild</th><th>When</th></tr></thead><tbody>${rows}</tbody></table></section>`;
}

/** A build's link, or "this build" for the page's own. */
const buildOrThis = (id: string | null | undefined, self: string) => (id === self ? "this build" : buildLink(id));

/**
 * On a build's page: the results it made that differ from ones the cache already held (or that
 * a later build's differ from), as not reproducible (the same writer) or conflicts (another),
 * with the other build linked. Nothing when there are none.
 */
export function buildRecordsPanel(id: string, conflicts: ConflictView[], unreproducible: Unreproducible[]): string {
  const mine = <T extends { first: { build?: string | null }; second: { build?: string | null } }>(r: T) => r.first.build === id || r.second.build === id;
  const rows = [
    ...unreproducible.filter(mine).map((u) => `<tr data-unreproducible="${esc(u.key)}"><td>not reproducible</td><td>${stepText(u.step, u.key)}</td><td>${differences(u.differences)}</td><td class="when">${buildOrThis(u.first.build, id)} → ${buildOrThis(u.second.build, id)}</td></tr>`),
    ...conflicts.filter(mine).map((c) => `<tr data-conflict="${esc(c.key)}"><td>conflict</td><td>${stepText(c.step, c.key)}</td><td>kept ${writer(c.first)}, refused ${writer(c.second)}</td><td class="when">${buildOrThis(c.first.build, id)} → ${buildOrThis(c.second.build, id)}</td></tr>`),
  ];
  if (!rows.length) return "";
  return `<section class="card" data-panel="build-records"><h3>Results that differ from the cache's</h3>
<p class="muted">Steps of this build whose result differed from the one stored for the same inputs: by the same writer (not reproducible), or by another (a conflict, refused). The first result stays in use. <a href="#/cache">All of them</a></p>
<div class="scroll"><table><thead><tr><th></th><th>Step</th><th>What differs</th><th>Kept from → offered by</th></tr></thead><tbody>${rows.join("")}</tbody></table></div></section>`;
}

export function conflictsPanel(conflicts: ConflictView[]): string {
  const body = conflicts.length
    ? `<div class="scroll"><table><thead><tr><th>Step</th><th>When</th><th>Kept, from</th><th>Refused, from</th></tr></thead><tbody>${conflicts
        .map((c) => `<tr data-conflict="${esc(c.key)}"><td>${stepText(c.step, c.key)}</td><td class="when">${esc(ago(c.time))}</td><td>${writer(c.first)} · ${buildLink(c.first.build)}</td><td>${writer(c.second)} · ${buildLink(c.second.build)}</td></tr>`)
        .join("")}</tbody></table></div>`
    : '<p class="muted">None: no writer offered a result for a step another writer had made.</p>';
  return `<section class="card wide" data-panel="conflicts"><h3>Conflicts</h3><p class="muted">Another writer offered a different result for a step: refused, and kept here.</p>${body}</section>`;
}
