/**
 * Secrets of a remote build pass through the server and are never at rest: a worker asks for
 * the ids its build needs, the waiting request is parked, the submitter (which follows its
 * build) sees the ask and answers, and the values go to the worker's request. Two relays behind
 * one interface: MemorySecretRelay (here) for a single server, where both requests meet in this
 * process, and PgSecretRelay (secret-relay-pg.ts) for replicas, where the submitter may follow
 * on one replica while the worker asks another.
 */
export interface SecretRelay {
  /** The worker's side: resolves with the submitter's values, or undefined when it did not answer in time. */
  ask(job: string, ids: string[], timeoutMs: number): Promise<Record<string, string> | undefined>;
  /** The ids a job's worker waits for, if it waits. */
  asks(job: string): Promise<string[] | undefined>;
  /** The submitter's side: only the ids asked for are passed on; false when nobody waits. */
  answer(job: string, values: Record<string, unknown>): Promise<boolean>;
}

/** Only the ids asked for, and only text values. */
export function askedValues(ids: string[], values: Record<string, unknown>): Record<string, string> {
  const given: Record<string, string> = {};
  for (const id of ids) if (typeof values[id] === "string") given[id] = values[id] as string;
  return given;
}

/**
 * Both requests meet in this process's memory: nothing is written to the database, a log or
 * the disk; a server restart forgets them.
 */
export class MemorySecretRelay implements SecretRelay {
  private readonly pending = new Map<string, { ids: string[]; deliver: (values: Record<string, string> | undefined) => void }>();

  /** `wake` tells the job's follower (its long poll) that an ask is waiting. */
  constructor(private readonly wake: (job: string) => void = () => {}) {}

  ask(job: string, ids: string[], timeoutMs: number): Promise<Record<string, string> | undefined> {
    this.pending.get(job)?.deliver(undefined); // a newer ask replaces an older one
    return new Promise((resolve) => {
      const timer = setTimeout(() => deliver(undefined), timeoutMs);
      const deliver = (values: Record<string, string> | undefined) => {
        clearTimeout(timer);
        this.pending.delete(job);
        resolve(values);
      };
      this.pending.set(job, { ids, deliver });
      this.wake(job);
    });
  }

  async asks(job: string) {
    return this.pending.get(job)?.ids;
  }

  async answer(job: string, values: Record<string, unknown>) {
    const waiting = this.pending.get(job);
    if (!waiting) return false;
    waiting.deliver(askedValues(waiting.ids, values));
    return true;
  }
}
