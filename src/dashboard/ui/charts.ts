/** Charts drawn as inline SVG: small, crisp at any size, and no library to download. */
import { esc } from "./format.ts";

export interface Point {
  x: number;
  y: number;
  label: string;
}

/** A line over time (y from 0 to 1, e.g. a hit rate), with a dot and a tooltip per point. */
export function lineChart(points: Point[], options: { width?: number; height?: number; empty?: string } = {}): string {
  const width = options.width ?? 1100;
  const height = options.height ?? 200;
  const pad = 28;
  if (points.length === 0) return `<p class="muted">${esc(options.empty ?? "No data yet.")}</p>`;
  const xs = points.map((p) => p.x);
  const [min, max] = [Math.min(...xs), Math.max(...xs)];
  const x = (v: number) => pad + (max === min ? (width - 2 * pad) / 2 : ((v - min) / (max - min)) * (width - 2 * pad));
  const y = (v: number) => height - pad - v * (height - 2 * pad);
  const path = points.map((p, i) => `${i ? "L" : "M"}${x(p.x).toFixed(1)},${y(p.y).toFixed(1)}`).join(" ");
  const grid = [0, 0.5, 1].map((v) => `<line class="grid" x1="${pad}" x2="${width - pad}" y1="${y(v)}" y2="${y(v)}"/><text class="axis" x="2" y="${y(v) + 4}">${v * 100}%</text>`).join("");
  const dots = points.map((p) => `<circle cx="${x(p.x).toFixed(1)}" cy="${y(p.y).toFixed(1)}" r="3"><title>${esc(p.label)}</title></circle>`).join("");
  return `<svg class="chart line" viewBox="0 0 ${width} ${height}" role="img" aria-label="hit rate over time">${grid}<path d="${path}"/>${dots}</svg>`;
}

/** Horizontal bars (SVG: the page's CSP allows no inline styles): the longest is the largest value. */
export function barChart(rows: { label: string; value: number; text: string }[], empty = "No data yet."): string {
  if (rows.length === 0) return `<p class="muted">${esc(empty)}</p>`;
  const top = Math.max(...rows.map((r) => r.value), 1);
  const width = 360;
  const rowHeight = 34;
  const body = rows
    .map((r, i) => {
      const y = i * rowHeight;
      const w = Math.max(1, (r.value / top) * (width - 90));
      const label = r.label.length > 80 ? `${r.label.slice(0, 79)}…` : r.label;
      return `<g><title>${esc(r.label)}</title><text class="bar-label" x="0" y="${y + 12}">${esc(label)}</text><rect class="bar" x="0" y="${y + 16}" width="${w.toFixed(1)}" height="12" rx="2"/><text class="bar-value" x="${(w + 6).toFixed(1)}" y="${y + 27}">${esc(r.text)}</text></g>`;
    })
    .join("");
  return `<svg class="chart bars" viewBox="0 0 ${width} ${rows.length * rowHeight}" role="img">${body}</svg>`;
}

/** A build's steps on one time axis: where each started and how long it took (or saved). */
export function waterfall(rows: { label: string; start: number; length: number; state: string }[]): string {
  if (rows.length === 0) return "";
  const end = Math.max(...rows.map((r) => r.start + r.length), 1);
  const rowHeight = 14;
  const width = 1100;
  const labelWidth = 0;
  const bars = rows
    .map((r, i) => {
      const x = labelWidth + (r.start / end) * (width - labelWidth);
      const w = Math.max(2, (r.length / end) * (width - labelWidth));
      return `<rect class="state-${esc(r.state)}" x="${x.toFixed(1)}" y="${i * rowHeight + 2}" width="${w.toFixed(1)}" height="${rowHeight - 4}" rx="2"><title>${esc(r.label)}</title></rect>`;
    })
    .join("");
  return `<svg class="chart waterfall" viewBox="0 0 ${width} ${rows.length * rowHeight}" role="img" aria-label="step timeline">${bars}</svg>`;
}
