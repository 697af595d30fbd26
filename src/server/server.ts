/** `memobuild serve`: the cache server on Bun.serve. */
import { existsSync } from "node:fs";
import { UserError } from "../errors.ts";
import { createApp } from "./app.ts";
import type { TokenEntry } from "./auth.ts";
import { createLogger, type Logger } from "../util/log.ts";
import type { Storage } from "./storage.ts";
import { websocket } from "hono/bun";
import type { BuildHub } from "./hub.ts";
import { createParts, type PartsOptions } from "./parts.ts";
import { redactUrl } from "./pg.ts";

export interface ServeOptions {
  listen: string;
  dataDir: string;
  tokens: TokenEntry[];
  /** The address people open the dashboard at (behind a proxy), for links in webhooks; default: where it listens. */
  publicUrl?: string;
  tlsCert?: string;
  tlsKey?: string;
  /** Mutual TLS: only clients with a certificate signed by this CA complete the handshake. */
  tlsClientCa?: string;
  maxSize?: number;
  maxBlob?: number;
  mountBudget?: number;
  insecureNoAuth?: boolean;
  log?: Logger;
  /** Build history kept: builds older than this (ms) or beyond the newest `historyMaxBuilds` go. */
  historyMaxAgeMs?: number;
  historyMaxBuilds?: number;
  /** A running build silent this long is marked failed. */
  staleBuildMs?: number;
  webhooks?: PartsOptions["webhooks"];
  /** How often the traffic line is logged (default a minute). */
  trafficLogMs?: number;
  /** Remote execution: a worker's lease on a job without a heartbeat (default 30 s). */
  jobLeaseMs?: number;
  /** postgres://… and s3://… (see PartsOptions). */
  db?: string;
  blobs?: string;
  blobsEnv?: Record<string, string | undefined>;
  blobsRedirect?: boolean;
}

export interface RunningServer {
  url: string;
  storage: Storage;
  hub: BuildHub;
  /** Stops accepting; in-flight requests finish. */
  stop(): Promise<void>;
}

export function parseListen(listen: string): { hostname: string; port: number } {
  const match = /^(\[[^\]]+\]|[^:]*):(\d+)$/.exec(listen);
  if (!match) throw new UserError(`--listen ${listen}: use HOST:PORT, e.g. 127.0.0.1:7070`);
  return { hostname: match[1].replace(/^\[|\]$/g, "") || "0.0.0.0", port: Number(match[2]) };
}

function tlsOptions(options: ServeOptions) {
  const client = options.tlsClientCa ? { ca: Bun.file(options.tlsClientCa), requestCert: true, rejectUnauthorized: true } : {};
  return { cert: Bun.file(options.tlsCert!), key: Bun.file(options.tlsKey!), ...client };
}

const isLoopback = (host: string) => host === "localhost" || host === "::1" || /^127\./.test(host);

export async function startServer(options: ServeOptions): Promise<RunningServer> {
  const { hostname, port } = parseListen(options.listen);
  if (options.tokens.length === 0 && !isLoopback(hostname) && !options.insecureNoAuth) {
    throw new UserError(`refusing to listen on ${hostname} without a token: give --token or --token-file (or --insecure-no-auth)`);
  }
  if ((options.tlsCert === undefined) !== (options.tlsKey === undefined)) throw new UserError("--tls-cert and --tls-key go together");
  if (options.tlsClientCa && !options.tlsCert) throw new UserError("--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS)");
  for (const file of [options.tlsCert, options.tlsKey, options.tlsClientCa]) {
    if (file !== undefined && !existsSync(file)) throw new UserError(`TLS file ${file} does not exist`);
  }
  const log = options.log ?? createLogger();
  const parts = await createParts({ dataDir: options.dataDir, maxSize: options.maxSize, maxBlob: options.maxBlob, mountBudget: options.mountBudget, tokens: options.tokens, log, webhooks: options.webhooks, jobLeaseMs: options.jobLeaseMs, db: options.db, blobs: options.blobs, blobsEnv: options.blobsEnv, blobsRedirect: options.blobsRedirect });
  const { storage, history, hub, tokens } = parts;
  const app = createApp(parts);
  const retention = async () => {
    // A build silent for a day is not coming back (a step reports when it starts and ends, so
    // only a single step running that long is silent that long).
    const expired = await hub.expireStale(Date.now() - (options.staleBuildMs ?? 86_400_000));
    if (expired) log.info("builds that stopped reporting marked failed", { builds: expired });
    const removed = await history.prune({ before: Date.now() - (options.historyMaxAgeMs ?? 30 * 86_400_000), keep: options.historyMaxBuilds ?? 10_000, maxBytes: hub.historyMaxBytes });
    if (removed) log.info("build history pruned", { builds: removed });
  };
  await retention();
  const server = Bun.serve({
    hostname,
    port,
    fetch: app.fetch,
    websocket,
    // Blob sizes are limited by --max-blob (checked while streaming), not by a buffer.
    maxRequestBodySize: Number.MAX_SAFE_INTEGER,
    idleTimeout: 120,
    ...(options.tlsCert ? { tls: tlsOptions(options) } : {}),
  });
  const warn = (what: string) => (cause: unknown) => log.warn(what, { error: String(cause) });
  const flusher = setInterval(() => void storage.flush().catch(warn("access times could not be written")), 1000);
  const pruner = setInterval(() => void retention().catch(warn("history retention failed")), 600_000);
  // One line a minute of traffic at info (each request is at debug); nothing when there was none.
  const traffic = setInterval(() => {
    const { requests, errors } = parts.metrics.traffic;
    if (requests) log.info("traffic in the last minute", { requests, errors });
    parts.metrics.traffic.requests = parts.metrics.traffic.errors = 0;
  }, options.trafficLogMs ?? 60_000);
  const scheme = options.tlsCert ? "https" : "http";
  const url = `${scheme}://${hostname.includes(":") ? `[${hostname}]` : hostname}:${server.port}`;
  const stores = { db: options.db === undefined ? undefined : redactUrl(options.db), blobs: options.blobs };
  hub.publicUrl = options.publicUrl ?? url;
  log.info("listening", { url, data: options.dataDir, ...stores, auth: tokens.enabled ? "tokens" : "none", clientCertificates: options.tlsClientCa ? "required" : undefined });
  return {
    url,
    storage,
    hub,
    async stop() {
      // Watchers hold their sockets open: close them, or stopping waits for them forever.
      hub.disconnectAll();
      await server.stop(false);
      clearInterval(flusher);
      clearInterval(pruner);
      clearInterval(traffic);
      await parts.close();
      log.info("stopped", { url });
    },
  };
}
