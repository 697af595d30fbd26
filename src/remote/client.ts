/**
 * The remote cache client. Lookups go local first, then here; a remote hit is verified (BLAKE3
 * of the blob, then the layer's diff ID) before the local store takes it. New results upload
 * while the build goes on; the build waits for them at the end.
 *
 * A remote that is down or failing does not fail the build: transient errors are retried with
 * exponential backoff and jitter, then one warning, and the rest of the build is local-only
 * (`required` turns that into an error). A wrong token is an error at the first request.
 */
import { log } from "../util/log.ts";
import { closeSync, openSync, rmSync } from "node:fs";
import { UserError } from "../errors.ts";
import { Blake3Hasher, hashFile } from "../hash/blake3.ts";
import { NetworkError, readBody, readBodyBytes } from "../util/network.ts";
import { checkSignature, MAX_DATE_MS, parsePublicKey, validateAction, type RemoteAction, type SigningKey } from "./action.ts";
import { terminalText } from "../util/terminal-text.ts";
import { redactCredentials } from "../util/redact.ts";
import { writeAll } from "../util/write-all.ts";

export type { RemoteAction } from "./action.ts";
import type { ResultSource } from "./result-source.ts";

export class RemoteCacheError extends UserError {}

/** The server answered 401 or 403: the token is wrong, or (403) it may not write. */
export class TokenRefused extends RemoteCacheError {
  constructor(message: string, readonly status: number) {
    super(message);
  }
}

export interface RemoteOptions {
  url: string;
  token?: string;
  /** Fail the build instead of going local-only when the remote does not answer. */
  required?: boolean;
  warn: (message: string) => void;
  /** Attempts per request for transient failures. */
  attempts?: number;
  /** Signs every action uploaded. */
  signer?: SigningKey;
  /** Public keys (`ed25519:…`): when given, only results signed by one of them are used. */
  trust?: string[];
  /** PEM text: a CA for the server's certificate; a client certificate and key (mutual TLS). */
  tls?: { ca?: string; cert?: string; key?: string };
  /** Look results up only: no upload and no build report (a server only a project file names). */
  readOnly?: boolean;
}

class Transient extends Error {}

export interface ConflictSide {
  author: string | null;
  signer: string | null;
  result: string;
}

export class RemoteCache implements ResultSource {
  private disabled = false;
  private readonly attempts: number;
  // Stryker disable next-line ArrayDeclaration: waiting for a value that is no promise waits for nothing
  private readonly uploads: Promise<void>[] = [];
  readonly base: string;

  /** Why a result the remote holds was not used, by step key ("untrusted signer", ...). */
  readonly refused = new Map<string, string>();
  private readonly trusted?: Set<string>;

  constructor(private readonly options: RemoteOptions) {
    this.base = options.url.replace(/\/+$/, "");
    this.attempts = options.attempts ?? 4;
    if (options.trust?.length) this.trusted = new Set(options.trust.map((text) => (parsePublicKey(text), text.trim())));
  }

  /** A result the remote sent that failed a check here: not used, and the user is told once. */
  distrust(key: string, reason: string) {
    this.refused.set(key, terminalText(reason));
    this.options.warn(`step ${key.slice(0, 12)}: ${terminalText(reason)}; running it here instead`);
  }

  private warnedMalformed = false;

  /**
   * A result that is not a well-formed action (a lying, broken or old server): a miss like any
   * refused result, and one warning for the whole build, not one per step.
   */
  private malformed(key: string, why: string): undefined {
    const reason = `remote result is malformed: ${terminalText(why, { max: 200 })}`;
    this.refused.set(key, reason);
    if (!this.warnedMalformed) this.options.warn(`the remote cache at ${this.base} sent a result that is not one (step ${key.slice(0, 12)}: ${reason}); such results are ignored`);
    this.warnedMalformed = true;
    return undefined;
  }

  get available(): boolean {
    return !this.disabled;
  }

  /** Whether results and reports may be sent to this remote (not one only a project file names). */
  get sends(): boolean {
    return !this.options.readOnly;
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { ...(this.options.token ? { authorization: `Bearer ${this.options.token}` } : {}), ...extra };
  }

  /** One request with retries; undefined when the remote is (or just became) unavailable. Shared with the cache-mount sync (mount-sync.ts), so one outage warns once. */
  async request(
    method: string,
    path: string,
    init: { body?: string | Blob; headers?: Record<string, string>; timeoutMs?: number; retryBusy?: boolean; signal?: AbortSignal } = {},
  ): Promise<Response | undefined> {
    if (this.disabled) return undefined;
    // Stryker disable next-line StringLiteral: every attempt sets it before it is read
    let lastError = "";
    for (let attempt = 0; attempt < this.attempts; attempt++) {
      // Back-off timing only: how long to wait between attempts changes no answer.
      // Stryker disable next-line all
      if (attempt > 0) await Bun.sleep(Math.min(2000, 100 * 2 ** attempt) * (0.5 + Math.random()));
      // A caller that gave up (a cache-mount fetch past its time) ends here: no retry, the remote stays in use.
      if (init.signal?.aborted) return undefined;
      const started = performance.now();
      try {
        const response = await fetch(`${this.base}${path}`, {
          method,
          headers: this.headers(init.headers),
          body: init.body,
          signal: AbortSignal.any([AbortSignal.timeout(init.timeoutMs ?? 300_000), ...(init.signal ? [init.signal] : [])]),
          tls: this.options.tls,
        } as RequestInit);
        if (response.status === 401 || response.status === 403) {
          const detail = await safeError(response);
          throw new TokenRefused(`the remote cache at ${this.base} refused the token (HTTP ${response.status}${detail ? `: ${detail}` : ""})`, response.status);
        }
        // Stryker disable next-line all: debug log text (the CLI tests read it end to end)
        log().debug("remote cache", { method, path, status: response.status, ms: Math.round(performance.now() - started), attempt });
        // A 429 on a build report is a quota (a minute's budget), not an outage: answered, not retried.
        if (response.status >= 500 || (response.status === 429 && init.retryBusy !== false)) throw new Transient(`HTTP ${response.status}`);
        return response;
      } catch (error) {
        if (error instanceof RemoteCacheError) throw error;
        if (init.signal?.aborted) return undefined;
        lastError = (error as Error).message;
        // Stryker disable next-line all: debug log text (the CLI tests read it end to end)
        log().debug("remote cache failed", { method, path, error: lastError, attempt });
      }
    }
    return this.giveUp(`${method} ${path}: ${lastError}`);
  }

  private giveUp(reason: string): undefined {
    if (this.options.required) throw new RemoteCacheError(`the remote cache at ${this.base} is not answering (${reason})`);
    if (!this.disabled) this.options.warn(`remote cache at ${this.base} is not answering (${reason}); continuing with the local cache only`);
    this.disabled = true;
    return undefined;
  }

  /**
   * The remote's result for a step, when it has one this client accepts: with a trust list,
   * only a result whose signature verifies here, by a trusted key (the server is not trusted to
   * have checked). A refused result is a miss, and `refused` says why.
   */
  async getAction(key: string): Promise<RemoteAction | undefined> {
    const response = await this.request("GET", `/v1/actions/${key}`);
    if (!response || response.status === 404) return undefined;
    if (!response.ok) return this.giveUp(`GET action: HTTP ${response.status}`);
    let parsed: unknown;
    try {
      // The server stores at most 1 MiB per action; more is not an action.
      parsed = JSON.parse((await readBodyBytes(response, 1024 * 1024, `the remote's result for step ${key.slice(0, 12)}`, (max) => `larger than ${max} bytes`)).toString("utf8"));
    } catch (error) {
      if (error instanceof NetworkError) return this.giveUp(error.message);
      return this.malformed(key, "it is not JSON");
    }
    // Every field is checked before any is used: the signature check and the solver read them.
    const action = validateAction(parsed);
    if (typeof action === "string") return this.malformed(key, action);
    if (!this.trusted) return action;
    const signature = checkSignature(key, action);
    if (!signature) this.refused.set(key, "remote result is not signed, and --remote-trust asks for a trusted signer");
    else if ("error" in signature) this.refused.set(key, `remote result has a bad signature: ${terminalText(signature.error)}`);
    else if (!this.trusted.has(signature.signer)) this.refused.set(key, `remote result from an untrusted signer (${terminalText(signature.signer)})`);
    else return action;
    return undefined;
  }

  /**
   * Conflicts the remote recorded (different results offered for one key), newest first. Only
   * well-formed entries are kept, their text made safe to print; an answer that is not a list
   * of them is none.
   */
  async conflicts(): Promise<RemoteConflict[]> {
    const response = await this.request("GET", "/v1/conflicts");
    if (!response?.ok) return [];
    let body: unknown;
    try {
      body = JSON.parse((await readBodyBytes(response, 16 * 1024 * 1024, "the remote's conflict list", (max) => `larger than ${max} bytes`)).toString("utf8"));
    } catch (error) {
      if (error instanceof NetworkError) return this.giveUp(error.message) ?? [];
      return [];
    }
    const list = (body as { conflicts?: unknown } | null)?.conflicts;
    return Array.isArray(list) ? list.flatMap((entry) => parseConflict(entry) ?? []) : [];
  }

  fetchLayer(layer: NonNullable<RemoteAction["layer"]>, file: string): Promise<boolean> {
    return this.fetchBlob(layer.blake3, file, layer.size);
  }

  async hasAction(key: string): Promise<boolean> {
    const response = await this.request("HEAD", `/v1/actions/${key}`);
    return response?.status === 200;
  }

  /**
   * Downloads a blob to `file`, hashing as it streams; throws (and deletes the file) when the
   * content is not what its name says. False when the remote does not have it.
   */
  async fetchBlob(hash: string, file: string, size: number): Promise<boolean> {
    const response = await this.request("GET", `/v1/blobs/${hash}`);
    if (!response || response.status === 404 || !response.body) return false;
    if (!response.ok) return !!this.giveUp(`GET blob: HTTP ${response.status}`);
    const hasher = new Blake3Hasher();
    const fd = openSync(file, "w", 0o600);
    try {
      // At most the size its action declares, and never a stalled connection.
      // Stryker disable next-line StringLiteral: the label shows only when a blob stalls for the network timeout
      for await (const chunk of readBody(response, size, `blob ${hash}`, (max) => `the remote cache sent more than the ${max} bytes its result declares`)) {
        hasher.update(chunk);
        writeAll(fd, chunk);
      }
    } catch (error) {
      closeSync(fd);
      // Stryker disable next-line ObjectLiteral,BooleanLiteral: the file is there: this process made it
      rmSync(file, { force: true });
      this.giveUp(`GET blob: ${(error as Error).message}`);
      return false;
    }
    closeSync(fd);
    const actual = hasher.digest("hex");
    if (actual !== hash) {
      // Stryker disable next-line ObjectLiteral,BooleanLiteral: the file is there: this process made it
      rmSync(file, { force: true });
      throw new RemoteCacheError(`blob ${hash} from the remote cache hashes to ${actual}; nothing was kept`);
    }
    return true;
  }

  /**
   * Uploads a step's layer file as a blob (unless the remote has it), then the action naming
   * it; the blob's BLAKE3 name is computed here from the file.
   */
  async upload(
    key: string,
    action: { diffId: string | null; created: number; duration_ms?: number },
    layer?: { file: string; digest: string; size: number; mediaType: string },
    step?: string,
  ): Promise<void> {
    // Stryker disable next-line ConditionalExpression: a disabled remote answers no request anyway; this only skips hashing the layer
    if (this.disabled || !this.sends || this.writesRefused) return;
    const blobs: string[] = [];
    let described: RemoteAction["layer"];
    if (layer) {
      const hash = hashFile(layer.file).digest.toString("hex");
      described = { blake3: hash, digest: layer.digest, size: layer.size, mediaType: layer.mediaType };
      blobs.push(hash);
      const layerFile = layer.file; // streamed from disk, never held in memory
      const head = await this.request("HEAD", `/v1/blobs/${hash}`);
      if (!head) return;
      if (head.status === 404) {
        // Stryker disable next-line ObjectLiteral,StringLiteral: the server reads bodies by route, not by content type
        const put = await this.request("PUT", `/v1/blobs/${hash}`, { body: Bun.file(layerFile), headers: { "content-type": "application/octet-stream" } });
        if (!put) return;
        if (!put.ok) {
          this.options.warn(`remote cache refused a layer upload (HTTP ${put.status}: ${await safeError(put)})`);
          return;
        }
      }
    }
    const unsigned: RemoteAction = { ...action, ...(described ? { layer: described } : {}), blobs };
    const body = this.options.signer ? this.options.signer.sign(key, unsigned) : unsigned;
    // Stryker disable next-line ObjectLiteral,StringLiteral: the server reads bodies by route, not by content type
    const origin = {
      ...(this.buildId ? { "memobuild-build": this.buildId } : {}),
      ...(this.buildId && this.job ? { "memobuild-job": this.job.id, "memobuild-lease": this.job.lease } : {}),
      ...(step ? { "memobuild-step": encodeURIComponent(step) } : {}),
    };
    const put = await this.request("PUT", `/v1/actions/${key}`, { body: JSON.stringify(body), headers: { "content-type": "application/json", ...origin } });
    const named = step ?? `step ${key.slice(0, 12)}`;
    if (put?.status === 409) {
      const first = (await answerOf(put))?.firstBuild;
      const from = typeof first === "string" ? `, from build ${terminalText(first, { max: 80 })}` : "";
      this.options.warn(`${named}: the remote cache holds another writer's result for this step${from}; yours was refused and recorded as a conflict (${this.base}/#/cache)`);
    } else if (put && !put.ok) this.options.warn(`remote cache refused a result (HTTP ${put.status}: ${await safeError(put)})`);
    else if (put) {
      const answer = await answerOf(put);
      if (answer?.outcome === "not-reproducible") this.sayNotReproducible(named, answer);
      else if (this.options.signer) this.checkKeptSigner(key, answer);
    }
  }

  /** The build this client reports (the hub links the results it uploads to it). */
  buildId: string | undefined;
  /** On a worker: the job it runs for the build, and its lease, which prove the build is the job's. */
  job: { id: string; lease: string } | undefined;

  /**
   * The remote kept an earlier result of this writer's for the step, and this one differs: the
   * step is not reproducible. Said with the files that differ; the result kept stays in use.
   */
  private sayNotReproducible(step: string, answer: Answer) {
    const files = Array.isArray(answer.differences?.files) ? answer.differences.files.slice(0, 5).map((f) => `${terminalText(f.path, { max: 120 })} (${Array.isArray(f.how) ? terminalText(f.how.join(", "), { max: 60 }) : "?"})`) : [];
    const more = Number(answer.differences?.more) || 0;
    const what = files.length ? `${files.join(", ")}${more || (answer.differences?.files?.length ?? 0) > 5 ? " and more" : ""}` : terminalText(answer.differences?.note ?? "no file differs", { max: 120 });
    const first = typeof answer.firstBuild === "string" ? ` than build ${terminalText(answer.firstBuild, { max: 80 })}` : "";
    this.options.warn(`${step} is not reproducible: it made another result${first}; differs: ${what} (the remote keeps the first)`);
  }

  /**
   * A signed upload the remote answered "same" to may not be what readers get: the copy kept
   * may be signed by another key, and readers who trust only this one never hit that key. The
   * server names the signer it kept; anything else than this client's key is said once per step.
   */
  private checkKeptSigner(key: string, answer: Answer | undefined) {
    const kept = answer?.signer; // an older server says nothing about the signer
    if (kept === undefined || kept === this.options.signer!.publicKey) return;
    const who = typeof kept === "string" ? `signed by another key (${terminalText(kept, { max: 80 })})` : "unsigned";
    this.options.warn(`the remote cache kept an earlier copy of step ${key.slice(0, 12)}'s result, ${who}: readers who trust only your key will not use it (see SECURITY.md, "write-once")`);
  }

  /** Set once the server refused an upload with 403 (a read-only token): no more are tried. */
  private writesRefused = false;

  /** Starts an upload that runs alongside the build. */
  enqueue(upload: () => Promise<void>) {
    this.uploads.push(
      upload().catch((error) => {
        if (error instanceof RemoteCacheError && this.options.required) throw error;
        if (error instanceof TokenRefused && error.status === 403) return this.refuseWrites(error);
        this.options.warn(`remote cache upload failed: ${(error as Error).message}`);
      }),
    );
  }

  /**
   * A token that may read but not write (a pull request's read-only one, as the README's set-up
   * gives it): one warning for the build, not one per step, and no further upload is tried.
   */
  private refuseWrites(error: TokenRefused) {
    if (!this.writesRefused) this.options.warn(`${error.message}: this build's results are not uploaded (--remote-upload off says so for a read-only token)`);
    this.writesRefused = true;
  }

  /** Waits for every upload started so far. */
  async flush(): Promise<void> {
    await Promise.all(this.uploads);
  }

  /**
   * Sends a batch of build events (the build hub). False when they were not taken: the remote is
   * away (one warning, shared with the cache: a build never warns twice for one outage) or too
   * old to take reports (one warning of its own).
   */
  async report(buildId: string, events: unknown[]): Promise<boolean> {
    if (!this.sends) return false;
    // Nothing that looks like a credential leaves in a report (a CI's repository URL with its
    // token, a RUN line with one): every string is redacted (the server does it again).
    const body = JSON.stringify({ events }, (_key, value: unknown) => (typeof value === "string" ? redactCredentials(value) : value));
    const response = await this.request("POST", `/v1/builds/${buildId}/events`, { body, headers: { "content-type": "application/json" }, timeoutMs: 10_000, retryBusy: false });
    if (!response) return false;
    if (response.ok) return true;
    this.options.warn(`the remote cache did not take this build's report (HTTP ${response.status}: ${await safeError(response)}); the build goes on without it`);
    return false;
  }

  /** Checks the remote answers and accepts the token (the first request of a build). */
  async probe(): Promise<void> {
    // Any key the remote answers 200 or 404 for will do.
    // Stryker disable next-line StringLiteral
    const response = await this.request("HEAD", `/v1/actions/${"0".repeat(64)}`);
    // Stryker disable next-line ConditionalExpression: the all-zero key is never stored, so never 200
    if (response && response.status !== 404 && response.status !== 200) this.giveUp(`HTTP ${response.status}`);
  }
}

/**
 * A server's error answer as one printable line: its JSON `error` when it has one, else its
 * text; at most 200 characters, read from at most 64 KiB, control sequences stripped (a server
 * must not set a terminal's title, clear it or print a fake line).
 */
async function safeError(response: Response): Promise<string> {
  let body: string;
  try {
    body = (await readBodyBytes(response, 64 * 1024, "the remote's error", (max) => `larger than ${max} bytes`)).toString("utf8");
  } catch {
    return "";
  }
  let text: unknown = body;
  try {
    text = (JSON.parse(body) as { error?: unknown }).error ?? body;
  } catch {
    // not JSON: the text as it is
  }
  return terminalText(typeof text === "string" ? text.slice(0, 200) : body.slice(0, 200));
}

export interface RemoteConflict {
  key: string;
  time: number;
  first: ConflictSide;
  second: ConflictSide;
}

const HEX64 = /^[0-9a-f]{64}$/;

/** What the server answers to an upload (every field unchecked until used). */
interface Answer {
  outcome?: unknown;
  signer?: unknown;
  firstBuild?: unknown;
  differences?: { files?: { path?: unknown; how?: unknown }[]; more?: unknown; note?: unknown };
}

async function answerOf(response: Response): Promise<Answer | undefined> {
  try {
    const answer: unknown = JSON.parse((await readBodyBytes(response, 256 * 1024, "the remote's answer", (max) => `larger than ${max} bytes`)).toString("utf8"));
    return typeof answer === "object" && answer !== null ? (answer as Answer) : undefined;
  } catch {
    return undefined; // an older server, or an error as text
  }
}

/** One conflict as the server lists it, checked, with the text it holds safe to print. */
function parseConflict(value: unknown): RemoteConflict | undefined {
  const c = value as Partial<Record<keyof RemoteConflict, unknown>> | null;
  const time = c?.time;
  if (typeof c !== "object" || c === null || typeof c.key !== "string" || !HEX64.test(c.key) || !Number.isSafeInteger(time) || Math.abs(time as number) > MAX_DATE_MS) return undefined;
  const side = (raw: unknown): ConflictSide | undefined => {
    const s = raw as Partial<Record<keyof ConflictSide, unknown>> | null;
    const optionalText = (v: unknown) => (v === null || v === undefined ? null : typeof v === "string" ? terminalText(v, { max: 100 }) : undefined);
    if (typeof s !== "object" || s === null || typeof s.result !== "string" || !HEX64.test(s.result)) return undefined;
    const author = optionalText(s.author);
    const signer = optionalText(s.signer);
    return author === undefined || signer === undefined ? undefined : { author, signer, result: s.result };
  };
  const first = side(c.first);
  const second = side(c.second);
  return first && second ? { key: c.key, time: c.time as number, first, second } : undefined;
}
