/**
 * GET and HEAD of a blob: the server's hottest request (every remote hit of every build asks
 * for blobs). Hono's routing, context and middleware chain cost a 4 KiB hit about as much as
 * everything else it does (a CPU profile under wrk: Hono's router, URL parsing and compose took
 * a third of the JavaScript time, prom-client label hashing a sixth), so `fetch` answers a
 * hit before Hono, with the same checks, and hands every other request, and every request it
 * does not answer the plain way, to Hono unchanged:
 *  - no valid bearer token: the dashboard session path (cookie, Origin), or Hono's 401 words;
 *  - a miss, a failure, a path with a query or anything but 64 hex digits: Hono, as before.
 * A token is checked on every request (TokenSet.check), never remembered per connection.
 * Blobs are verified when stored (Storage.putBlob), so what is served here is what was checked.
 */
import type { Hono } from "hono";
import type { AppParts } from "./app-parts.ts";
import type { AppEnv } from "./http.ts";
import { HASH, Storage } from "./storage.ts";

/** A blob's answer, and how many of its bytes count as sent for the token's use. */
export interface BlobAnswer {
  response: Response;
  bytesOut: number;
}

/** Hono's `fetch` (Bun passes the server as `env`, which Hono's WebSocket upgrade needs). */
export type Fetch = Hono<AppEnv>["fetch"];

const PREFIX = "/v1/blobs/";

export class BlobReads {
  private readonly hits;
  private readonly bytesOut;
  /** Requests answered here, by method and status (the counter the middleware counts in too). */
  private readonly requests;
  private readonly seconds;

  constructor(private readonly parts: AppParts) {
    const { metrics } = parts;
    this.hits = metrics.series(metrics.hits, { kind: "blob" });
    this.bytesOut = metrics.series(metrics.bytesOut);
    this.requests = {
      GET: metrics.series(metrics.requests, { method: "GET", route: "blobs", status: "200" }),
      HEAD: metrics.series(metrics.requests, { method: "HEAD", route: "blobs", status: "200" }),
      redirect: metrics.series(metrics.requests, { method: "GET", route: "blobs", status: "307" }),
    };
    this.seconds = { GET: metrics.requestSeconds.series("GET", "blobs"), HEAD: metrics.requestSeconds.series("HEAD", "blobs") };
  }

  /**
   * A stored blob's answer (hit counted, access time recorded); undefined when it is not
   * stored, with nothing counted: the caller answers the miss. Synchronous for a GET of a blob
   * held in memory, the most common hit, so that one costs no promise.
   */
  answer(method: string, hash: string): BlobAnswer | Promise<BlobAnswer | undefined> {
    // A GET of a blob this server holds in memory needs no question to the index: its bytes are
    // its name, right whoever stored or evicted it since. (A HEAD asks: an uploader trusts it.)
    const inMemory = method === "GET" ? this.parts.storage.memoryCopy(hash) : undefined;
    if (inMemory) return this.hit(hash, new Response(inMemory), inMemory.size);
    return this.fromStore(method, hash);
  }

  private async fromStore(method: string, hash: string): Promise<BlobAnswer | undefined> {
    const { storage } = this.parts;
    const size = await storage.blobSize(hash);
    if (size === undefined) return undefined;
    if (method === "HEAD") return this.hit(hash, new Response(null, { headers: { "content-length": String(size) } }), 0);
    const presign = storage.blobs.presign?.bind(storage.blobs);
    if (this.parts.blobsRedirect && presign && size > Storage.SMALL_BLOB) {
      // The client fetches from the store and verifies the bytes as it verifies any download.
      return this.hit(hash, new Response(null, { status: 307, headers: { location: presign(hash, 300) } }), size);
    }
    const small = await storage.smallBlob(hash, size);
    // A small blob is a typed Blob (its Response says its type and length by itself).
    return this.hit(hash, small ? new Response(small) : new Response(storage.blobs.body(hash), { headers: octets(size) }), size);
  }

  /** Counted once the answer is made: a read that fails is no hit (and Hono answers it again). */
  private hit(hash: string, response: Response, bytesOut: number): BlobAnswer {
    this.hits.add();
    this.parts.storage.touchBlob(hash);
    if (bytesOut) this.bytesOut.add(bytesOut);
    return { response, bytesOut };
  }

  /** `fallback` (Hono's fetch) with blob hits answered first (see the top of this file). */
  fetch(fallback: Fetch): Fetch {
    return (request, env, executionCtx) => {
      const method = request.method;
      const hash = method === "GET" || method === "HEAD" ? blobOf(request.url) : undefined;
      if (hash === undefined) return fallback(request, env, executionCtx);
      const { tokens } = this.parts;
      // No header, a wrong one (a dashboard session, or a 401 to word): Hono's middleware decides.
      const auth = tokens.check(request.headers.get("authorization"));
      if (!auth.ok) return fallback(request, env, executionCtx);
      const started = performance.now();
      const answer = this.answer(method, hash);
      if (!(answer instanceof Promise)) return this.record(method, hash, answer, auth.id, started);
      const done = (found: BlobAnswer | undefined) => (found ? this.record(method, hash, found, auth.id, started) : fallback(request, env, executionCtx));
      return answer.then(done, () => fallback(request, env, executionCtx));
    };
  }

  /** What the app's request middleware records of a request, for one answered here. */
  private record(method: string, hash: string, answer: BlobAnswer, token: string, started: number): Response {
    const { metrics, storage, log } = this.parts;
    const status = answer.response.status;
    (status === 307 ? this.requests.redirect : method === "GET" ? this.requests.GET : this.requests.HEAD).add();
    (method === "GET" ? this.seconds.GET : this.seconds.HEAD).observe((performance.now() - started) / 1000);
    storage.recordTokenUse(token, 0, answer.bytesOut);
    metrics.traffic.requests++;
    log.debug("request", { method, path: PREFIX + hash, status, ms: Math.round(performance.now() - started), token });
    return answer.response;
  }
}

const octets = (size: number) => ({ "content-type": "application/octet-stream", "content-length": String(size) });

/** The hash of a URL whose path is exactly /v1/blobs/{64 hex digits} (no query), else undefined. */
export function blobOf(url: string): string | undefined {
  const path = url.indexOf("/", url.indexOf("//") + 2);
  if (path < 0 || url.length - path !== PREFIX.length + 64 || !url.startsWith(PREFIX, path)) return undefined;
  const hash = url.slice(path + PREFIX.length);
  return HASH.test(hash) ? hash : undefined;
}
