/**
 * A worker's event times on this machine's clock. Its events reach the client in batches (the
 * worker sends every 200 ms, the client long-polls), so when an event is received says little
 * of when its step started: every RUN of a batch would start at once on the hub's timeline.
 * The worker's own time (its JSON progress stamps each event) does say it, on the worker's
 * clock: it is moved onto this one by the smallest lag seen (the clocks' difference plus the
 * quickest delivery), and never put later than when it was received.
 */
export class WorkerClock {
  private offset = Infinity;

  /**
   * A batch received at `receivedAt` (this machine's ms): its events' times here, in order
   * (undefined for one without a valid time). The batch's newest event, the one delivered
   * quickest, sets the lag before any of its events is placed.
   */
  place(times: unknown[], receivedAt: number): (number | undefined)[] {
    const parsed = times.map((time) => (typeof time === "string" ? Date.parse(time) : Number.NaN));
    for (const ms of parsed) if (Number.isFinite(ms)) this.offset = Math.min(this.offset, receivedAt - ms);
    return parsed.map((ms) => (Number.isFinite(ms) ? Math.min(ms + this.offset, receivedAt) : undefined));
  }
}
