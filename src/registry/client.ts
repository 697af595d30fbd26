/**
 * A client for the OCI distribution API (registries). Authentication follows the registry's
 * challenge: on 401 with `WWW-Authenticate: Bearer realm=…,service=…,scope=…` a token is
 * fetched from the realm (with credentials when there are some), on `Basic` the credentials
 * are sent as they are. Credentials come from ~/.docker/config.json (credential helpers, or `auths`). Plain HTTP is
 * used only for registries named insecure (--insecure-registry, MEMOBUILD_INSECURE_REGISTRIES)
 * and for loopback addresses. Every blob and manifest is checked against its digest.
 */
import { closeSync, existsSync, openSync, readFileSync, rmSync, statfsSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { UserError } from "../errors.ts";
import type { ImageReference } from "../image/reference.ts";
import { limit, limitHint } from "../util/limits.ts";
import { fetchWithTimeout, NetworkError, readBody, readBodyBytes } from "../util/network.ts";
import { writeAll } from "../util/write-all.ts";
import { terminalText } from "../util/terminal-text.ts";

export class RegistryError extends UserError {}

export const MANIFEST_TYPES = [
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
];

export interface RegistryOptions {
  insecure?: string[];
  /** Where Docker's credentials are (default ~/.docker/config.json). */
  dockerConfig?: string;
}

interface Credentials {
  username: string;
  password: string;
}

const CHUNK = 16 * 1024 * 1024;

/** docker.io is served by registry-1.docker.io. */
function hostOf(registry: string): string {
  return registry === "docker.io" ? "registry-1.docker.io" : registry;
}

function isLoopback(host: string): boolean {
  const name = host.replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
  return name === "localhost" || name === "::1" || /^127\./.test(name);
}

/** A `WWW-Authenticate` header: its scheme (lower case) and quoted parameters. */
export function parseChallenge(header: string): { scheme: string; params: Record<string, string> } {
  const space = header.indexOf(" ");
  const scheme = (space < 0 ? header : header.slice(0, space)).toLowerCase();
  return { scheme, params: challengeParams(space < 0 ? "" : header.slice(space + 1)) };
}

/**
 * `key="value", key="value"`, read in one pass: a regular expression with a backtracking engine
 * takes quadratic time on a long header without `=` (the registry sends it).
 */
function challengeParams(text: string): Record<string, string> {
  const params: Record<string, string> = {};
  for (let i = 0; i < text.length; ) {
    let key = i;
    while (key < text.length && /\w/.test(text[key])) key++;
    if (key > i && text[key] === "=" && text[key + 1] === '"') {
      const close = text.indexOf('"', key + 2);
      if (close < 0) break;
      params[text.slice(i, key)] = text.slice(key + 2, close);
      i = close + 1;
    } else i = Math.max(key, i + 1);
  }
  return params;
}

/**
 * Where to ask for a bearer token: the challenge's realm, which must be an http(s) URL, and
 * https unless the registry itself is spoken to over http (credentials are sent there).
 */
export function tokenRealm(challenge: { params: Record<string, string> }, scope: string, registryIsHttp: boolean, registry: string): URL {
  let realm: URL;
  try {
    realm = new URL(challenge.params.realm);
  } catch {
    throw new RegistryError(`registry ${registry} names a token service that is not a URL: ${JSON.stringify(challenge.params.realm.slice(0, 200))}`);
  }
  if (realm.protocol !== "https:" && !(realm.protocol === "http:" && registryIsHttp)) {
    throw new RegistryError(`registry ${registry} names a token service at ${JSON.stringify(realm.origin)}; only https is accepted${registryIsHttp ? " (or http)" : ""}`);
  }
  if (challenge.params.service) realm.searchParams.set("service", challenge.params.service);
  realm.searchParams.set("scope", challenge.params.scope ?? scope);
  return realm;
}

export function insecureRegistries(flags: string[] = [], env: NodeJS.ProcessEnv = process.env): string[] {
  return [...flags, ...(env.MEMOBUILD_INSECURE_REGISTRIES ?? "").split(",")].map((s) => s.trim()).filter(Boolean);
}

export class RegistryClient {
  private readonly tokens = new Map<string, string>();
  private readonly base: string;
  private readonly host: string;

  constructor(
    readonly registry: string,
    private readonly options: RegistryOptions = {},
  ) {
    this.host = hostOf(registry);
    const plain = (options.insecure ?? []).includes(registry) || (options.insecure ?? []).includes(this.host) || isLoopback(this.host);
    this.base = `${plain ? "http" : "https"}://${this.host}`;
  }

  /**
   * Docker's credentials for this registry, found as Docker finds them: a `credHelpers` entry
   * for the registry, else the `credsStore` helper, else `auths` in the file. Helpers are
   * `docker-credential-NAME get` programs (the server on stdin, JSON on stdout).
   */
  private credentials(): Credentials | undefined {
    const file = this.options.dockerConfig ?? join(process.env.DOCKER_CONFIG ?? join(homedir(), ".docker"), "config.json");
    if (!existsSync(file)) return undefined;
    let config: DockerConfig;
    try {
      config = JSON.parse(readFileSync(file, "utf8")) as DockerConfig;
    } catch (error) {
      throw new RegistryError(`cannot read ${file}: ${(error as Error).message}`);
    }
    const keys = [this.registry, this.host, `https://${this.host}`, `http://${this.host}`, ...(this.registry === "docker.io" ? ["https://index.docker.io/v1/"] : [])];
    const helper = keys.map((key) => config.credHelpers?.[key]).find(Boolean);
    if (helper) return credentialHelper(helper, keys);
    if (config.credsStore) {
      const stored = credentialHelper(config.credsStore, keys);
      if (stored) return stored;
    }
    for (const key of keys) {
      const entry = config.auths?.[key];
      if (!entry) continue;
      if (entry.auth) {
        const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
        const colon = decoded.indexOf(":");
        return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
      }
      if (entry.username && entry.password) return { username: entry.username, password: entry.password };
    }
    return undefined;
  }

  /** A request with the auth the registry asks for; `scope` is the token scope to ask for. */
  private async request(method: string, path: string, scope: string, init: { headers?: Record<string, string>; body?: string | Blob | Uint8Array } = {}): Promise<Response> {
    const url = path.startsWith("http") ? path : `${this.base}${path}`;
    const send = async (auth?: string): Promise<Response> => {
      // Reads are retried on transient failures (a reset connection, 5xx, 429); writes are not.
      const attempts = method === "GET" || method === "HEAD" ? 3 : 1;
      for (let attempt = 1; ; attempt++) {
        let response: Response | undefined;
        let failure: string;
        try {
          response = await fetchWithTimeout(url, { method, headers: { ...(init.headers ?? {}), ...(auth ? { authorization: auth } : {}) }, body: init.body, redirect: "follow" }, `registry ${this.registry} (${method} ${url})`);
          if (response.status < 500 && response.status !== 429) return response;
          failure = `HTTP ${response.status}`;
        } catch (error) {
          if (error instanceof NetworkError) failure = error.message;
          else failure = `cannot reach registry ${this.registry} (${url}): ${(error as Error).message}`;
        }
        if (attempt >= attempts) {
          if (response) return response;
          throw new RegistryError(failure);
        }
        await response?.body?.cancel().catch(() => {});
        await Bun.sleep(200 * 2 ** attempt * (0.5 + Math.random()));
      }
    };
    const cached = this.tokens.get(scope);
    let response = await send(cached);
    if (response.status !== 401) return response;
    const challenge = parseChallenge(response.headers.get("www-authenticate") ?? "");
    const credentials = this.credentials();
    let auth: string;
    if (challenge.scheme === "basic") {
      if (!credentials) throw new RegistryError(`registry ${this.registry} needs a login: add it to ~/.docker/config.json (auths, credHelpers or credsStore)`);
      auth = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64")}`;
    } else if (challenge.scheme === "bearer" && challenge.params.realm) {
      const realm = tokenRealm(challenge, scope, this.base.startsWith("http:"), this.registry);
      const service = `the token service ${realm.origin}`;
      const tokenResponse = await fetchWithTimeout(realm, { headers: credentials ? { authorization: `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64")}` } : {} }, service).catch((error: Error) => {
        throw new RegistryError(error instanceof NetworkError ? error.message : `cannot reach ${service}: ${error.message}`);
      });
      if (!tokenResponse.ok) throw new RegistryError(`the token service for ${this.registry} refused (HTTP ${tokenResponse.status})`);
      let body: { token?: unknown; access_token?: unknown };
      try {
        body = JSON.parse((await readBodyBytes(tokenResponse, 1024 * 1024, service, (max) => `its answer is larger than ${max} bytes`)).toString("utf8"));
      } catch (error) {
        throw new RegistryError(error instanceof NetworkError ? error.message : `${service} answered something that is not JSON`);
      }
      const token = typeof body?.token === "string" ? body.token : typeof body?.access_token === "string" ? body.access_token : undefined;
      if (!token) throw new RegistryError(`the token service for ${this.registry} sent no token`);
      auth = `Bearer ${token}`;
    } else {
      throw new RegistryError(`registry ${this.registry} refused access (HTTP 401) without a challenge MemoBuild understands`);
    }
    this.tokens.set(scope, auth);
    if (init.body instanceof ReadableStream) throw new RegistryError("cannot resend a streamed body after authenticating");
    response = await send(auth);
    if (response.status === 401) throw new RegistryError(`registry ${this.registry} refused the credentials for ${scope}`);
    return response;
  }

  private async fail(response: Response, what: string): Promise<never> {
    let detail = "";
    try {
      const body = (await response.json()) as { errors?: { code: string; message: string }[] };
      detail = body.errors?.map((e) => `${e.code}: ${e.message}`).join("; ") ?? "";
    } catch {
      // not JSON
    }
    // A registry's words reach the terminal: as text, never as escape sequences.
    throw new RegistryError(`${what}: HTTP ${response.status}${detail ? ` (${terminalText(detail, { max: 500 })})` : ""}`);
  }

  /** A manifest or index by tag or digest: its bytes, checked against the digest. */
  async getManifest(repository: string, reference: string): Promise<{ bytes: Buffer; mediaType: string; digest: string }> {
    const response = await this.request("GET", `/v2/${repository}/manifests/${reference}`, `repository:${repository}:pull`, { headers: { accept: MANIFEST_TYPES.join(", ") } });
    if (response.status === 404) throw new RegistryError(`${this.registry}/${repository}:${reference} not found in the registry`);
    if (!response.ok) await this.fail(response, `fetching the manifest of ${repository}:${reference}`);
    const bytes = await readBodyBytes(response, limit("manifestBytes"), `the manifest of ${this.registry}/${repository}:${reference}`, (max) => `it is larger than ${max} bytes ${limitHint("manifestBytes")}`);
    const digest = `sha256:${new Bun.CryptoHasher("sha256").update(bytes).digest("hex")}`;
    const expected = reference.startsWith("sha256:") ? reference : response.headers.get("docker-content-digest");
    if (expected && expected !== digest) {
      throw new RegistryError(`the registry's manifest for ${repository}:${reference} does not match its digest (${expected}, content hashes to ${digest})`);
    }
    const mediaType = (response.headers.get("content-type") ?? "").split(";")[0] || (JSON.parse(bytes.toString()) as { mediaType?: string }).mediaType || "";
    return { bytes, mediaType, digest };
  }

  /**
   * Downloads a blob to `file`, hashing as it streams: at most the `declaredSize` its manifest
   * gives (a registry that sends more is cut off), and nothing is kept on a mismatch.
   */
  async getBlob(repository: string, digest: string, file: string, declaredSize: number): Promise<number> {
    const what = `blob ${digest} from ${this.registry}/${repository}`;
    if (!Number.isSafeInteger(declaredSize) || declaredSize < 0) throw new RegistryError(`${what}: the manifest declares an invalid size (${declaredSize})`);
    if (declaredSize > limit("blobBytes")) throw new RegistryError(`${what}: the manifest declares ${declaredSize} bytes, over the limit ${limitHint("blobBytes")}`);
    const free = freeBytes(dirname(file));
    if (declaredSize > free) throw new RegistryError(`${what}: ${declaredSize} bytes do not fit in the ${free} bytes free on the cache's file system`);
    const response = await this.request("GET", `/v2/${repository}/blobs/${digest}`, `repository:${repository}:pull`);
    if (!response.ok || !response.body) await this.fail(response, `fetching blob ${digest}`);
    const hasher = new Bun.CryptoHasher("sha256");
    const fd = openSync(file, "w", 0o600);
    let size = 0;
    let complete = false;
    try {
      for await (const chunk of readBody(response, declaredSize, what, (max) => `the registry sent more than the ${max} bytes the manifest declares`)) {
        hasher.update(chunk);
        writeAll(fd, chunk);
        size += chunk.length;
      }
      if (size !== declaredSize) throw new RegistryError(`${what}: the registry sent ${size} bytes, the manifest declares ${declaredSize}; nothing was kept`);
      const actual = `sha256:${hasher.digest("hex")}`;
      if (actual !== digest) throw new RegistryError(`${what} is corrupt (its content hashes to ${actual}); nothing was kept`);
      complete = true;
    } finally {
      closeSync(fd);
      if (!complete) rmSync(file, { force: true });
    }
    return size;
  }

  async hasBlob(repository: string, digest: string): Promise<boolean> {
    const response = await this.request("HEAD", `/v2/${repository}/blobs/${digest}`, `repository:${repository}:pull,push`);
    return response.status === 200;
  }

  /** Uploads a blob (file) unless the registry has it; tries a cross-repository mount first. */
  async putBlob(repository: string, digest: string, file: string, mountFrom?: string): Promise<"exists" | "mounted" | "uploaded"> {
    const scope = `repository:${repository}:pull,push`;
    if (await this.hasBlob(repository, digest)) return "exists";
    const mount = mountFrom ? `?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(mountFrom)}` : "";
    const start = await this.request("POST", `/v2/${repository}/blobs/uploads/${mount}`, mountFrom ? `${scope} repository:${mountFrom}:pull` : scope);
    if (start.status === 201) return "mounted";
    if (start.status !== 202) await this.fail(start, `starting the upload of ${digest}`);
    let location = this.absolute(start.headers.get("location"));
    const size = statSync(file).size;
    const withDigest = (loc: string) => `${loc}${loc.includes("?") ? "&" : "?"}digest=${encodeURIComponent(digest)}`;
    if (size <= CHUNK) {
      const put = await this.request("PUT", withDigest(location), scope, { body: Bun.file(file), headers: { "content-type": "application/octet-stream" } });
      if (put.status !== 201) await this.fail(put, `uploading blob ${digest}`);
      return "uploaded";
    }
    // Chunked: PATCH each range, then PUT with the digest.
    for (let offset = 0; offset < size; offset += CHUNK) {
      const end = Math.min(size, offset + CHUNK);
      const patch = await this.request("PATCH", location, scope, {
        body: Bun.file(file).slice(offset, end),
        headers: { "content-type": "application/octet-stream", "content-range": `${offset}-${end - 1}` },
      });
      if (patch.status !== 202) await this.fail(patch, `uploading blob ${digest} (bytes ${offset}-${end - 1})`);
      location = this.absolute(patch.headers.get("location")) || location;
    }
    const done = await this.request("PUT", withDigest(location), scope, { headers: { "content-length": "0" } });
    if (done.status !== 201) await this.fail(done, `finishing the upload of ${digest}`);
    return "uploaded";
  }

  async putManifest(repository: string, reference: string, bytes: Buffer, mediaType: string): Promise<string> {
    const response = await this.request("PUT", `/v2/${repository}/manifests/${reference}`, `repository:${repository}:pull,push`, { body: bytes, headers: { "content-type": mediaType } });
    if (response.status !== 201) await this.fail(response, `pushing the manifest ${repository}:${reference}`);
    return `sha256:${new Bun.CryptoHasher("sha256").update(bytes).digest("hex")}`;
  }

  private absolute(location: string | null): string {
    if (!location) return "";
    return location.startsWith("http") ? location : `${this.base}${location}`;
  }
}

export function clientFor(ref: ImageReference, options: RegistryOptions): RegistryClient {
  return new RegistryClient(ref.registry, options);
}

interface DockerConfig {
  auths?: Record<string, { auth?: string; username?: string; password?: string }>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

/**
 * Asks `docker-credential-NAME get` for each server name Docker might have stored the login
 * under; undefined when the helper has none ("credentials not found").
 */
function credentialHelper(name: string, servers: string[]): Credentials | undefined {
  if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new RegistryError(`credential helper name "${name}" in the Docker config is not a plain name`);
  const program = `docker-credential-${name}`;
  const path = Bun.which(program);
  if (!path) throw new RegistryError(`the Docker config names credential helper ${program}, which is not on PATH`);
  for (const server of servers) {
    const result = Bun.spawnSync([path, "get"], { stdin: Buffer.from(server), stdout: "pipe", stderr: "pipe", timeout: 30_000 });
    const output = result.stdout.toString().trim();
    if (result.exitCode !== 0) {
      if (/credentials not found/i.test(output + result.stderr.toString())) continue;
      throw new RegistryError(`credential helper ${program} failed for ${server}: ${(output || result.stderr.toString()).trim().slice(0, 200) || `exit code ${result.exitCode}`}`);
    }
    let answer: { Username?: unknown; Secret?: unknown };
    try {
      answer = JSON.parse(output);
    } catch {
      throw new RegistryError(`credential helper ${program} answered something that is not JSON for ${server}`);
    }
    if (typeof answer.Username !== "string" || typeof answer.Secret !== "string") throw new RegistryError(`credential helper ${program} gave no Username and Secret for ${server}`);
    return { username: answer.Username, password: answer.Secret };
  }
  return undefined;
}

function freeBytes(dir: string): number {
  const stats = statfsSync(dir);
  return Number(stats.bavail) * Number(stats.bsize);
}
