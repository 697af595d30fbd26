/**
 * Secrets of a remote build pass through the server and are never at rest: a worker asks for
 * the ids its build needs, the waiting request is parked here in memory, the submitter (which
 * follows its build) sees the ask and answers, and the values go straight to the worker's
 * request. Nothing is written to the database, a log or the disk; a server restart forgets them.
 */
export class SecretRelay {
  private readonly pending = new Map<string, { ids: string[]; deliver: (values: Record<string, string> | undefined) => void }>();

  /** The worker's side: resolves with the submitter's values, or undefined when it did not answer in time. */
  ask(job: string, ids: string[], timeoutMs: number, notify: () => void): Promise<Record<string, string> | undefined> {
    this.pending.get(job)?.deliver(undefined); // a newer ask replaces an older one
    return new Promise((resolve) => {
      const timer = setTimeout(() => deliver(undefined), timeoutMs);
      const deliver = (values: Record<string, string> | undefined) => {
        clearTimeout(timer);
        this.pending.delete(job);
        resolve(values);
      };
      this.pending.set(job, { ids, deliver });
      notify();
    });
  }

  /** The ids a job's worker waits for, if it waits. */
  asks(job: string): string[] | undefined {
    return this.pending.get(job)?.ids;
  }

  /** The submitter's side: only the ids asked for are passed on. */
  answer(job: string, values: Record<string, unknown>): boolean {
    const waiting = this.pending.get(job);
    if (!waiting) return false;
    const given: Record<string, string> = {};
    for (const id of waiting.ids) if (typeof values[id] === "string") given[id] = values[id] as string;
    waiting.deliver(given);
    return true;
  }
}
