/**
 * What a token may make the build hub store, by role. Reports are the one thing a read-only
 * token writes, so its limits are the tight ones, and its builds are the first to go when the
 * history is over its size. Sizes are bytes of reported JSON (UTF-8) as the hub keeps it after
 * clipping each field; the history database holds each about twice (the event log, and the
 * build's own rows). SECURITY.md lists these numbers; keep them in step.
 */
import type { Role } from "./auth.ts";

export interface ReportQuota {
  /** Bytes one build may report in all. */
  perBuild: number;
  /** Bytes all of a token's builds kept in the history may hold (its oldest go first). */
  perToken: number;
  /** Bytes a token may report per minute. */
  perMinute: number;
}

const MiB = 1024 * 1024;

/** Quotas come in two sizes: read-only tokens, and tokens that write (read-write, workers). */
export type QuotaClass = "rw" | "ro";
export const quotaClass = (role: Role): QuotaClass => (role === "ro" ? "ro" : "rw");

export const REPORT_QUOTAS: Record<QuotaClass, ReportQuota> = {
  rw: { perBuild: 8 * MiB, perToken: 512 * MiB, perMinute: 64 * MiB },
  ro: { perBuild: 2 * MiB, perToken: 64 * MiB, perMinute: 8 * MiB },
};

/** The whole history's size (default): past it, the oldest builds go, read-only tokens' first. */
export const HISTORY_MAX_BYTES = 2048 * MiB;

/**
 * Bytes per token per minute, in fixed one-minute windows kept in memory (a restart forgets
 * them, which costs at most one more minute's budget).
 */
export class RateBudget {
  private readonly windows = new Map<string, { start: number; used: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Takes `bytes` from the token's budget for this minute; false (nothing taken) when it would go over. */
  take(token: string, bytes: number, perMinute: number): boolean {
    const now = this.now();
    let window = this.windows.get(token);
    if (!window || now - window.start >= 60_000) {
      // Old windows go as they are met again; the map is also cleared past a bound.
      if (this.windows.size > 10_000) this.windows.clear();
      window = { start: now, used: 0 };
      this.windows.set(token, window);
    }
    if (window.used + bytes > perMinute) return false;
    window.used += bytes;
    return true;
  }
}
