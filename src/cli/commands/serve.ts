import { SERVE_DEFAULT_LISTEN } from "../../config/serve-defaults.ts";
import type { Command } from "commander";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { parsePeriod, parseSize } from "../../util/sizes.ts";
import { parseWebhookEvents, parseWebhookSecret, readWebhookSecret, WEBHOOK_EVENTS } from "../../server/webhooks.ts";
import { TokenSet, type Role, type TokenEntry } from "../../server/auth.ts";
import { createLogger } from "../../util/log.ts";
import { startServer } from "../../server/server.ts";
import { UsageError } from "../errors.ts";
import { collect } from "../collect.ts";

interface ServeFlags {
  listen: string;
  data?: string;
  token: string[];
  readOnlyToken: string[];
  workerToken: string[];
  tokenFile?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
  maxSize?: string;
  maxBlob?: string;
  cacheMountBudget?: string;
  insecureNoAuth?: boolean;
  webhook: string[];
  webhookEvents: string;
  publicUrl?: string;
  webhookSecret?: string;
  webhookSecretFile?: string;
  historyMaxAge: string;
  historyMaxBuilds: string;
  jobLease: string;
  db?: string;
  blobs?: string;
  blobsRedirect?: boolean;
}

const size = (flag: string, value?: string) => {
  if (value === undefined) return undefined;
  try {
    return parseSize(value);
  } catch (error) {
    throw new UsageError(`${flag}: ${(error as Error).message}`);
  }
};

const period = (flag: string, value: string) => {
  try {
    return parsePeriod(value);
  } catch (error) {
    throw new UsageError(`${flag}: ${(error as Error).message}`);
  }
};

const seconds = (flag: string, value: string) => {
  const number = Number(value);
  if (!(number > 0) || !Number.isFinite(number)) throw new UsageError(`${flag}: give a number of seconds above 0, not "${value}"`);
  return number;
};

function publicUrl(url: string | undefined): string | undefined {
  if (url !== undefined && (!/^https?:\/\/[^\s]+$/.test(url) || !URL.canParse(url))) throw new UsageError(`--public-url ${url}: use an http:// or https:// URL`);
  return url;
}

function webhookOptions(flags: ServeFlags) {
  const secretText = flags.webhookSecret ?? process.env.MEMOBUILD_WEBHOOK_SECRET;
  if (flags.webhook.length === 0) {
    if (secretText !== undefined || flags.webhookSecretFile) throw new UsageError("a webhook secret without --webhook: name where to send events");
    return undefined;
  }
  for (const url of flags.webhook) {
    if (!/^https?:\/\/[^\s]+$/.test(url) || !URL.canParse(url)) throw new UsageError(`--webhook ${url}: use an http:// or https:// URL`);
  }
  if ((secretText === undefined) === (flags.webhookSecretFile === undefined)) {
    throw new UsageError("--webhook needs a signing secret: give --webhook-secret whsec_… (or $MEMOBUILD_WEBHOOK_SECRET) or --webhook-secret-file, one of them");
  }
  const key = flags.webhookSecretFile ? readWebhookSecret(flags.webhookSecretFile) : parseWebhookSecret(secretText!);
  const events = parseWebhookEvents(flags.webhookEvents);
  return { targets: flags.webhook.map((url) => ({ url, events })), key };
}

export function registerServe(program: Command) {
  program
    .command("serve")
    .summary("run the shared remote cache server")
    .description(
      "Serve a remote build cache over HTTP: content-addressed blobs (verified on upload) and step results, " +
        "behind bearer tokens, with Prometheus metrics at /metrics. Refuses a non-loopback address without a token.",
    )
    .option("--listen <host:port>", "address to listen on", SERVE_DEFAULT_LISTEN)
    .option("--data <dir>", "where blobs and metadata live (default: ~/.local/share/memobuild/server)")
    .option("--db <url>", "keep metadata in PostgreSQL, postgres://USER@HOST:PORT/DB (also $MEMOBUILD_DB); replicas share it")
    .option("--blobs <url>", "keep blobs in S3, s3://BUCKET[/PREFIX]?endpoint=URL&region=R (credentials: $AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY, $AWS_SESSION_TOKEN)")
    .option("--blobs-redirect", "answer large blob downloads with a short-lived URL of the S3 store")
    .option("--token <token>", "a read-write token (repeatable)", collect)
    .option("--read-only-token <token>", "a read-only token (repeatable)", collect)
    .option("--worker-token <token>", "a token for `memobuild worker`: runs queued builds and writes their results (repeatable)", collect)
    .option("--token-file <file>", 'tokens, one "TOKEN [rw|ro|worker] [name=NAME]" per line')
    .option("--job-lease <seconds>", "remote builds: a worker silent this long loses its job to another", "30")
    .option("--tls-cert <file>", "serve HTTPS with this certificate (PEM)")
    .option("--tls-key <file>", "and this key (PEM)")
    .option("--tls-client-ca <file>", "mutual TLS: refuse clients without a certificate signed by this CA (PEM)")
    .option("--max-size <size>", "storage budget; least recently used results are evicted (e.g. 50GB)")
    .option("--max-blob <size>", "largest blob accepted (e.g. 4GB)")
    .option("--cache-mount-budget <size>", "bytes each shared RUN --mount=type=cache may keep; older versions go first (default: 2GB)")
    .option("--insecure-no-auth", "allow a non-loopback address without tokens")
    .option("--history-max-age <period>", "keep reported builds this long (e.g. 30d, 12h)", "30d")
    .option("--history-max-builds <n>", "keep at most this many reported builds", "10000")
    .option("--public-url <url>", "where people open the dashboard (behind a proxy): webhooks link each build's page there (default: the --listen address)")
    .option("--webhook <url>", "POST build and cache events here, signed as Standard Webhooks (repeatable)", collect)
    .option("--webhook-events <list>", `which events the webhooks get: ${WEBHOOK_EVENTS.join(",")}`, WEBHOOK_EVENTS.join(","))
    .option("--webhook-secret <whsec>", "the signing secret, whsec_<base64> (also $MEMOBUILD_WEBHOOK_SECRET)")
    .option("--webhook-secret-file <file>", "read the signing secret from this file")
    .action(async (flags: ServeFlags) => {
      const tokens: TokenEntry[] = [
        ...flags.token.map((token) => ({ token, role: "rw" as Role })),
        ...flags.readOnlyToken.map((token) => ({ token, role: "ro" as Role })),
        ...flags.workerToken.map((token) => ({ token, role: "worker" as Role })),
        ...(flags.tokenFile ? TokenSet.parseFile(flags.tokenFile) : []),
      ];
      const log = createLogger();
      const historyMaxAgeMs = period("--history-max-age", flags.historyMaxAge);
      const historyMaxBuilds = Number(flags.historyMaxBuilds);
      if (!Number.isSafeInteger(historyMaxBuilds) || historyMaxBuilds < 1) throw new UsageError("--history-max-builds must be a whole number of at least 1");
      const server = await startServer({
        listen: flags.listen,
        dataDir: resolve(flags.data ?? join(process.env.XDG_DATA_HOME ?? join(homedir(), ".local/share"), "memobuild/server")),
        tokens,
        tlsCert: flags.tlsCert,
        tlsKey: flags.tlsKey,
        tlsClientCa: flags.tlsClientCa,
        maxSize: size("--max-size", flags.maxSize),
        maxBlob: size("--max-blob", flags.maxBlob),
        mountBudget: size("--cache-mount-budget", flags.cacheMountBudget),
        insecureNoAuth: flags.insecureNoAuth,
        log,
        historyMaxAgeMs,
        historyMaxBuilds,
        webhooks: webhookOptions(flags),
        publicUrl: publicUrl(flags.publicUrl),
        jobLeaseMs: seconds("--job-lease", flags.jobLease) * 1000,
        db: flags.db ?? (process.env.MEMOBUILD_DB || undefined),
        blobs: flags.blobs,
        blobsRedirect: flags.blobsRedirect,
      });
      // Handlers first: a SIGTERM sent as soon as the address is announced still shuts down cleanly.
      const stopped = new Promise<void>((done) => {
        const shutdown = async (signal: string) => {
          log.info("shutting down", { signal });
          await server.stop(); // in-flight requests finish; unfinished uploads stay in tmp/ and are dropped
          done();
        };
        process.once("SIGTERM", () => void shutdown("SIGTERM"));
        process.once("SIGINT", () => void shutdown("SIGINT"));
      });
      process.stderr.write(`memobuild cache server listening on ${server.url}\n`);
      await stopped;
    });
}
