/**
 * ADD from a URL: each URL is fetched once per build, hashed while it streams to a staging
 * file, and checked against `--checksum` when one is given. A step with a checksum keys on the
 * checksum alone, so a cache hit needs no download at all.
 */
import { closeSync, openSync, rmSync } from "node:fs";
import { join } from "node:path";
import { UserError } from "../errors.ts";
import { writeAll } from "../util/write-all.ts";
import { BodyTooLargeError, fetchWithTimeout, NetworkError, readBody } from "../util/network.ts";
import { fetchAvoidingLoopback, FetchRefusedError, type Resolver } from "../util/loopback-guard.ts";
import { limit, limitHint } from "../util/limits.ts";
import { terminalText } from "../util/terminal-text.ts";

export interface Download {
  url: string;
  file: string;
  /** `sha256:<hex>` of the content. */
  digest: string;
  /** Seconds since the epoch, from Last-Modified (0 when the server gives none). */
  mtime: number;
}

export class DownloadError extends UserError {}

export const isUrl = (source: string) => /^https?:\/\//i.test(source);

export interface DownloadOptions {
  /**
   * A worker's build for a job not granted network.host: no URL (nor a redirect) may reach this
   * machine's loopback, which the job's RUN cannot reach either (executor/network.ts). A local
   * build fetches from its user's network as BuildKit's daemon does, loopback included.
   */
  refuseLoopback?: boolean;
  /** How host names are resolved when refusing the loopback (tests answer as a rebinding DNS would). */
  resolver?: Resolver;
}

export class Downloads {
  private readonly pending = new Map<string, Promise<Download>>();
  private count = 0;

  constructor(private readonly directory: () => string, private readonly options: DownloadOptions = {}) {}

  fetch(url: string, checksum?: string): Promise<Download> {
    let download = this.pending.get(url);
    if (!download) {
      download = this.fetchOnce(url);
      this.pending.set(url, download);
    }
    return checksum ? download.then((d) => verify(d, checksum)) : download;
  }

  /** The whole download is tried again (a fresh file) after a transient failure: a reset, a stall, 5xx, 429. */
  private async fetchOnce(url: string): Promise<Download> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.download(url);
      } catch (error) {
        if (!(error instanceof TransientDownloadError) || attempt >= ATTEMPTS) throw error;
        // Stryker disable next-line ArithmeticOperator: timing only (the back-off between tries)
        await Bun.sleep(200 * 2 ** attempt * (0.5 + Math.random()));
      }
    }
  }

  private async download(url: string): Promise<Download> {
    const what = `ADD ${url}`;
    let response: Response;
    try {
      response = this.options.refuseLoopback
        ? await fetchAvoidingLoopback(url, what, this.options.resolver)
        : // Stryker disable next-line ObjectLiteral: following redirects is fetch's default too; said here because BuildKit's ADD follows them
          await fetchWithTimeout(url, { redirect: "follow" }, what);
    } catch (error) {
      if (error instanceof FetchRefusedError) throw new DownloadError(error.message);
      throw new TransientDownloadError(error instanceof NetworkError ? error.message : `cannot fetch ${url}: ${(error as Error).message}`);
    }
    // The server's reason phrase reaches the terminal: as text, never as escape sequences.
    const reason = terminalText(response.statusText, { max: 100 });
    if (response.status >= 500 || response.status === 429) throw new TransientDownloadError(`cannot fetch ${url}: HTTP ${response.status} ${reason}`);
    if (!response.ok || !response.body) throw new DownloadError(`cannot fetch ${url}: HTTP ${response.status} ${reason}`);
    // Stryker disable next-line UpdateOperator: a label only (counting down names each try's file apart as well)
    const file = join(this.directory(), `download-${++this.count}`);
    const fd = openSync(file, "w", 0o600);
    const hashers = { sha256: new Bun.CryptoHasher("sha256"), sha384: new Bun.CryptoHasher("sha384"), sha512: new Bun.CryptoHasher("sha512") };
    const max = limit("downloadBytes");
    try {
      for await (const chunk of readBody(response, max, what, (m) => `larger than ${m} bytes ${limitHint("downloadBytes")}`)) {
        for (const hasher of Object.values(hashers)) hasher.update(chunk);
        writeAll(fd, chunk);
      }
    } catch (error) {
      // Stryker disable next-line ObjectLiteral,BooleanLiteral: the file was made above, so force never matters
      rmSync(file, { force: true });
      // Too large is final; a stall or a reset is worth another try.
      if (error instanceof NetworkError && !(error instanceof BodyTooLargeError)) throw new TransientDownloadError(error.message);
      throw error;
    } finally {
      closeSync(fd);
    }
    const modified = response.headers.get("last-modified");
    const digests = Object.fromEntries(Object.entries(hashers).map(([name, h]) => [name, `${name}:${h.digest("hex")}`]));
    return { url, file, digest: digests.sha256, mtime: modified ? Math.floor(Date.parse(modified) / 1000) || 0 : 0, ...{ all: digests } } as Download;
  }
}

const ATTEMPTS = 3;

/** A failure worth trying again; the last one is reported as it is. */
class TransientDownloadError extends DownloadError {}

function verify(download: Download, checksum: string): Download {
  const algorithm = checksum.split(":")[0];
  const actual = (download as Download & { all: Record<string, string> }).all[algorithm];
  if (actual !== checksum) throw new DownloadError(`checksum mismatch for ${download.url}: expected ${checksum}, got ${actual}`);
  return download;
}

/** The file name an ADD of `url` lands as: the last path component. */
export function urlFileName(url: string): string {
  const name = new URL(url).pathname.split("/").filter(Boolean).pop();
  return name ? decodeURIComponent(name) : "index.html";
}
