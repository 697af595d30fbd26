/**
 * Shared cache mounts on the server: versions of a scope (a mount's identity plus an optional
 * --cache-mount-scope) as manifests whose files are ordinary blobs.
 *
 *   GET  /v1/mounts                        every scope: its current version, count, stored bytes
 *   GET  /v1/mounts/{scope}                its versions, newest first (no files)
 *   GET  /v1/mounts/{scope}/{version}      a version's manifest
 *   POST /v1/mounts/missing                { hashes } -> { missing }: which blobs to upload
 *   PUT  /v1/mounts/{scope}/{version}      publish (read-write and worker tokens: 403 otherwise)
 *   POST /v1/mounts/{scope}/fetched        a client says what one fetch downloaded and kept
 *
 * A version names blobs already stored (400 otherwise), is named by its BLAKE3 (400 otherwise)
 * and, when signed, must verify (400). Two versions from one parent are both kept; the one
 * published last is current; nothing is merged. Each scope keeps to a byte budget: old versions
 * go first, the newest stays (a version larger than the budget is refused, 413).
 *
 * The rows live beside the cache index (SQLite in mounts-sqlite.ts, PostgreSQL in mounts-pg.ts,
 * one shared test suite). The blobs a kept version needs are listed in the index's
 * `action_blobs` under the key `mount:VERSION`, so the storage's own eviction never takes them;
 * when a version goes, its rows go, and its blobs are then as any unneeded blob.
 */
import { Hono } from "hono";
import { HASH } from "./storage.ts";
import { boundedText, error, type AppEnv } from "./http.ts";
import { isPrivateScope, parseManifest, signerOf, type MountManifest, type MountScopeInfo, type MountVersionInfo } from "../remote/mount-manifest.ts";
import type { MountFetchReport } from "../remote/mount-types.ts";

/** A manifest of a million files is ~100 MB of JSON; caches that large are not shared file by file. */
export const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;
export const DEFAULT_MOUNT_BUDGET = 2 * 1024 * 1024 * 1024;

/** The key under which a version's blobs are kept in the index's action_blobs. */
export const blobKey = (version: string) => `mount:${version}`;

/** A version checked and ready to keep. */
export interface NewVersion {
  info: MountVersionInfo;
  scope: string;
  label: MountManifest["label"];
  body: string;
  /** Its distinct files: BLAKE3 → size. */
  blobs: Map<string, number>;
}

export type InsertOutcome = { stored: true; evicted: number } | { stored: false } | { absent: string[] };

/**
 * Where versions are kept (mounts-sqlite.ts, mounts-pg.ts). Every method may run on any replica
 * at any time: insert is one transaction that checks the blobs, writes the version and keeps
 * the scope's budget, so two publishers never lose each other's version.
 */
export interface MountRows {
  scopes(): Promise<MountScopeInfo[]>;
  versions(scope: string): Promise<MountVersionInfo[]>;
  /** The label of a scope's newest version; undefined when it has none. */
  labelOf(scope: string): Promise<MountManifest["label"] | undefined>;
  /** A version's manifest text; `scope` undefined: by id alone. */
  body(id: string, scope?: string): Promise<string | undefined>;
  exists(id: string): Promise<boolean>;
  /** The stored size of each hash that is stored. */
  blobSizes(hashes: string[]): Promise<Map<string, number>>;
  /**
   * Keeps the version unless its id is kept already ({ stored: false }), after checking in the
   * same transaction that every blob is still stored with its size (the hashes absent
   * otherwise); then evicts the scope's old versions past `budget`.
   */
  insert(version: NewVersion, budget: number): Promise<InsertOutcome>;
  /** Adds one fetch's figures to its scope's totals. */
  recordFetch(scope: string, report: MountFetchReport, now: number): Promise<void>;
  close?(): Promise<void>;
}

export class MountRejected extends Error {
  constructor(
    readonly status: 400 | 413,
    message: string,
  ) {
    super(message);
  }
}

export class MountStore {
  /** Versions published since start, and how many versions the budget evicted. */
  published = 0;
  evicted = 0;

  constructor(
    private readonly rows: MountRows,
    /** Bytes each scope may keep (the distinct files of its versions). */
    readonly budget = DEFAULT_MOUNT_BUDGET,
  ) {}

  scopes(): Promise<MountScopeInfo[]> {
    return this.rows.scopes();
  }

  versions(scope: string): Promise<MountVersionInfo[]> {
    return this.rows.versions(scope);
  }

  /** Whether a token of `role` may see the scope (readableBy); one without versions is not visible. */
  async visible(scope: string, role: string | undefined): Promise<boolean> {
    const label = await this.rows.labelOf(scope);
    return label !== undefined && readableBy(role, label);
  }

  manifest(scope: string, id: string): Promise<string | undefined> {
    return this.rows.body(id, scope);
  }

  async missing(hashes: string[]): Promise<string[]> {
    const wanted = [...new Set(hashes)];
    const stored = await this.rows.blobSizes(wanted);
    return wanted.filter((hash) => !stored.has(hash));
  }

  /** Stores a version; "same" when it is stored already. Throws MountRejected. */
  async publish(scope: string, id: string, text: string, author: string): Promise<"stored" | "same"> {
    if (await this.rows.exists(id)) return "same";
    const manifest = this.check(scope, id, text);
    const signer = signerOf(manifest);
    if ("error" in signer) throw new MountRejected(400, `bad signature: ${signer.error}`);
    const blobs = new Map(manifest.files.map((file) => [file.blake3, file.size]));
    const stored = await this.rows.blobSizes([...blobs.keys()]);
    const absent = manifest.files.filter((file) => stored.get(file.blake3) !== file.size);
    if (absent.length) throw notStored(absent.map((file) => file.path));
    const parentHashes = new Set(manifest.parent ? (await this.filesOf(manifest.parent)).map((file) => file.blake3) : []);
    const info: MountVersionInfo = {
      id,
      parent: manifest.parent,
      signer: signer.signer ?? null,
      author,
      created: manifest.created,
      published: Date.now(),
      files: manifest.files.length,
      size: manifest.files.reduce((total, file) => total + file.size, 0),
      changed: manifest.files.filter((file) => !parentHashes.has(file.blake3)).length,
    };
    const outcome = await this.rows.insert({ info, scope, label: manifest.label, body: text, blobs }, this.budget);
    if ("absent" in outcome) {
      // Evicted between the check above and the insert: as if never uploaded.
      const gone = new Set(outcome.absent);
      throw notStored(manifest.files.filter((file) => gone.has(file.blake3)).map((file) => file.path));
    }
    if (!outcome.stored) return "same";
    this.published++;
    this.evicted += outcome.evicted;
    return "stored";
  }

  recordFetch(scope: string, report: MountFetchReport): Promise<void> {
    return this.rows.recordFetch(scope, report, Date.now());
  }

  async close() {
    await this.rows.close?.();
  }

  private check(scope: string, id: string, text: string): MountManifest {
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (cause) {
      throw new MountRejected(400, `the manifest is not JSON: ${(cause as Error).message}`);
    }
    const parsed = parseManifest(body, id);
    if ("error" in parsed) throw new MountRejected(400, parsed.error);
    if (parsed.manifest.scope !== scope) throw new MountRejected(400, `the manifest is for scope ${parsed.manifest.scope}, not ${scope}`);
    const bytes = [...new Map(parsed.manifest.files.map((file) => [file.blake3, file.size])).values()].reduce((a, b) => a + b, 0);
    if (bytes > this.budget) throw new MountRejected(413, `the version holds ${bytes} bytes; a cache mount may keep at most ${this.budget}`);
    return parsed.manifest;
  }

  private async filesOf(id: string): Promise<MountManifest["files"]> {
    const body = await this.rows.body(id);
    return body ? (JSON.parse(body) as MountManifest).files : [];
  }
}

/**
 * A worker's private scope holds what a read-only submitter's RUN wrote (its secrets, perhaps),
 * so no read-only token sees one (a worker's token fetches it for the job).
 */
const readableBy = (role: string | undefined, label: MountManifest["label"]) => role !== "ro" || !isPrivateScope(label.scope ?? undefined);

const notStored = (paths: string[]) =>
  new MountRejected(400, `${paths.length} file(s) are not stored with the size the manifest gives (upload them first), e.g. ${paths.slice(0, 3).join(", ")}`);

/**
 * The versions that keep to one budget together: a scope's own, except that every private scope
 * of one read-only submitter (label scope job-private/ID, published by workers) shares one.
 * Its jobs may name as many mount ids as they like, and a worker publishes each: one budget per
 * id would give a read-only token as much of the server's storage as it asked for.
 */
export function budgetGroup(scope: string, label: MountManifest["label"]): { by: "scope" | "label_scope"; key: string } {
  return isPrivateScope(label.scope ?? undefined) ? { by: "label_scope", key: label.scope! } : { by: "scope", key: scope };
}

/**
 * Which versions a scope keeps: newest first, until the distinct files of those kept pass the
 * budget; the newest always stays. `files` gives each version's distinct files (hash → size).
 */
export function versionsToEvict(newestFirst: string[], files: (id: string) => { hash: string; size: number }[], budget: number): string[] {
  const seen = new Set<string>();
  let bytes = 0;
  let keep = 0;
  for (const id of newestFirst) {
    for (const file of files(id)) {
      if (seen.has(file.hash)) continue;
      seen.add(file.hash);
      bytes += file.size;
    }
    if (keep > 0 && bytes > budget) break;
    keep++;
  }
  return newestFirst.slice(keep);
}

/**
 * The time a fetch saved by not downloading the files the machine had: the bytes it kept, at
 * the rate this same fetch downloaded the others. A fetch that downloaded nothing measured no
 * rate and counts nothing (a machine already at the newest version does not fetch at all).
 */
export function savedMs(report: MountFetchReport): number {
  if (report.bytesFetched === 0 || report.ms === 0) return 0;
  return Math.min(MAX_FETCH_MS, Math.round((report.bytesKept * report.ms) / report.bytesFetched));
}

/**
 * The longest a fetch may say it took, and saved: a day (a fetch is abandoned after
 * MEMOBUILD_CACHE_MOUNT_TIMEOUT, a minute by default). So no report, however many, can make
 * a total leave the whole numbers both stores add up (the totals also stop at 2^53 - 1).
 */
const MAX_FETCH_MS = 86_400_000;

/** A fetch report as a client sends it: counts and milliseconds, each a bounded whole number. */
export function parseFetchReport(body: unknown): MountFetchReport | string {
  const fields = ["filesFetched", "bytesFetched", "filesKept", "bytesKept", "ms"] as const;
  if (typeof body !== "object" || body === null) return "expected a JSON object";
  const report: Partial<MountFetchReport> = {};
  for (const field of fields) {
    const value = (body as Record<string, unknown>)[field];
    const max = field === "ms" ? MAX_FETCH_MS : 2 ** 50;
    if (!Number.isSafeInteger(value) || (value as number) < 0 || (value as number) > max) return `${field} must be a whole number from 0 to ${field === "ms" ? `${max} (a day)` : "2^50"}`;
    report[field] = value as number;
  }
  return report as MountFetchReport;
}

/**
 * Why a report says more than fetching a version of the scope could have (any token may send
 * one, a read-only one too): a fetch downloads and keeps at most the files of one version.
 */
function beyondScope(report: MountFetchReport, versions: MountVersionInfo[]): string | undefined {
  const files = Math.max(...versions.map((v) => v.files));
  const size = Math.max(...versions.map((v) => v.size));
  if (report.filesFetched + report.filesKept > files) return `the report names ${report.filesFetched + report.filesKept} files and this scope's largest version holds ${files}`;
  if (report.bytesFetched + report.bytesKept > size) return `the report names ${report.bytesFetched + report.bytesKept} bytes and this scope's largest version holds ${size}`;
  return undefined;
}

const validScope = (text: string | undefined) => HASH.test(text ?? "");

/** `nameOf`: a token's name from its id (the token file's `name=`), shown instead of the hash prefix. */
export function mountRoutes(mounts: MountStore, nameOf: (id: string) => string | undefined = () => undefined): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.get("/v1/mounts", async (c) => {
    const visible = (await mounts.scopes()).filter((s) => readableBy(c.get("role"), s.label));
    const scopes = visible.map((s) => {
      const name = s.current.author === null ? undefined : nameOf(s.current.author);
      return name ? { ...s, current: { ...s.current, authorName: name } } : s;
    });
    return c.json({ scopes });
  });

  app.post("/v1/mounts/missing", async (c) => {
    const text = await boundedText(c.req.raw, MAX_MANIFEST_BYTES);
    if (text === undefined) return error(c, 413, `a request may be at most ${MAX_MANIFEST_BYTES} bytes`);
    let hashes: unknown;
    try {
      hashes = (JSON.parse(text) as { hashes?: unknown }).hashes;
    } catch {
      return error(c, 400, 'expected JSON { "hashes": [...] }');
    }
    if (!Array.isArray(hashes) || !hashes.every((h) => typeof h === "string" && HASH.test(h))) return error(c, 400, "hashes must be a list of 64-hex-digit BLAKE3 hashes");
    return c.json({ missing: await mounts.missing(hashes as string[]) });
  });

  app.get("/v1/mounts/:scope", async (c) => {
    if (!validScope(c.req.param("scope"))) return error(c, 400, "a scope is named by 64 hex digits");
    // A scope hidden from this token answers as one that does not exist.
    if (!(await mounts.visible(c.req.param("scope"), c.get("role")))) return c.json({ versions: [] });
    return c.json({ versions: await mounts.versions(c.req.param("scope")) });
  });

  // Any token that may read a scope may say what fetching it saved: figures only, added up.
  app.post("/v1/mounts/:scope/fetched", async (c) => {
    if (!validScope(c.req.param("scope"))) return error(c, 400, "a scope is named by 64 hex digits");
    const text = await boundedText(c.req.raw, 4096);
    if (text === undefined) return error(c, 413, "a fetch report may be at most 4096 bytes");
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return error(c, 400, "a fetch report is JSON");
    }
    const report = parseFetchReport(body);
    if (typeof report === "string") return error(c, 400, report);
    if (!(await mounts.visible(c.req.param("scope"), c.get("role")))) return error(c, 404, "no such scope");
    const versions = await mounts.versions(c.req.param("scope"));
    const beyond = beyondScope(report, versions);
    if (beyond) return error(c, 400, beyond);
    await mounts.recordFetch(c.req.param("scope"), report);
    return c.json({ recorded: true });
  });

  app.get("/v1/mounts/:scope/:version", async (c) => {
    const { scope, version } = c.req.param();
    if (!validScope(scope) || !HASH.test(version)) return error(c, 400, "a scope and a version are named by 64 hex digits");
    if (!(await mounts.visible(scope, c.get("role")))) return error(c, 404, "no such version");
    const body = await mounts.manifest(scope, version);
    if (body === undefined) return error(c, 404, "no such version");
    c.set("bytesOut", body.length);
    return c.body(body, 200, { "content-type": "application/json" });
  });

  app.put("/v1/mounts/:scope/:version", async (c) => {
    const { scope, version } = c.req.param();
    if (!validScope(scope) || !HASH.test(version)) return error(c, 400, "a scope and a version are named by 64 hex digits");
    // Workers publish the mounts of the builds they run (which scope is theirs to choose: worker.ts).
    if (c.get("role") !== "rw" && c.get("role") !== "worker") return error(c, 403, "this token is read-only");
    const text = await boundedText(c.req.raw, MAX_MANIFEST_BYTES);
    if (text === undefined) return error(c, 413, `a manifest may be at most ${MAX_MANIFEST_BYTES} bytes`);
    try {
      const outcome = await mounts.publish(scope, version, text, c.get("token"));
      c.set("bytesIn", text.length);
      return c.json({ version }, outcome === "stored" ? 201 : 200);
    } catch (cause) {
      if (!(cause instanceof MountRejected)) throw cause;
      return error(c, cause.status, cause.message);
    }
  });

  return app;
}
