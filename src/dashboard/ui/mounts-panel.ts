/**
 * The cache page's panel of shared RUN --mount=type=cache directories (GET /v1/mounts): per
 * mount, its versions and size, the files each recent publish changed, who published the
 * current one, and what fetching it saved. Every value passes through esc().
 */
import { ago, bytes, duration, esc, short } from "./format.ts";
import type { MountScopeInfo } from "../../remote/mount-types.ts";

/** How "time saved" is counted, said on the page: it is an estimate, and of what. */
export const SAVED_NOTE =
  "Time saved is an estimate: each fetch reports the files it did not download because the machine already had them, " +
  "and they count for the time they would have taken at the rate that same fetch downloaded the rest. " +
  "A fetch that downloaded nothing measured no rate and counts nothing; a machine already at the newest version does not fetch.";

const files = (n: number, size: number) => `${n} file${n === 1 ? "" : "s"}, ${bytes(size)}`;

function row(s: MountScopeInfo): string {
  const by = s.current.signer ? short(s.current.signer.replace(/^ed25519:/, "")) : (s.current.authorName ?? `token ${s.current.author ?? "?"}`);
  const f = s.fetched;
  const cells = [
    `<td>${esc(s.label.id)}</td>`,
    `<td>${esc(s.label.scope ?? "–")}</td>`,
    `<td class="num">${s.versions}</td>`,
    `<td class="num">${esc(files(s.current.files, s.current.size))}</td>`,
    `<td class="num">${esc(bytes(s.stored))}</td>`,
    `<td class="num changes" title="newest first">${s.changes.map((n) => esc(n)).join(" · ")}</td>`,
    `<td>${esc(by)} · ${esc(ago(s.current.published))}</td>`,
    `<td class="num">${f.fetches}</td>`,
    `<td class="num">${f.fetches ? esc(files(f.filesFetched, f.bytesFetched)) : "–"}</td>`,
    `<td class="num">${f.fetches ? esc(files(f.filesKept, f.bytesKept)) : "–"}</td>`,
    `<td class="num saved">${f.fetches ? esc(duration(f.savedMs)) : "–"}</td>`,
  ];
  return `<tr data-mount="${esc(s.label.id)}">${cells.join("")}</tr>`;
}

export function mountsPanel(scopes: MountScopeInfo[]): string {
  if (!scopes.length) return '<p class="muted">No shared cache mount yet (see <code>memobuild build --remote-cache-mounts on</code>).</p>';
  const saved = scopes.reduce((total, s) => total + s.fetched.savedMs, 0);
  const stored = scopes.reduce((total, s) => total + s.stored, 0);
  const head = ["Id", "Scope", "Versions", "Current version", "Stored", "Files changed per publish", "Published by", "Fetches", "Downloaded", "Had already", "Time saved"];
  const numeric = new Set(["Versions", "Current version", "Stored", "Files changed per publish", "Fetches", "Downloaded", "Had already", "Time saved"]);
  return `<p class="mounts-summary">${scopes.length} shared mount${scopes.length === 1 ? "" : "s"} · ${esc(bytes(stored))} stored · about ${esc(duration(saved))} saved on fetches</p>
<div class="scroll"><table class="mounts"><thead><tr>${head.map((h) => `<th${numeric.has(h) ? ' class="num"' : ""}>${h}</th>`).join("")}</tr></thead><tbody>${scopes.map(row).join("")}</tbody></table></div>
<p class="muted note">${esc(SAVED_NOTE)}</p>`;
}
