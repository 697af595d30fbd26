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

/** One message of a worker's build to the submitter's ssh agent, waiting for the agent's reply. */
export interface AgentAsk {
  id: string;
  /** The agent's id (`--ssh ID`). */
  agent: string;
  /** The build's connection to the agent: the submitter keeps one connection to its agent per conn. */
  conn: string;
  /** The request, base64 (a whole agent message); absent when the build closed the connection. */
  data?: string;
  close?: true;
}

/** At most this many messages of one job wait for the submitter at once. */
export const MAX_AGENT_ASKS = 64;

/**
 * `--ssh` of a remote build, as the secrets: each message a RUN sends to its agent socket on the
 * worker comes to a relay and waits for the submitter (which follows its build and holds the
 * agent) to pass it to its agent; the agent's reply goes back to the worker's request. The keys
 * never leave the submitter's agent. MemoryAgentRelay (here) for a single server; PgAgentRelay
 * (secret-relay-pg.ts) for replicas, where messages cross the database sealed.
 */
export interface AgentRelay {
  /** The worker's side: the agent's reply (base64), or undefined when none came in time. */
  ask(job: string, ask: Omit<AgentAsk, "id">, timeoutMs: number): Promise<string | undefined>;
  /** The messages a job's build waits on, if any. */
  asks(job: string): Promise<AgentAsk[] | undefined>;
  /** The submitter's side: replies to the asks of its own job only; how many were taken. */
  answer(job: string, replies: Record<string, unknown>): Promise<number>;
}

/** Both requests meet in this process's memory: no message is written anywhere. */
export class MemoryAgentRelay implements AgentRelay {
  private readonly pending = new Map<string, { job: string; ask: AgentAsk; deliver: (reply: string | undefined) => void }>();

  /** `wake` tells the job's follower (its long poll) that a message is waiting. */
  constructor(private readonly wake: (job: string) => void = () => {}) {}

  ask(job: string, ask: Omit<AgentAsk, "id">, timeoutMs: number): Promise<string | undefined> {
    if ([...this.pending.values()].filter((p) => p.job === job).length >= MAX_AGENT_ASKS) return Promise.resolve(undefined);
    const id = crypto.randomUUID();
    return new Promise((resolve) => {
      const timer = setTimeout(() => deliver(undefined), timeoutMs);
      const deliver = (reply: string | undefined) => {
        clearTimeout(timer);
        this.pending.delete(id);
        resolve(reply);
      };
      this.pending.set(id, { job, ask: { id, ...ask }, deliver });
      this.wake(job);
    });
  }

  async asks(job: string) {
    const asks = [...this.pending.values()].filter((p) => p.job === job).map((p) => p.ask);
    return asks.length ? asks : undefined;
  }

  async answer(job: string, replies: Record<string, unknown>) {
    let taken = 0;
    for (const [id, reply] of Object.entries(replies)) {
      const waiting = this.pending.get(id);
      if (!waiting || waiting.job !== job || typeof reply !== "string") continue;
      waiting.deliver(reply);
      taken++;
    }
    return taken;
  }
}
