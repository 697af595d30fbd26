/**
 * The remote-execution side of the server's API (server/jobs-routes.ts), for both ends: a
 * client submits and follows a build; a worker claims, heartbeats, reports and finishes it.
 * Blobs go up and down by BLAKE3, as the cache's do; everything read is checked by the caller.
 */
import { closeSync } from "node:fs";
import { UserError } from "../errors.ts";
import { hashFile } from "../hash/blake3.ts";
import { readBodyBytes } from "../util/network.ts";
import { terminalText } from "../util/terminal-text.ts";

export class JobsError extends UserError {}

export interface JobsClientOptions {
  url: string;
  token?: string;
  tls?: { ca?: string; cert?: string; key?: string };
}

export interface Followed {
  state: "queued" | "running" | "succeeded" | "failed" | "cancelled";
  /** The ids of secrets the job's worker waits for. */
  asks?: string[];
  /** Messages of the job's build to the submitter's ssh agents, waiting for their replies. */
  agentAsks?: AgentAsk[];
  worker?: string;
  events: { seq: number; event: unknown }[];
  result?: unknown;
  error?: string;
}

/**
 * Who submitted a claimed job, as its worker needs to know: a job of a token that may write
 * (rw, or a worker's) shares its cache mounts with the team; any other's keeps them to itself.
 */
export interface ClaimSubmitter {
  /** The token's short id (a prefix of its hash), as the server's stats name it. */
  id: string;
  trusted: boolean;
}

/** One message of a remote build to an ssh agent the submitter holds (see server/secret-relay.ts). */
export interface AgentAsk {
  id: string;
  agent: string;
  conn: string;
  /** base64; absent when the build closed its connection. */
  data?: string;
  close?: true;
}

export interface Claimed {
  id: string;
  lease: string;
  leaseMs: number;
  definition: unknown;
  /** Absent from a server older than shared cache mounts on workers: then taken as untrusted. */
  submitter?: ClaimSubmitter;
}

const MAX_ANSWER_BYTES = 8 * 1024 * 1024;
/** A job id as the server makes them (a UUID). */
const JOB_ID = /^[0-9a-f-]{36}$/;

export class JobsClient {
  readonly base: string;

  constructor(private readonly options: JobsClientOptions) {
    this.base = options.url.replace(/\/+$/, "");
  }

  private async call(method: string, path: string, body?: unknown, timeoutMs = 60_000, cancel?: AbortSignal): Promise<Response> {
    let response: Response;
    try {
      response = await fetch(`${this.base}${path}`, {
        method,
        headers: { ...(this.options.token ? { authorization: `Bearer ${this.options.token}` } : {}), ...(body !== undefined ? { "content-type": "application/json" } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: cancel ? AbortSignal.any([AbortSignal.timeout(timeoutMs), cancel]) : AbortSignal.timeout(timeoutMs),
        tls: this.options.tls,
      } as RequestInit);
    } catch (error) {
      throw new JobsError(`the build server at ${this.base} does not answer (${method} ${path}: ${(error as Error).message})`);
    }
    if (response.status === 401) throw new JobsError(`the build server at ${this.base} refused the token (HTTP 401: ${await errorText(response)})`);
    // 403 is a token the server knows asking for what its role may not have (a read-only
    // token's job with an entitlement, say): the answer says what, and it is not the token.
    if (response.status === 403) throw new JobsError(`the build server at ${this.base} refused ${method === "POST" && path === "/v1/jobs" ? "the build" : `${method} ${path.split("?")[0]}`} (HTTP 403: ${await errorText(response)})`);
    return response;
  }

  private async json<T>(response: Response, what: string): Promise<T> {
    if (!response.ok) throw new JobsError(`${what}: HTTP ${response.status} ${await errorText(response)}`);
    // Read with the bound, not checked after: a hostile server could otherwise send gigabytes first.
    const text = (await readBodyBytes(response, MAX_ANSWER_BYTES, what, (max) => `the answer is larger than ${max} bytes`)).toString("utf8");
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new JobsError(`${what}: the answer is not JSON`);
    }
  }

  async submit(definition: unknown, hints: string[]): Promise<string> {
    const { id } = await this.json<{ id: unknown }>(await this.call("POST", "/v1/jobs", { definition, hints }), "submitting the build");
    if (typeof id !== "string" || !JOB_ID.test(id)) throw new JobsError("submitting the build: the server answered no job id");
    return id;
  }

  async follow(id: string, since: number, waitMs = 20_000): Promise<Followed> {
    const followed = await this.json<Followed>(await this.call("GET", `/v1/jobs/${id}/events?since=${since}&wait=${waitMs}`, undefined, waitMs + 30_000), "following the build");
    if (!followed || !Array.isArray(followed.events) || typeof followed.state !== "string") throw new JobsError("following the build: the server's answer is not a job");
    return followed;
  }

  /** The submitter answers a worker's ask for secrets (over this connection only; the server keeps nothing). */
  async answerSecrets(id: string, values: Record<string, string>): Promise<void> {
    const response = await this.call("POST", `/v1/jobs/${id}/secrets/answer`, { values });
    if (!response.ok && response.status !== 409) throw new JobsError(`answering for the build's secrets: HTTP ${response.status} ${await errorText(response)}`);
  }

  /** The worker's side: the values of its build's secrets, from the submitter, through the server. */
  async askSecrets(id: string, lease: string, ids: string[]): Promise<Record<string, string>> {
    const response = await this.call("POST", `/v1/jobs/${id}/secrets`, { lease, ids }, 120_000);
    const { values } = await this.json<{ values?: unknown }>(response, "asking for the build's secrets");
    if (typeof values !== "object" || values === null) throw new JobsError("asking for the build's secrets: the answer holds no values");
    return Object.fromEntries(Object.entries(values).filter(([k, v]) => ids.includes(k) && typeof v === "string")) as Record<string, string>;
  }

  /** The submitter passes its agents' replies (base64, by ask id) back to the worker's build. */
  async answerAgent(id: string, replies: Record<string, string>): Promise<void> {
    const response = await this.call("POST", `/v1/jobs/${id}/ssh/answer`, { replies });
    if (!response.ok) throw new JobsError(`answering for the build's ssh agent: HTTP ${response.status} ${await errorText(response)}`);
  }

  /**
   * The worker's side: one message to the submitter's agent `agent` on connection `conn`, and
   * its reply (undefined when the submitter did not answer); `undefined` data closes the connection.
   */
  async askAgent(id: string, lease: string, message: { agent: string; conn: string; data?: Buffer }): Promise<Buffer | undefined> {
    const { agent, conn, data } = message;
    const response = await this.call("POST", `/v1/jobs/${id}/ssh`, { lease, agent, conn, ...(data ? { data: data.toString("base64") } : { close: true }) }, 60_000);
    if (response.status === 504 || response.status === 409) return undefined;
    const reply = await this.json<{ data?: unknown }>(response, "reaching the submitter's ssh agent");
    return typeof reply.data === "string" ? Buffer.from(reply.data, "base64") : undefined;
  }

  async cancel(id: string): Promise<void> {
    await this.call("DELETE", `/v1/jobs/${id}`);
  }

  /** The next job for this worker, or undefined when none came within the wait. */
  /** `cancel` abandons the long poll (a worker told to stop does not wait it out). */
  async claim(worker: { name: string; labels: Record<string, string>; holds: string }, waitMs = 20_000, cancel?: AbortSignal): Promise<Claimed | undefined> {
    const response = await this.call("POST", `/v1/workers/claim?wait=${waitMs}`, worker, waitMs + 30_000, cancel);
    if (response.status === 204) return undefined;
    const claimed = await this.json<Claimed>(response, "claiming a job");
    // The id names the job's work directory and goes into URLs and the log: a job id, or nothing.
    if (typeof claimed?.id !== "string" || !JOB_ID.test(claimed.id) || typeof claimed.lease !== "string" || !Number.isSafeInteger(claimed.leaseMs)) {
      throw new JobsError("claiming a job: the server's answer is not a job (an id, a lease and its length)");
    }
    return claimed;
  }

  /** "ok", "cancelled" (the submitter gave up), or "lost" (the lease went to another worker). */
  async heartbeat(id: string, lease: string): Promise<"ok" | "cancelled" | "lost"> {
    const response = await this.call("POST", `/v1/jobs/${id}/heartbeat`, { lease });
    if (response.status === 409) return "lost";
    const { state } = await this.json<{ state: "ok" | "cancelled" }>(response, "keeping the job");
    return state;
  }

  async events(id: string, lease: string, events: unknown[]): Promise<boolean> {
    return (await this.call("POST", `/v1/jobs/${id}/events`, { lease, events })).ok;
  }

  async finish(id: string, lease: string, outcome: { result: unknown } | { error: string }): Promise<boolean> {
    return (await this.call("POST", `/v1/jobs/${id}/finish`, { lease, ...outcome })).ok;
  }

  async release(id: string, lease: string): Promise<void> {
    await this.call("POST", `/v1/jobs/${id}/release`, { lease });
  }

  /** Uploads a file as a blob unless the server has it; returns its BLAKE3 name. */
  async putBlob(file: string): Promise<string> {
    const hash = hashFile(file).digest.toString("hex");
    await this.upload(hash, () => Bun.file(file));
    return hash;
  }

  /**
   * Uploads what an open descriptor holds as the blob named `hash` (the server checks the name
   * while it streams, so a file changed since it was hashed is refused); closes the descriptor.
   */
  async putBlobFrom(fd: number, hash: string): Promise<void> {
    try {
      await this.upload(hash, () => Bun.file(fd));
    } finally {
      closeSync(fd);
    }
  }

  private async upload(hash: string, body: () => Blob) {
    const head = await this.call("HEAD", `/v1/blobs/${hash}`);
    if (head.status === 200) return;
    let put: Response;
    try {
      // A build's inputs go up as such (a read-only token may send them); a server without tokens takes blobs as they are.
      put = await fetch(`${this.base}/v1/${this.options.token ? "inputs" : "blobs"}/${hash}`, {
        method: this.options.token ? "POST" : "PUT",
        headers: { ...(this.options.token ? { authorization: `Bearer ${this.options.token}` } : {}), "content-type": "application/octet-stream" },
        body: body(),
        tls: this.options.tls,
      } as RequestInit);
    } catch (error) {
      throw new JobsError(`uploading blob ${hash.slice(0, 12)} to ${this.base}: ${(error as Error).message}`);
    }
    if (!put.ok) throw new JobsError(`uploading blob ${hash.slice(0, 12)} to ${this.base}: HTTP ${put.status} ${await errorText(put)}`);
  }
}

async function errorText(response: Response): Promise<string> {
  let text: string;
  try {
    text = (await readBodyBytes(response, 4096, "an error answer", () => "too large")).toString("utf8");
  } catch {
    return "";
  }
  // The server answers {"error": …}; a proxy in between answers text, which is shown as it is.
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const error = (parsed as { error?: unknown } | undefined)?.error;
  return terminalText(typeof error === "string" ? error : text.trim(), { max: 300 });
}
