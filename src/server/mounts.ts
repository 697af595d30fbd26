/**
 * Shared cache mounts on the server: versions of a scope (a mount's identity plus an optional
 * --cache-mount-scope) as manifests whose files are ordinary blobs.
 *
 *   GET  /v1/mounts                        every scope: its current version, count, stored bytes
 *   GET  /v1/mounts/{scope}                its versions, newest first (no files)
 *   GET  /v1/mounts/{scope}/{version}      a version's manifest
 *   POST /v1/mounts/missing                { hashes } -> { missing }: which blobs to upload
 *   PUT  /v1/mounts/{scope}/{version}      publish (read-write tokens only: 403 otherwise)
 *
 * A version names blobs already stored (400 otherwise), is named by its BLAKE3 (400 otherwise)
 * and, when signed, must verify (400). Two versions from one parent are both kept; the one
 * published last is current; nothing is merged. Each scope keeps to a byte budget: old versions
 * go first, the newest stays (a version larger than the budget is refused, 413).
 *
 * Tables live in the cache's SQLite file. The blobs a kept version needs are listed in the
 * storage's `action_blobs` under the key `mount:VERSION`, so the storage's own eviction never
 * takes them; when a version goes, its rows go, and its blobs are then as any unneeded blob.
 */
import { Hono } from "hono";
import type { Database } from "bun:sqlite";
import { HASH, type Storage } from "./storage.ts";
import { SqliteCacheIndex } from "./cache-index.ts";
import { boundedText, error, type AppEnv } from "./http.ts";
import { parseManifest, signerOf, type MountManifest, type MountScopeInfo, type MountVersionInfo } from "../remote/mount-manifest.ts";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS mount_versions (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, scope TEXT NOT NULL, parent TEXT,
  label_id TEXT NOT NULL, label_scope TEXT, signer TEXT, author TEXT, created INTEGER NOT NULL,
  published INTEGER NOT NULL, files INTEGER NOT NULL, size INTEGER NOT NULL, changed INTEGER NOT NULL, body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS mount_versions_scope ON mount_versions (scope, seq);
`;

/** A manifest of a million files is ~100 MB of JSON; caches that large are not shared file by file. */
export const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;
export const DEFAULT_MOUNT_BUDGET = 2 * 1024 * 1024 * 1024;

const blobKey = (version: string) => `mount:${version}`;
/** Every column but the manifest itself (which may be megabytes): what listings read. */
const INFO = "seq, id, scope, parent, label_id, label_scope, signer, author, created, published, files, size, changed";

type Row = { seq: number; id: string; scope: string; parent: string | null; label_id: string; label_scope: string | null; signer: string | null; author: string | null; created: number; published: number; files: number; size: number; changed: number };

const info = (row: Row): MountVersionInfo => ({
  id: row.id,
  parent: row.parent,
  signer: row.signer,
  author: row.author,
  created: row.created,
  published: row.published,
  files: row.files,
  size: row.size,
  changed: row.changed,
});

export class MountRejected extends Error {
  constructor(
    readonly status: 400 | 413,
    message: string,
  ) {
    super(message);
  }
}

export class MountStore {
  private readonly db: Database;
  /** Versions published since start, and how many versions the budget evicted. */
  published = 0;
  evicted = 0;

  /** The cache's SQLite index: versions keep their files as rows beside the actions' (sync reads). */
  private readonly index: SqliteCacheIndex;

  constructor(
    private readonly storage: Storage,
    /** Bytes each scope may keep (the distinct files of its versions). */
    readonly budget = DEFAULT_MOUNT_BUDGET,
  ) {
    if (!(storage.index instanceof SqliteCacheIndex)) throw new Error("cache mounts are kept in the SQLite cache index");
    this.index = storage.index;
    this.db = this.index.db;
    this.db.exec(SCHEMA);
  }

  scopes(): MountScopeInfo[] {
    const rows = this.db.query(`SELECT ${INFO} FROM mount_versions WHERE seq IN (SELECT MAX(seq) FROM mount_versions GROUP BY scope) ORDER BY published DESC`).all() as Row[];
    return rows.map((row) => ({
      scope: row.scope,
      label: { id: row.label_id, scope: row.label_scope },
      versions: (this.db.query("SELECT COUNT(*) AS n FROM mount_versions WHERE scope = ?").get(row.scope) as { n: number }).n,
      stored: this.storedBytes(row.scope),
      current: info(row),
    }));
  }

  versions(scope: string): MountVersionInfo[] {
    return (this.db.query(`SELECT ${INFO} FROM mount_versions WHERE scope = ? ORDER BY seq DESC`).all(scope) as Row[]).map(info);
  }

  manifest(scope: string, id: string): string | undefined {
    return (this.db.query("SELECT body FROM mount_versions WHERE scope = ? AND id = ?").get(scope, id) as { body: string } | null)?.body;
  }

  missing(hashes: string[]): string[] {
    return [...new Set(hashes)].filter((hash) => !this.index.known(hash));
  }

  /** Stores a version; "same" when it is stored already. Throws MountRejected. */
  publish(scope: string, id: string, text: string, author: string): "stored" | "same" {
    if (this.db.query("SELECT 1 FROM mount_versions WHERE id = ?").get(id)) return "same";
    const manifest = this.check(scope, id, text);
    const signer = signerOf(manifest);
    if ("error" in signer) throw new MountRejected(400, `bad signature: ${signer.error}`);
    const size = manifest.files.reduce((total, file) => total + file.size, 0);
    const distinct = new Map(manifest.files.map((file) => [file.blake3, file.size]));
    const parentHashes = new Set(manifest.parent ? this.filesOf(manifest.parent).map((file) => file.blake3) : []);
    const changed = manifest.files.filter((file) => !parentHashes.has(file.blake3)).length;
    this.db.transaction(() => {
      this.db
        .query("INSERT INTO mount_versions (id, scope, parent, label_id, label_scope, signer, author, created, published, files, size, changed, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        .run(id, scope, manifest.parent, manifest.label.id, manifest.label.scope, signer.signer ?? null, author, manifest.created, Date.now(), manifest.files.length, size, changed, text);
      const needs = this.db.query("INSERT OR IGNORE INTO action_blobs (key, hash) VALUES (?, ?)");
      for (const hash of distinct.keys()) needs.run(blobKey(id), hash);
    })();
    for (const hash of distinct.keys()) this.storage.touchBlob(hash);
    this.published++;
    this.keepBudget(scope);
    return "stored";
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
    const absent = parsed.manifest.files.filter((file) => this.index.sizeOf(file.blake3) !== file.size);
    if (absent.length) {
      throw new MountRejected(400, `${absent.length} file(s) are not stored with the size the manifest gives (upload them first), e.g. ${absent.slice(0, 3).map((f) => f.path).join(", ")}`);
    }
    return parsed.manifest;
  }

  private filesOf(id: string): MountManifest["files"] {
    const row = this.db.query("SELECT body FROM mount_versions WHERE id = ?").get(id) as { body: string } | null;
    return row ? (JSON.parse(row.body) as MountManifest).files : [];
  }

  private storedBytes(scope: string): number {
    const row = this.db
      .query("SELECT COALESCE(SUM(size), 0) AS bytes FROM blobs WHERE hash IN (SELECT hash FROM action_blobs WHERE key IN (SELECT 'mount:' || id FROM mount_versions WHERE scope = ?))")
      .get(scope) as { bytes: number };
    return row.bytes;
  }

  /** Old versions go until the distinct files of those kept fit the budget; the newest stays. */
  private keepBudget(scope: string) {
    const rows = this.db.query("SELECT id FROM mount_versions WHERE scope = ? ORDER BY seq DESC").all(scope) as { id: string }[];
    const seen = new Set<string>();
    let bytes = 0;
    let keep = 0;
    // Each version's distinct files, from the rows that keep its blobs (no manifest parsed).
    const files = this.db.query("SELECT b.hash AS hash, b.size AS size FROM action_blobs a JOIN blobs b ON b.hash = a.hash WHERE a.key = ?");
    for (const row of rows) {
      for (const file of files.all(blobKey(row.id)) as { hash: string; size: number }[]) {
        if (seen.has(file.hash)) continue;
        seen.add(file.hash);
        bytes += file.size;
      }
      if (keep > 0 && bytes > this.budget) break;
      keep++;
    }
    for (const row of rows.slice(keep)) {
      this.db.transaction(() => {
        this.db.query("DELETE FROM mount_versions WHERE id = ?").run(row.id);
        this.db.query("DELETE FROM action_blobs WHERE key = ?").run(blobKey(row.id));
      })();
      this.evicted++;
    }
  }
}

const validScope = (text: string | undefined) => HASH.test(text ?? "");

export function mountRoutes(mounts: MountStore): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.get("/v1/mounts", (c) => c.json({ scopes: mounts.scopes() }));

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
    return c.json({ missing: mounts.missing(hashes as string[]) });
  });

  app.get("/v1/mounts/:scope", (c) => {
    if (!validScope(c.req.param("scope"))) return error(c, 400, "a scope is named by 64 hex digits");
    return c.json({ versions: mounts.versions(c.req.param("scope")) });
  });

  app.get("/v1/mounts/:scope/:version", (c) => {
    const { scope, version } = c.req.param();
    if (!validScope(scope) || !HASH.test(version)) return error(c, 400, "a scope and a version are named by 64 hex digits");
    const body = mounts.manifest(scope, version);
    if (body === undefined) return error(c, 404, "no such version");
    c.set("bytesOut", body.length);
    return c.body(body, 200, { "content-type": "application/json" });
  });

  app.put("/v1/mounts/:scope/:version", async (c) => {
    const { scope, version } = c.req.param();
    if (!validScope(scope) || !HASH.test(version)) return error(c, 400, "a scope and a version are named by 64 hex digits");
    if (c.get("role") !== "rw") return error(c, 403, "this token is read-only");
    const text = await boundedText(c.req.raw, MAX_MANIFEST_BYTES);
    if (text === undefined) return error(c, 413, `a manifest may be at most ${MAX_MANIFEST_BYTES} bytes`);
    try {
      const outcome = mounts.publish(scope, version, text, c.get("token"));
      c.set("bytesIn", text.length);
      return c.json({ version }, outcome === "stored" ? 201 : 200);
    } catch (cause) {
      if (!(cause instanceof MountRejected)) throw cause;
      return error(c, cause.status, cause.message);
    }
  });

  return app;
}
