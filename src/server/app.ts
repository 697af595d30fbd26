/**
 * The cache server's HTTP API (Hono, web-standard Request/Response):
 *   HEAD|GET|PUT /v1/blobs/{blake3}   HEAD|GET|PUT /v1/actions/{key}   GET /v1/conflicts
 *   GET /healthz   GET /metrics
 * Errors are JSON `{ "error": "..." }`: 400 bad input, a hash mismatch or a bad signature,
 * 401 no valid token, 403 a read-only token writing, 404 a miss, 409 a different result for a
 * key that has one (actions are write-once), 413 over the size limit.
 */
import { Hono, type Context } from "hono";
import { ActionConflict, HASH, UploadRejected, type Storage } from "./storage.ts";
import type { TokenSet } from "./auth.ts";
import type { Metrics } from "./metrics.ts";
import type { Logger } from "./log.ts";

const MAX_ACTION_BYTES = 1024 * 1024;

type Env = { Variables: { role: "rw" | "ro"; token: string; bytesIn: number; bytesOut: number } };

export function createApp(storage: Storage, tokens: TokenSet, metrics: Metrics, log: Logger): Hono<Env> {
  const app = new Hono<Env>();
  const error = (c: Context, status: 400 | 401 | 403 | 404 | 409 | 413 | 500, message: string) => c.json({ error: message }, status);
  const CONFLICTS = ["memobuild_action_conflicts_total", "Action uploads refused because the key already had a different result"] as const;
  metrics.inc(...CONFLICTS, {}, 0); // present from the start, so an alert can watch it

  app.use("*", async (c, next) => {
    const started = performance.now();
    c.set("bytesIn", 0);
    c.set("bytesOut", 0);
    await next();
    const route = c.req.path.startsWith("/v1/blobs/") ? "blobs" : c.req.path.startsWith("/v1/actions/") ? "actions" : c.req.path.slice(1) || "root";
    metrics.inc("memobuild_requests_total", "HTTP requests by method, route and status", { method: c.req.method, route, status: String(c.res.status) });
    const token = c.get("token");
    if (token) storage.recordTokenUse(token, c.get("bytesIn"), c.get("bytesOut"));
    log.info("request", { method: c.req.method, path: c.req.path, status: c.res.status, ms: Math.round(performance.now() - started), token });
  });

  app.get("/healthz", (c) => c.json({ status: "ok" }));

  app.use("/v1/*", async (c, next) => {
    const auth = tokens.check(c.req.header("authorization"));
    if (!auth.ok) return error(c, 401, auth.message);
    c.set("role", auth.role);
    c.set("token", auth.id);
    if (c.req.method === "PUT" && auth.role !== "rw") return error(c, 403, "this token is read-only");
    await next();
  });

  app.get("/metrics", (c) => {
    if (tokens.enabled && !tokens.check(c.req.header("authorization")).ok) return error(c, 401, "a bearer token is required");
    const { blobs, actions } = storage.counts();
    metrics.set("memobuild_storage_bytes", "Bytes of blobs stored", storage.storageBytes());
    metrics.set("memobuild_blobs", "Blobs stored", blobs);
    metrics.set("memobuild_actions", "Actions stored", actions);
    metrics.set("memobuild_evictions", "Blobs and actions evicted since start", storage.evictions);
    return c.text(metrics.render(), 200, { "content-type": "text/plain; version=0.0.4" });
  });

  const validHash = (c: Context, name: string) => HASH.test(c.req.param(name) ?? "");

  app.on(["GET", "HEAD"], "/v1/blobs/:hash", (c) => {
    if (!validHash(c, "hash")) return error(c, 400, "a blob is named by its 64-hex-digit BLAKE3 hash");
    const hash = c.req.param("hash");
    const size = storage.hasBlob(hash) ? storage.blobSize(hash) : undefined;
    if (size === undefined) {
      metrics.inc("memobuild_cache_misses_total", "Lookups that found nothing", { kind: "blob" });
      return error(c, 404, "no such blob");
    }
    metrics.inc("memobuild_cache_hits_total", "Lookups that found what they asked for", { kind: "blob" });
    storage.touchBlob(hash);
    if (c.req.method === "HEAD") return c.body(null, 200, { "content-length": String(size) });
    c.set("bytesOut", size);
    metrics.inc("memobuild_bytes_out_total", "Bytes sent in blob and action bodies", {}, size);
    const headers = { "content-type": "application/octet-stream", "content-length": String(size) };
    const small = storage.smallBlob(hash);
    return new Response(small ?? Bun.file(storage.blobPath(hash)), { headers });
  });

  app.put("/v1/blobs/:hash", async (c) => {
    if (!validHash(c, "hash")) return error(c, 400, "a blob is named by its 64-hex-digit BLAKE3 hash");
    const body = c.req.raw.body;
    if (!body) return error(c, 400, "the request has no body");
    const length = c.req.header("content-length");
    try {
      const result = await storage.putBlob(c.req.param("hash"), body, length ? Number(length) : undefined);
      c.set("bytesIn", result.size);
      metrics.inc("memobuild_bytes_in_total", "Bytes received in uploads", {}, result.size);
      storage.evict();
      return c.json({ hash: c.req.param("hash"), size: result.size }, result.existed ? 200 : 201);
    } catch (cause) {
      if (!(cause instanceof UploadRejected)) throw cause;
      metrics.inc("memobuild_upload_rejections_total", "Uploads refused, by reason", { reason: cause.reason });
      return error(c, cause.status, cause.message);
    }
  });

  app.on(["GET", "HEAD"], "/v1/actions/:key", (c) => {
    if (!validHash(c, "key")) return error(c, 400, "an action is named by its 64-hex-digit key");
    const body = c.req.method === "HEAD" ? (storage.hasAction(c.req.param("key")) ? "" : undefined) : storage.getAction(c.req.param("key"));
    if (body === undefined) {
      metrics.inc("memobuild_cache_misses_total", "Lookups that found nothing", { kind: "action" });
      return error(c, 404, "no such action");
    }
    metrics.inc("memobuild_cache_hits_total", "Lookups that found what they asked for", { kind: "action" });
    if (c.req.method === "HEAD") return c.body(null, 200);
    c.set("bytesOut", body.length);
    metrics.inc("memobuild_bytes_out_total", "Bytes sent in blob and action bodies", {}, body.length);
    return c.body(body, 200, { "content-type": "application/json" });
  });

  app.put("/v1/actions/:key", async (c) => {
    if (!validHash(c, "key")) return error(c, 400, "an action is named by its 64-hex-digit key");
    const text = await c.req.text();
    if (text.length > MAX_ACTION_BYTES) {
      metrics.inc("memobuild_upload_rejections_total", "Uploads refused, by reason", { reason: "too-large" });
      return error(c, 413, `an action may be at most ${MAX_ACTION_BYTES} bytes`);
    }
    let outcome: "stored" | "same";
    try {
      outcome = storage.putAction(c.req.param("key"), text, c.get("token"));
    } catch (cause) {
      if (!(cause instanceof UploadRejected)) throw cause;
      metrics.inc("memobuild_upload_rejections_total", "Uploads refused, by reason", { reason: cause.reason });
      if (cause instanceof ActionConflict) {
        metrics.inc(...CONFLICTS);
        log.warn("conflicting result refused", { ...cause.conflict });
      }
      return error(c, cause.status, cause.message);
    }
    c.set("bytesIn", text.length);
    metrics.inc("memobuild_bytes_in_total", "Bytes received in uploads", {}, text.length);
    return c.json({ key: c.req.param("key") }, outcome === "stored" ? 201 : 200);
  });

  app.get("/v1/conflicts", (c) => {
    const key = c.req.query("key");
    if (key !== undefined && !HASH.test(key)) return error(c, 400, "key must be a 64-hex-digit step key");
    return c.json({ conflicts: storage.conflicts({ key, limit: 1000 }) });
  });

  app.notFound((c) => error(c, 404, `no route for ${c.req.method} ${c.req.path}`));
  app.onError((cause, c) => {
    log.error("internal error", { path: c.req.path, error: String(cause) });
    return error(c, 500, "internal error");
  });
  return app;
}
