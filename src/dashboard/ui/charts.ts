/** Charts drawn as inline SVG: small, crisp at any size, and no library to download. */
import { esc } from "./format.ts";

export interface Point {
  x: number;
  y: number;
  label: string;
  /** A class for its dot (e.g. a failed build's). */
  kind?: string;
}

export interface LineOptions {
  width?: number;
  height?: number;
  empty?: string;
  /** The top of the y axis (default 1: a rate, shown in %). */
  max?: number;
  format?: (value: number) => string;
  aria?: string;
}

/** Dates on an x axis: the day when they span days, else the time of day (to the second within minutes: two ends never read the same). */
function timeLabel(t: number, span: number): string {
  const iso = new Date(t).toISOString();
  return span > 2 * 86_400_000 ? iso.slice(5, 10) : span > 0 && span < 10 * 60_000 ? iso.slice(11, 19) : iso.slice(11, 16);
}

/** A line over time (y from 0 to `max`), a dot and a tooltip per point, the y axis and the first and last times. */
export function lineChart(points: Point[], options: LineOptions = {}): string {
  const width = options.width ?? 1100;
  const height = options.height ?? 200;
  const pad = 28;
  const left = options.format ? 56 : pad;
  const top = options.max ?? 1;
  const format = options.format ?? ((v: number) => `${Math.round(v * 100)}%`);
  if (points.length === 0) return `<p class="muted">${esc(options.empty ?? "No data yet.")}</p>`;
  const xs = points.map((p) => p.x);
  const [min, max] = [Math.min(...xs), Math.max(...xs)];
  const x = (v: number) => left + (max === min ? (width - left - pad) / 2 : ((v - min) / (max - min)) * (width - left - pad));
  const y = (v: number) => height - pad - (v / top) * (height - 2 * pad);
  const path = points.map((p, i) => `${i ? "L" : "M"}${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`).join(" ");
  const grid = [0, 0.5, 1].map((f) => `<line class="grid" x1="${left}" x2="${width - pad}" y1="${y(f * top)}" y2="${y(f * top)}"/><text class="axis" x="2" y="${y(f * top) + 4}">${esc(format(f * top))}</text>`).join("");
  const times = [...new Set([min, max])].map((t, i, all) => `<text class="axis" x="${x(t).toFixed(1)}" y="${height - 6}" text-anchor="${all.length === 1 ? "middle" : i === 0 ? "start" : "end"}">${esc(timeLabel(t, max - min))}</text>`).join("");
  const dots = points.map((p) => `<circle${p.kind ? ` class="${esc(p.kind)}"` : ""} cx="${x(p.x).toFixed(1)}" cy="${y(p.y).toFixed(1)}" r="3"><title>${esc(p.label)}</title></circle>`).join("");
  return `<svg class="chart line" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(options.aria ?? "hit rate over time")}">${grid}${times}<path d="${path}"/>${dots}</svg>`;
}

/** About how wide a character of the charts' 11px text is. */
const CHAR = 6.2;

/** Horizontal bars (SVG: the page's CSP allows no inline styles): the longest is the largest value. */
export function barChart(rows: { label: string; value: number; text: string }[], empty = "No data yet."): string {
  if (rows.length === 0) return `<p class="muted">${esc(empty)}</p>`;
  const top = Math.max(...rows.map((r) => r.value), 1);
  const width = 360;
  const rowHeight = 34;
  // The SVG clips what passes its right edge: the longest bar leaves room for the longest
  // value after it, and a label is cut (with …) to the width (11px text: ~6px a character).
  const room = Math.max(120, width - 16 - CHAR * Math.max(...rows.map((r) => r.text.length)));
  const fits = Math.floor(width / CHAR);
  const body = rows
    .map((r, i) => {
      const y = i * rowHeight;
      const w = Math.max(1, (r.value / top) * room);
      const label = r.label.length > fits ? `${r.label.slice(0, fits - 1)}…` : r.label;
      return `<g><title>${esc(r.label)}</title><text class="bar-label" x="0" y="${y + 12}">${esc(label)}</text><rect class="bar" x="0" y="${y + 16}" width="${w.toFixed(1)}" height="12" rx="2"/><text class="bar-value" x="${(w + 6).toFixed(1)}" y="${y + 27}">${esc(r.text)}</text></g>`;
    })
    .join("");
  return `<svg class="chart bars" viewBox="0 0 ${width} ${rows.length * rowHeight}" role="img">${body}</svg>`;
}

/** A tick every 1, 2 or 5 × 10ⁿ ms, about six across. */
function tickStep(end: number): number {
  const rough = end / 6;
  const power = 10 ** Math.floor(Math.log10(Math.max(rough, 1)));
  return [1, 2, 5, 10].map((m) => m * power).find((step) => step >= rough) ?? power * 10;
}

const clock = (ms: number) => (ms < 1000 ? `${ms} ms` : ms < 60_000 ? `${+(ms / 1000).toFixed(1)} s` : `${Math.floor(ms / 60_000)}:${String(Math.round((ms % 60_000) / 1000)).padStart(2, "0")}`);

/**
 * A build's steps on one time axis: each row the step's name, then a bar from when it started
 * for as long as it took (a failed step's bar drawn in full, to when it failed), with a time
 * axis of ticks along the top.
 */
export function waterfall(rows: { label: string; text: string; start: number; length: number; state: string }[]): string {
  if (rows.length === 0) return "";
  const end = Math.max(...rows.map((r) => r.start + r.length), 1);
  const rowHeight = 20;
  const axis = 20;
  const width = 1100;
  const labelWidth = 330;
  const plot = width - labelWidth - 70; // room for the text after the longest bar
  const at = (ms: number) => labelWidth + (ms / end) * plot;
  const step = tickStep(end);
  const ticks: string[] = [];
  for (let t = 0; t <= end; t += step) {
    ticks.push(`<line class="grid" x1="${at(t).toFixed(1)}" x2="${at(t).toFixed(1)}" y1="${axis - 4}" y2="${axis + rows.length * rowHeight}"/><text class="axis" x="${at(t).toFixed(1)}" y="12" text-anchor="middle">${esc(clock(t))}</text>`);
  }
  const bars = rows
    .map((r, i) => {
      const y = axis + i * rowHeight;
      const x = at(r.start);
      const w = Math.max(3, (r.length / end) * plot);
      const name = r.label.length > 48 ? `${r.label.slice(0, 47)}…` : r.label;
      // The text after the bar, else before it, else (a bar across the whole plot) inside it:
      // never over the step's name.
      const room = 7 * r.text.length;
      const text =
        x + w + 5 + room <= width ? `class="bar-value" x="${(x + w + 5).toFixed(1)}"` : x - 5 - room >= labelWidth ? `class="bar-value" x="${(x - 5).toFixed(1)}" text-anchor="end"` : `class="bar-value inside" x="${(x + 5).toFixed(1)}"`;
      return `<g class="row" data-state="${esc(r.state)}"><title>${esc(`${r.label}: ${r.text}`)}</title><text class="step-label" x="${labelWidth - 8}" y="${y + 14}" text-anchor="end">${esc(name)}</text><rect class="state-${esc(r.state)}" x="${x.toFixed(1)}" y="${y + 4}" width="${w.toFixed(1)}" height="${rowHeight - 8}" rx="2"/><text ${text} y="${y + 14}">${esc(r.text)}</text></g>`;
    })
    .join("");
  return `<svg class="chart waterfall" viewBox="0 0 ${width} ${axis + rows.length * rowHeight + 4}" role="img" aria-label="step timeline">${ticks.join("")}${bars}</svg>`;
}
