/** Text for the page. Every value a build reported passes through `esc` before it is HTML. */

export function esc(value: unknown): string {
  return String(value ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export function duration(ms: number | undefined | null): string {
  if (ms === undefined || ms === null) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} m ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} m`;
}

export function bytes(n: number | undefined | null): string {
  if (n === undefined || n === null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) (value /= 1024), unit++;
  return `${value.toFixed(unit === 0 || value >= 100 ? 0 : 1)} ${units[unit]}`;
}

export function percent(rate: number | undefined | null): string {
  return rate === undefined || rate === null ? "–" : `${Math.round(rate * 100)}%`;
}

export function ago(time: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - time) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(time).toISOString().slice(0, 10);
}

export const short = (digest: string | undefined) => (digest ? digest.replace(/^sha256:/, "").slice(0, 12) : "–");

/** A command line as a shell takes it back: each word quoted when it has to be. */
export function shellWords(words: string[]): string {
  return words.map((w) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(w) ? w : `'${w.replaceAll("'", `'\\''`)}'`)).join(" ");
}

const STATE_TEXT: Record<string, string> = {
  queued: "queued",
  running: "running",
  executed: "ran",
  "cached-local": "cached",
  "cached-remote": "cached (remote)",
  failed: "failed",
  skipped: "skipped",
  cancelled: "cancelled",
};

/** What a step's state says; a config-only step (FROM, ENV…) ran nothing, hit or not: "config". */
export function stateText(step: { state: string; configOnly?: true }): string {
  const decided = step.state === "executed" || step.state === "cached-local" || step.state === "cached-remote";
  return step.configOnly && decided ? "config" : (STATE_TEXT[step.state] ?? step.state);
}
