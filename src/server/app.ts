/**
 * The cache server's HTTP API (Hono, web-standard Request/Response):
 *   HEAD|GET|PUT /v1/blobs/{blake3}   HEAD|GET|PUT /v1/actions/{key}   GET /v1/conflicts   GET /v1/unreproducible
 *   GET /healthz   GET /metrics   and the build hub (hub-routes.ts): builds, events, the dashboard
 * Errors are JSON `{ "error": "..." }`: 400 bad input, a hash mismatch or a bad signature,
 * 401 no valid token, 403 a read-only token writing, 404 a miss, 409 a different result for a
 * key that has one from another writer (actions are write-once), 413 over the size limit. A
 * different result from the writer of the one kept is not a conflict: it is answered 200
 * "not-reproducible" with the files that differ, and recorded apart (GET /v1/unreproducible).
 */
import { Hono, type Context } from "hono";
import { getCookie } from "hono/cookie";
import { ActionConflict, HASH, Storage, UploadRejected, type ResultOrigin } from "./storage.ts";
import { BlobReads } from "./blob-reads.ts";
import { terminalText } from "../util/terminal-text.ts";
import { redactCredentials } from "../util/redact.ts";
import type { AuthResult } from "./auth.ts";
import { boundedText, error, sameOrigin, type AppEnv } from "./http.ts";
import { BUILD_ID, type BuildHub } from "./hub.ts";
import { SESSION_COOKIE } from "./sessions.ts";
import { hubRoutes } from "./hub-routes.ts";
import type { JobQueue } from "./jobs.ts";
import { jobRoutes, workersWithHits } from "./jobs-routes.ts";
import { mountRoutes } from "./mounts.ts";
import type { AppParts } from "./app-parts.ts";

const MAX_ACTION_BYTES = 1024 * 1024;



/**
 * The build and step an upload says it comes from (headers `memobuild-build`, `memobuild-step`,
 * the latter URI-encoded). A build id is kept only when it is this token's build (or one not
 * reported yet), or a worker uploads for the job it holds (`memobuild-job`, `memobuild-lease`)
 * and the build is that job's submitter's: nobody can make a result look like it came from
 * another team's build.
 */
async function resultOrigin(c: Context<AppEnv>, hub: BuildHub, jobs?: JobQueue): Promise<ResultOrigin> {
  const build = c.req.header("memobuild-build");
  const stepHeader = c.req.header("memobuild-step");
  let step: string | undefined;
  try {
    step = stepHeader === undefined ? undefined : terminalText(redactCredentials(decodeURIComponent(stepHeader)), { max: 300 });
  } catch {
    step = undefined; // not URI-encoded: said nothing usable
  }
  const owner = build !== undefined && BUILD_ID.test(build) ? await hub.store.owner(build) : null;
  const ours = owner !== null && (owner === undefined || owner === c.get("token") || (await heldJobOf(c, jobs)) === owner);
  return { ...(ours ? { build } : {}), ...(step ? { step } : {}) };
}

/** The submitter of the job a worker's upload says it is for, when that worker holds it now. */
async function heldJobOf(c: Context<AppEnv>, jobs: JobQueue | undefined): Promise<string | undefined> {
  const [job, lease] = [c.req.header("memobuild-job"), c.req.header("memobuild-lease")];
  if (c.get("role") !== "worker" || !jobs || !job || !lease || job.length > 128 || lease.length > 128 || !(await jobs.holds(job, lease))) return undefined;
  return (await jobs.follow(job, 2 ** 31 - 1))?.submitter; // no events wanted: past any job's last
}

/** The route a request counts under in metrics: a fixed set, never a client's path. */
function routeOf(path: string): string {
  if (path.startsWith("/v1/blobs/")) return "blobs";
  if (path.startsWith("/v1/actions/")) return "actions";
  if (path.startsWith("/v1/builds")) return "builds";
  if (path.startsWith("/v1/mounts")) return "mounts";
  if (path.startsWith("/assets/")) return "assets";
  const known = ["/v1/events", "/v1/conflicts", "/v1/unreproducible", "/v1/stats", "/healthz", "/readyz", "/metrics", "/login", "/logout", "/"];
  return known.includes(path) ? path.slice(1).replace("v1/", "") || "dashboard" : "other";
}

/**
 * A write another web site's page could make a visitor's browser send. Such a page can POST a
 * "simple" request (text/plain, a form) to any address, the loopback one of a tokenless server
 * too, without asking first; anything else (a PUT, a JSON body, an Authorization header) needs
 * the server's consent, which this server never gives. So a write is refused when the browser
 * says it comes from another site (Sec-Fetch-Site, Origin), and a POST that carries no token
 * must say it is JSON, which a cross-site page cannot send without that consent.
 */
function crossSiteWrite(c: Context): boolean {
  if (c.req.method === "GET" || c.req.method === "HEAD") return false;
  const site = c.req.header("sec-fetch-site");
  return (site !== undefined && site !== "same-origin" && site !== "none") || !sameOrigin(c);
}

function untypedAnonymousPost(c: Context): boolean {
  return c.req.method === "POST" && c.req.header("authorization") === undefined && !/^application\/json\s*(;|$)/i.test(c.req.header("content-type") ?? "");
}

export function createApp(parts: AppParts): Hono<AppEnv> {
  const { storage, tokens, metrics, log, hub, sessions } = parts;
  const app = new Hono<AppEnv>();
  const blobReads = new BlobReads(parts);

  app.use("*", async (c, next) => {
    const started = performance.now();
    c.set("bytesIn", 0);
    c.set("bytesOut", 0);
    await next();
    const route = routeOf(c.req.path);
    metrics.requests.inc({ method: c.req.method, route, status: String(c.res.status) });
    metrics.requestSeconds.observe({ method: c.req.method, route }, (performance.now() - started) / 1000);
    const token = c.get("token");
    if (token) storage.recordTokenUse(token, c.get("bytesIn"), c.get("bytesOut"));
    // Each request at debug; at info, the server says what an operator acts on, and a line a minute of traffic (server.ts).
    metrics.traffic.requests++;
    if (c.res.status >= 500) metrics.traffic.errors++;
    log.debug("request", { method: c.req.method, path: c.req.path, status: c.res.status, ms: Math.round(performance.now() - started), token });
  });

  app.get("/healthz", (c) => c.json({ status: "ok" }));

  // Readiness, apart from liveness: a replica whose database or blob store does not answer is
  // taken out of the load balancer's rotation, not restarted.
  app.get("/readyz", async (c) => {
    try {
      await parts.ready?.();
      return c.json({ status: "ready" });
    } catch (cause) {
      log.warn("not ready", { error: String(cause) });
      return error(c, 503, "the database or the blob store does not answer");
    }
  });

  /**
   * A bearer token, or a dashboard session: the cookie only reads (GET), and only from this
   * server's own pages (Origin), so another site cannot act with a logged-in browser.
   */
  const authenticate = async (c: Context): Promise<AuthResult> => {
    const header = c.req.header("authorization");
    if (header !== undefined || !tokens.enabled) return tokens.check(header);
    const session = await sessions.get(getCookie(c, SESSION_COOKIE));
    if (!session) return tokens.check(header);
    if (c.req.method !== "GET" || !sameOrigin(c)) {
      return { ok: false, status: 401, message: "a dashboard login may only read, from the dashboard" };
    }
    return { ok: true, role: session.role, id: session.token };
  };

  app.use("/v1/*", async (c, next) => {
    if (crossSiteWrite(c)) return error(c, 403, "a write from another site's page is refused");
    const auth = await authenticate(c);
    if (!auth.ok) return error(c, 401, auth.message);
    if (untypedAnonymousPost(c)) return error(c, 415, "a POST without a token must be JSON (content-type: application/json)");
    c.set("role", auth.role);
    c.set("token", auth.id);
    if (c.req.method === "PUT" && auth.role === "ro") return error(c, 403, "this token is read-only");
    await next();
  });

  app.get("/metrics", async (c) => {
    if (tokens.enabled && !tokens.check(c.req.header("authorization")).ok) return error(c, 401, "a bearer token is required");
    const { blobs, actions, bytes } = await storage.counts();
    metrics.storageBytes.set(bytes);
    metrics.blobs.set(blobs);
    metrics.actions.set(actions);
    if (parts.jobs) {
      metrics.queueDepth.set(await parts.jobs.depth());
      const workers = await workersWithHits(parts.jobs);
      metrics.workers.set(workers.filter((w) => w.state !== "gone").length);
      metrics.setWorkerHits(workers);
    }
    metrics.evictions.inc(storage.evictions - evictionsCounted);
    evictionsCounted = storage.evictions;
    return c.text(await metrics.render(), 200, { "content-type": metrics.contentType });
  });
  let evictionsCounted = 0;

  const validHash = (c: Context, name: string) => HASH.test(c.req.param(name) ?? "");

  app.on(["GET", "HEAD"], "/v1/blobs/:hash", async (c) => {
    if (!validHash(c, "hash")) return error(c, 400, "a blob is named by its 64-hex-digit BLAKE3 hash");
    const answer = await blobReads.answer(c.req.method, c.req.param("hash"));
    if (answer === undefined) {
      metrics.misses.inc({ kind: "blob" });
      return error(c, 404, "no such blob");
    }
    c.set("bytesOut", answer.bytesOut);
    return answer.response;
  });

  const storeBlob = async (c: Context<AppEnv>) => {
    if (!validHash(c, "hash")) return error(c, 400, "a blob is named by its 64-hex-digit BLAKE3 hash");
    const body = c.req.raw.body;
    if (!body) return error(c, 400, "the request has no body");
    const length = c.req.header("content-length");
    try {
      const result = await storage.putBlob(c.req.param("hash")!, body, length ? Number(length) : undefined);
      c.set("bytesIn", result.size);
      metrics.bytesIn.inc(result.size);
      const evicted = await storage.evict();
      if (evicted) log.info("evicted to stay under --max-size", { entries: evicted });
      return c.json({ hash: c.req.param("hash"), size: result.size }, result.existed ? 200 : 201);
    } catch (cause) {
      if (!(cause instanceof UploadRejected)) throw cause;
      metrics.uploadRejections.inc({ reason: cause.reason });
      return error(c, cause.status, cause.message);
    }
  };
  app.put("/v1/blobs/:hash", storeBlob);
  // The inputs of a build submitted for remote execution (context files, local base images), from
  // any token, a read-only one too: blobs are checked against their name and inert (only a
  // result points to a blob, and only workers write results of remote builds).
  if (parts.jobs) app.post("/v1/inputs/:hash", storeBlob);

  app.on(["GET", "HEAD"], "/v1/actions/:key", async (c) => {
    if (!validHash(c, "key")) return error(c, 400, "an action is named by its 64-hex-digit key");
    const key = c.req.param("key");
    const body = c.req.method === "HEAD" ? ((await storage.hasAction(key)) ? "" : undefined) : await storage.getAction(key);
    if (body === undefined) {
      metrics.misses.inc({ kind: "action" });
      return error(c, 404, "no such action");
    }
    metrics.hits.inc({ kind: "action" });
    if (c.req.method === "HEAD") return c.body(null, 200);
    c.set("bytesOut", body.length);
    metrics.bytesOut.inc(body.length);
    return c.body(body, 200, { "content-type": "application/json" });
  });

  app.put("/v1/actions/:key", async (c) => {
    if (!validHash(c, "key")) return error(c, 400, "an action is named by its 64-hex-digit key");
    const text = await boundedText(c.req.raw, MAX_ACTION_BYTES);
    if (text === undefined) {
      metrics.uploadRejections.inc({ reason: "too-large" });
      return error(c, 413, `an action may be at most ${MAX_ACTION_BYTES} bytes`);
    }
    let outcome: Awaited<ReturnType<Storage["putAction"]>>;
    try {
      outcome = await storage.putAction(c.req.param("key"), text, c.get("token"), await resultOrigin(c, hub, parts.jobs));
    } catch (cause) {
      if (!(cause instanceof UploadRejected)) throw cause;
      metrics.uploadRejections.inc({ reason: cause.reason });
      if (cause instanceof ActionConflict) {
        metrics.conflicts.inc();
        const conflict = tokens.namedSides(cause.conflict);
        log.warn("conflicting result refused", { ...conflict });
        await hub.conflict(conflict);
        return c.json({ error: cause.message, step: cause.conflict.step ?? null, firstBuild: cause.conflict.first.build ?? null }, 409);
      }
      return error(c, cause.status, cause.message);
    }
    c.set("bytesIn", text.length);
    metrics.bytesIn.inc(text.length);
    if (typeof outcome !== "string") {
      // Not a conflict: the writer of the result kept made another one. Kept apart, and said.
      metrics.unreproducible.inc();
      log.info("step not reproducible", { key: outcome.key, step: outcome.step, firstBuild: outcome.first.build, build: outcome.second.build });
      return c.json({ key: outcome.key, outcome: "not-reproducible", step: outcome.step, firstBuild: outcome.first.build, differences: outcome.differences }, 200);
    }
    // The signer kept: an uploader whose signature was not the one kept ("same" as a copy
    // stored unsigned-then-signed by someone else) learns it here.
    return c.json({ key: c.req.param("key"), outcome, signer: await storage.signerOf(c.req.param("key")) }, outcome === "same" ? 200 : 201);
  });

  app.get("/v1/unreproducible", async (c) => {
    const key = c.req.query("key");
    if (key !== undefined && !HASH.test(key)) return error(c, 400, "key must be a 64-hex-digit step key");
    return c.json({ unreproducible: await storage.unreproducible({ key, limit: 1000 }) });
  });

  app.get("/v1/conflicts", async (c) => {
    const key = c.req.query("key");
    if (key !== undefined && !HASH.test(key)) return error(c, 400, "key must be a 64-hex-digit step key");
    return c.json({ conflicts: (await storage.conflicts({ key, limit: 1000 })).map((conflict) => tokens.namedSides(conflict)) });
  });

  app.route("/", hubRoutes(parts));
  if (parts.jobs) app.route("/", jobRoutes(parts.jobs, (submitter) => tokens.roleOf(submitter), parts.secrets, parts.agents));
  if (parts.mounts) app.route("/", mountRoutes(parts.mounts, (id) => tokens.nameOf(id)));

  app.notFound((c) => error(c, 404, `no route for ${c.req.method} ${c.req.path}`));
  app.onError((cause, c) => {
    log.error("internal error", { path: c.req.path, error: String(cause) });
    return error(c, 500, "internal error");
  });
  // Blob hits are answered before Hono (blob-reads.ts), for the server and for tests alike.
  app.fetch = blobReads.fetch(app.fetch);
  return app;
}
