/**
 * Remote execution's routes (see jobs.ts):
 *   POST   /v1/jobs                    any token: submit a build (a read-only token too: the
 *                                      results are written by the worker, never the submitter;
 *                                      one asking for an entitlement, --allow, or setting a --ulimit
 *                                      beyond UNTRUSTED_ULIMITS, only a read-write token)
 *   GET    /v1/jobs                    recent jobs: state, worker, attempts, cache affinity
 *   GET    /v1/jobs/{id}/events?since=N&wait=MS   the submitter follows its job (long poll)
 *   DELETE /v1/jobs/{id}                the submitter cancels
 *   POST   /v1/workers/claim            worker role: the best job for it, or 204 after a wait
 *   POST   /v1/jobs/{id}/heartbeat | /events | /finish | /release   worker role, under the job's lease
 *   POST   /v1/jobs/{id}/secrets        worker role: waits for the submitter's answer (secret-relay.ts)
 *   POST   /v1/jobs/{id}/secrets/answer the submitter answers (it sees `asks` while it follows)
 *   POST   /v1/jobs/{id}/ssh            worker role: one message to the submitter's ssh agent; waits for its reply
 *   POST   /v1/jobs/{id}/ssh/answer     the submitter answers with its agent's replies (it sees `agentAsks`)
 *   GET    /v1/workers                  registered workers, what they run, their steps run and cached (hit rate)
 */
import { Hono, type Context } from "hono";
import { BloomFilter } from "../util/bloom.ts";
import { boundedText, error, type AppEnv } from "./http.ts";
import type { JobQueue } from "./jobs.ts";
import { MemoryAgentRelay, MemorySecretRelay, type AgentRelay, type SecretRelay } from "./secret-relay.ts";
import type { Role } from "./auth.ts";
import type { ClaimSubmitter } from "../remote/jobs-client.ts";
import { untrustedUlimitProblems } from "../remote/job-definition.ts";

const MAX_JOB_BYTES = 4 * 1024 * 1024;
const MAX_EVENTS_BYTES = 4 * 1024 * 1024;
const MAX_WAIT_MS = 25_000;

async function jsonBody(c: Context, max: number): Promise<Record<string, unknown> | undefined> {
  const text = await boundedText(c.req.raw, max);
  if (text === undefined) return undefined;
  try {
    const body = JSON.parse(text) as unknown;
    return body && typeof body === "object" && !Array.isArray(body) ? (body as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

const waitOf = (c: Context) => Math.min(MAX_WAIT_MS, Math.max(0, Number(c.req.query("wait") ?? 0) || 0));
const isWorker = (c: Context) => c.get("role") === "worker";

/** How long a worker waits for the submitter to answer for its build's secrets. */
const SECRET_WAIT_MS = 60_000;

/** How long a message to the submitter's ssh agent waits for its reply. */
const AGENT_WAIT_MS = 30_000;
/** An ssh agent message is at most 256 KiB (OpenSSH's limit), base64 a third more. */
const MAX_AGENT_MESSAGE = 256 * 1024;

/** Each worker with how the steps of its finished builds were satisfied, and its hit rate (cached / counted). */
export async function workersWithHits(queue: JobQueue) {
  const counts = await queue.stepCounts();
  return (await queue.workers()).map((worker) => {
    const steps = counts.get(worker.name) ?? { executed: 0, cachedLocal: 0, cachedRemote: 0 };
    const total = steps.executed + steps.cachedLocal + steps.cachedRemote;
    return { ...worker, steps, ...(total ? { hitRate: (steps.cachedLocal + steps.cachedRemote) / total } : {}) };
  });
}

export function jobRoutes(
  queue: JobQueue,
  roleOf: (submitter: string) => Role | undefined = () => undefined,
  relay: SecretRelay = new MemorySecretRelay((job) => queue.notify(job)),
  agents: AgentRelay = new MemoryAgentRelay((job) => queue.notify(job)),
): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.post("/v1/jobs", async (c) => {
    const body = await jsonBody(c, MAX_JOB_BYTES);
    if (!body || typeof body.definition !== "object" || body.definition === null) return error(c, 400, `a job is JSON { "definition": {...}, "hints": [keys] } of at most ${MAX_JOB_BYTES} bytes`);
    // Entitlements go to trusted submitters only; the worker checks again at claim (the role may change since).
    const asks = (body.definition as { allow?: unknown }).allow;
    const role = roleOf(c.get("token"));
    if (Array.isArray(asks) && asks.length > 0 && role !== "rw" && role !== "worker") return error(c, 403, `--allow ${asks.join(", ")}: a read-only token's build is never granted an entitlement (submit it with a read-write token)`);
    // So are limits that give a RUN power over the shared worker (rtprio, memlock…); the worker checks again at claim too.
    const ulimits = (body.definition as { sandbox?: { ulimit?: unknown } }).sandbox?.ulimit;
    const limitProblems = Array.isArray(ulimits) ? untrustedUlimitProblems(ulimits.map(String)) : [];
    if (limitProblems.length && role !== "rw" && role !== "worker") return error(c, 403, limitProblems.join("; "));
    const hints = Array.isArray(body.hints) ? body.hints.filter((h): h is string => typeof h === "string" && /^[0-9a-f]{64}$/.test(h)).slice(0, 10_000) : [];
    return c.json({ id: await queue.submit(c.get("token"), body.definition, hints) }, 201);
  });

  app.get("/v1/jobs", async (c) => c.json({ jobs: await queue.jobs(), depth: await queue.depth() }));
  app.get("/v1/workers", async (c) => c.json({ workers: await workersWithHits(queue) }));

  app.get("/v1/jobs/:id/events", async (c) => {
    const id = c.req.param("id");
    const since = Math.max(0, Number(c.req.query("since") ?? 0) || 0);
    const wait = waitOf(c);
    const deadline = Date.now() + wait;
    for (;;) {
      await queue.expire();
      const job = await queue.follow(id, since);
      // Another token's job is as absent as one that never was.
      if (!job || job.submitter !== c.get("token")) return error(c, 404, "no such job");
      const { submitter: _, ...shown } = job;
      const asks = await relay.asks(id);
      const agentAsks = await agents.asks(id);
      const ended = job.state !== "queued" && job.state !== "running";
      if (job.events.length || asks || agentAsks || ended || Date.now() >= deadline) return c.json({ ...shown, ...(asks ? { asks } : {}), ...(agentAsks ? { agentAsks } : {}) });
      await queue.changed(Math.min(1000, deadline - Date.now()), id);
    }
  });

  app.delete("/v1/jobs/:id", async (c) => ((await queue.cancel(c.req.param("id"), c.get("token"))) ? c.json({ cancelled: true }) : error(c, 404, "no such job running")));

  app.post("/v1/workers/claim", async (c) => {
    if (!isWorker(c)) return error(c, 403, "only a worker token may claim jobs");
    const body = await jsonBody(c, 64 * 1024);
    if (!body || typeof body.name !== "string" || !/^[\w.@-]{1,64}$/.test(body.name)) return error(c, 400, "a claim names its worker (letters, digits, . _ - @; at most 64)");
    const labels = Object.fromEntries(Object.entries(typeof body.labels === "object" && body.labels ? body.labels : {}).filter(([k, v]) => typeof v === "string" && k.length <= 64 && (v as string).length <= 256).slice(0, 32)) as Record<string, string>;
    const worker = { name: body.name, labels, holds: BloomFilter.decode(body.holds) };
    const deadline = Date.now() + waitOf(c);
    for (;;) {
      const claimed = await queue.claim(worker);
      if (claimed) {
        // The role now, not at submission: a token taken out of the file since is trusted no more.
        const id = (await queue.follow(claimed.id, Number.MAX_SAFE_INTEGER))?.submitter ?? "";
        const role = roleOf(id);
        const submitter: ClaimSubmitter = { id, trusted: role === "rw" || role === "worker" };
        return c.json({ ...claimed, submitter });
      }
      if (Date.now() >= deadline) return c.body(null, 204);
      await queue.changed(Math.min(1000, deadline - Date.now()));
    }
  });

  app.post("/v1/jobs/:id/heartbeat", async (c) => {
    if (!isWorker(c)) return error(c, 403, "only a worker token may hold a job");
    const body = await jsonBody(c, 4096);
    const state = await queue.heartbeat(c.req.param("id"), String(body?.lease ?? ""));
    return state === "lost" ? error(c, 409, "the lease on this job is not yours any more") : c.json({ state });
  });

  app.post("/v1/jobs/:id/events", async (c) => {
    if (!isWorker(c)) return error(c, 403, "only a worker token may report a job's progress");
    const body = await jsonBody(c, MAX_EVENTS_BYTES);
    if (!body || !Array.isArray(body.events)) return error(c, 400, 'events are JSON { "lease": ..., "events": [...] }');
    return (await queue.appendEvents(c.req.param("id"), String(body.lease ?? ""), body.events)) ? c.json({ ok: true }) : error(c, 409, "the lease on this job is not yours any more");
  });

  // A worker asks for its build's secrets; the request waits until the submitter answers.
  app.post("/v1/jobs/:id/secrets", async (c) => {
    if (!isWorker(c)) return error(c, 403, "only a worker token may ask for a job's secrets");
    const body = await jsonBody(c, 64 * 1024);
    const ids = Array.isArray(body?.ids) ? body.ids.filter((i): i is string => typeof i === "string" && i.length <= 256).slice(0, 64) : [];
    if (!(await queue.holds(c.req.param("id"), String(body?.lease ?? "")))) return error(c, 409, "the lease on this job is not yours any more");
    const values = await relay.ask(c.req.param("id"), ids, SECRET_WAIT_MS);
    // Never logged, never stored: the answer goes from the submitter's request to this one.
    return values ? c.json({ values }) : error(c, 504, "the submitter did not answer for the build's secrets (it must follow its build)");
  });

  app.post("/v1/jobs/:id/secrets/answer", async (c) => {
    const job = await queue.follow(c.req.param("id"), Number.MAX_SAFE_INTEGER);
    if (!job || job.submitter !== c.get("token")) return error(c, 404, "no such job");
    const body = await jsonBody(c, 4 * 1024 * 1024);
    if (!body || typeof body.values !== "object" || body.values === null) return error(c, 400, 'an answer is JSON { "values": { "ID": "value" } }');
    return (await relay.answer(c.req.param("id"), body.values as Record<string, unknown>)) ? c.json({ ok: true }) : error(c, 409, "the job's worker is not waiting for secrets");
  });

  // A RUN on the worker talks to the submitter's ssh agent, one message at a time (never stored).
  app.post("/v1/jobs/:id/ssh", async (c) => {
    if (!isWorker(c)) return error(c, 403, "only a worker token may reach a job's ssh agent");
    const body = await jsonBody(c, MAX_AGENT_MESSAGE * 2);
    const agent = body?.agent, conn = body?.conn, data = body?.data;
    if (typeof agent !== "string" || !/^[\w.-]{1,256}$/.test(agent) || typeof conn !== "string" || !/^[\w-]{1,64}$/.test(conn)) return error(c, 400, 'an agent message is JSON { "lease", "agent": ID, "conn": ID, "data": base64 } or { ..., "close": true }');
    if (body?.close !== true && (typeof data !== "string" || data.length === 0 || data.length > (MAX_AGENT_MESSAGE * 4) / 3 + 4)) return error(c, 400, "an agent message is base64 of at most 256 KiB");
    if (!(await queue.holds(c.req.param("id"), String(body?.lease ?? "")))) return error(c, 409, "the lease on this job is not yours any more");
    const ask = body?.close === true ? { agent, conn, close: true as const } : { agent, conn, data: data as string };
    const reply = await agents.ask(c.req.param("id"), ask, AGENT_WAIT_MS);
    return reply !== undefined ? c.json({ data: reply }) : error(c, 504, "the submitter's ssh agent did not answer (the client must follow its build)");
  });

  app.post("/v1/jobs/:id/ssh/answer", async (c) => {
    const job = await queue.follow(c.req.param("id"), Number.MAX_SAFE_INTEGER);
    if (!job || job.submitter !== c.get("token")) return error(c, 404, "no such job");
    const body = await jsonBody(c, MAX_AGENT_MESSAGE * 2 * 8);
    if (!body || typeof body.replies !== "object" || body.replies === null) return error(c, 400, 'an answer is JSON { "replies": { "ASK ID": base64 } }');
    return c.json({ taken: await agents.answer(c.req.param("id"), body.replies as Record<string, unknown>) });
  });

  app.post("/v1/jobs/:id/release", async (c) => {
    if (!isWorker(c)) return error(c, 403, "only a worker token may hand a job back");
    const body = await jsonBody(c, 4096);
    return (await queue.release(c.req.param("id"), String(body?.lease ?? ""))) ? c.json({ ok: true }) : error(c, 409, "the lease on this job is not yours any more");
  });

  app.post("/v1/jobs/:id/finish", async (c) => {
    if (!isWorker(c)) return error(c, 403, "only a worker token may finish a job");
    const body = await jsonBody(c, MAX_JOB_BYTES);
    if (!body || (body.result === undefined && typeof body.error !== "string")) return error(c, 400, 'a job ends with { "lease": ..., "result": {...} } or { "lease": ..., "error": "..." }');
    const outcome = body.result !== undefined ? { result: body.result } : { error: String(body.error) };
    return (await queue.finish(c.req.param("id"), String(body.lease ?? ""), outcome)) ? c.json({ ok: true }) : error(c, 409, "the lease on this job is not yours any more");
  });

  return app;
}
