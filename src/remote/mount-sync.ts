/**
 * `RUN --mount=type=cache` directories that follow the team through the remote cache.
 *
 * Wraps the local mounts: before the first RUN of a build that uses a mount, its directory is
 * brought to the newest version on the server that this client trusts, downloading only the
 * files it lacks (each checked by BLAKE3, as every blob); the version it now holds is written
 * beside it. After a build that succeeded, `publish()` uploads the files that changed and a new
 * version whose parent is the one the build started from (commit on success: a failed build
 * never calls it).
 *
 * A cache mount is an optimization: a fetch that fails, or takes longer than `timeoutMs`, leaves
 * the local copy as it was, costs one warning (an unreachable remote warns through the remote
 * cache client, once for the whole build) and never fails the build.
 *
 * Trust: with a trust list, only versions signed by a key on it are followed, and the signature
 * is checked here. A build that signs (--remote-sign-key) trusts its own key, and with no list
 * ONLY its own key: so CI, which signs, never builds on files a pull request published. A local
 * copy that holds a version no trusted key signed (left by a build with other settings) is
 * emptied before a RUN sees it, and never published from.
 */
import { terminalText } from "../util/terminal-text.ts";
import { closeSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Blake3Hasher } from "../hash/blake3.ts";
import { cacheIdentity, type CacheMount, type CacheMountLease, type CacheMountProvider, type CacheMountSeed } from "../executor/cache-mount.ts";
import { log } from "../util/log.ts";
import { readBody, readBodyBytes } from "../util/network.ts";
import { writeAll } from "../util/write-all.ts";
import { Root } from "../rootfs/root.ts";
import type { SigningKey } from "./action.ts";
import { RemoteCacheError, type RemoteCache } from "./client.ts";
import { apply, listFiles, manifestFiles, plan, sameFiles, type LocalFile } from "./mount-files.ts";
import type { MountFetchReport } from "./mount-types.ts";
import { canonicalText, MOUNT_FORMAT, mountScope, parseManifest, signerOf, versionId, type MountLabel, type MountManifest, type MountVersionInfo } from "./mount-manifest.ts";

export interface RemoteMountsOptions {
  remote: RemoteCache;
  /** on: fetch and publish; read: fetch only. */
  mode: "on" | "read";
  /** --cache-mount-scope: versions kept apart from other scopes of the same mount (a branch, say). */
  scopeName?: string;
  trust?: string[];
  signer?: SigningKey;
  warn: (message: string) => void;
  /** A new, empty directory of this build's own, on any file system. */
  staging: () => string;
  timeoutMs?: number;
}

/** What is kept beside a mount's directory (DIR.remote.json). */
interface MountState {
  scope: string;
  label: MountLabel;
  /** The version the directory held when last synced or published; null: none. */
  version: string | null;
  signer: string | null;
  /** The files as they were then, with size and mtime: the base to diff against, and a hash cache. */
  files: LocalFile[];
}

/** One mount directory this build used. */
interface Used {
  path: string;
  scope: string;
  label: MountLabel;
  /** False when its fetch failed: a directory not known to be at a version is not published from. */
  synced: boolean;
}

const stateFile = (path: string) => `${path}.remote.json`;

export function readMountState(path: string): MountState | undefined {
  try {
    return JSON.parse(readFileSync(stateFile(path), "utf8")) as MountState;
  } catch {
    return undefined;
  }
}

function writeState(path: string, state: MountState) {
  const temporary = `${stateFile(path)}.${process.pid}`;
  writeFileSync(temporary, JSON.stringify(state));
  renameSync(temporary, stateFile(path));
}

const DOWNLOADS_AT_ONCE = 16;
const MAX_LIST_BYTES = 16 * 1024 * 1024;
const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;

class MountFetchError extends Error {}

export class RemoteCacheMounts implements CacheMountProvider {
  private local?: CacheMountProvider;
  private readonly used = new Map<string, Used>();
  private readonly syncs = new Map<string, Promise<boolean>>();
  private readonly trusted?: Set<string>;
  /** After one failed fetch, the rest of the build uses local copies (a slow remote is slow for all). */
  private fetching = true;
  private warned = false;

  constructor(private readonly options: RemoteMountsOptions) {
    const keys = [...(options.trust ?? []).map((key) => key.trim()), ...(options.signer ? [options.signer.publicKey] : [])];
    if (keys.length) this.trusted = new Set(keys);
  }

  /** The provider the executor uses: the local one, synced first. */
  wrap(local: CacheMountProvider): CacheMountProvider {
    this.local = local;
    return this;
  }

  async acquire(mount: CacheMount, seed?: CacheMountSeed): Promise<CacheMountLease> {
    const lease = await this.local!.acquire(mount, seed, this.options.scopeName);
    const scope = mountScope(cacheIdentity(mount, seed), this.options.scopeName);
    const label = { id: mount.id, scope: this.options.scopeName ?? null };
    // Once per directory per build; RUNs sharing a directory wait for the same sync.
    let sync = this.syncs.get(lease.path);
    if (!sync) {
      sync = this.sync(lease.path, scope, label);
      this.syncs.set(lease.path, sync);
    }
    const synced = await sync;
    this.used.set(lease.path, { path: lease.path, scope, label, synced });
    return lease;
  }

  private isTrusted(signer: string | null): boolean {
    return !this.trusted || (signer !== null && this.trusted.has(signer));
  }

  /** One warning per build for everything about cache mounts. */
  private warnOnce(message: string) {
    if (this.warned) return;
    this.warned = true;
    this.options.warn(terminalText(message, { max: 2000 }));
  }

  /** Brings `path` to the newest trusted version; false when it could not (the local copy stays). */
  private async sync(path: string, scope: string, label: MountLabel): Promise<boolean> {
    if (!this.fetching || !this.options.remote.available) return false;
    const timeoutMs = this.options.timeoutMs ?? 60_000;
    // Past its time a fetch is abandoned: its requests end at once, and nothing it fetched is applied.
    const abandon = new AbortController();
    const timer = setTimeout(() => abandon.abort(), timeoutMs);
    try {
      const outcome = await this.fetchInto(path, scope, label, abandon.signal);
      if (abandon.signal.aborted) throw new MountFetchError("abandoned");
      return outcome;
    } catch (error) {
      this.fetching = false;
      const reason = abandon.signal.aborted ? `slower than ${timeoutMs / 1000} s` : error instanceof MountFetchError || error instanceof RemoteCacheError ? error.message : String(error);
      this.warnOnce(`cache mount ${label.id}: could not fetch it from the remote cache (${reason}); using the local copy`);
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  private async fetchInto(path: string, scope: string, label: MountLabel, signal: AbortSignal): Promise<boolean> {
    const started = performance.now();
    const state = readMountState(path);
    const base = state?.scope === scope ? state : undefined;
    const newest = await this.newestTrusted(scope, signal);
    if (newest === undefined) return false; // the remote went away: it has warned
    const baseTrusted = !base?.version || this.isTrusted(base.signer);
    if (newest?.id === base?.version || (newest === null && baseTrusted)) {
      if (!base) writeState(path, { scope, label, version: null, signer: null, files: [] });
      return true;
    }
    // No trusted version, and the local copy came from an untrusted one: it goes empty.
    const manifest = newest ? await this.manifest(scope, newest, signal) : { files: [] };
    if (!manifest) return false;
    const local = listFiles(path, new Map(base?.files.map((file) => [file.path, file])));
    const changes = plan(local, manifest.files);
    const staging = this.options.staging();
    try {
      if (!(await this.download(changes.write, staging, signal)) || signal.aborted) return false;
      rmSync(stateFile(path), { force: true }); // half applied is at no version
      apply(path, changes, (hash) => join(staging, hash));
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
    // Files kept keep their hashes; those just written are hashed again (GB/s; they were verified once).
    writeState(path, { scope, label, version: newest?.id ?? null, signer: newest?.signer ?? null, files: [...listFiles(path, local).values()] });
    const ms = Math.round(performance.now() - started);
    log().debug("cache mount synced", { id: label.id, version: newest?.id.slice(0, 12), written: changes.write.length, removed: changes.remove.length, ms });
    if (newest) await this.reportFetch(scope, manifest.files, changes.write, ms);
    return true;
  }

  /**
   * Tells the server what this fetch downloaded and what it did not have to (the hub's "time
   * saved"); figures only, and a report that fails changes nothing.
   */
  private async reportFetch(scope: string, files: MountManifest["files"], written: MountManifest["files"], ms: number) {
    if (!this.options.remote.sends) return;
    const fetched = new Map(written.map((file) => [file.blake3, file.size]));
    const kept = files.filter((file) => !fetched.has(file.blake3));
    const report: MountFetchReport = {
      filesFetched: fetched.size,
      bytesFetched: [...fetched.values()].reduce((a, b) => a + b, 0),
      filesKept: kept.length,
      bytesKept: kept.reduce((total, file) => total + file.size, 0),
      ms,
    };
    await this.options.remote
      .request("POST", `/v1/mounts/${scope}/fetched`, { body: JSON.stringify(report), headers: { "content-type": "application/json" }, signal: AbortSignal.timeout(5000) })
      .then((response) => response?.body?.cancel())
      .catch(() => {});
  }

  /** The newest version signed by a trusted key; null when there is none; undefined when the remote is away. */
  private async newestTrusted(scope: string, signal: AbortSignal): Promise<MountVersionInfo | null | undefined> {
    const response = await this.options.remote.request("GET", `/v1/mounts/${scope}`, { signal });
    if (!response) return undefined;
    if (response.status === 404) return null; // a server without shared cache mounts
    if (!response.ok) throw new MountFetchError(`listing versions: HTTP ${response.status}`);
    const body = await readBodyBytes(response, MAX_LIST_BYTES, "the list of cache mount versions", (max) => `larger than ${max} bytes`);
    const { versions } = JSON.parse(body.toString("utf8")) as { versions: MountVersionInfo[] };
    return versions.find((version) => this.isTrusted(version.signer)) ?? null;
  }

  /** A version's manifest, checked here: its name, its paths, its signature and the signer's trust. */
  private async manifest(scope: string, version: MountVersionInfo, signal: AbortSignal): Promise<MountManifest | undefined> {
    const response = await this.options.remote.request("GET", `/v1/mounts/${scope}/${version.id}`, { signal });
    if (!response) return undefined;
    if (!response.ok) throw new MountFetchError(`version ${version.id.slice(0, 12)}: HTTP ${response.status}`);
    const body = await readBodyBytes(response, MAX_MANIFEST_BYTES, "a cache mount version", (max) => `larger than ${max} bytes`);
    const parsed = parseManifest(JSON.parse(body.toString("utf8")), version.id);
    if ("error" in parsed) throw new MountFetchError(`version ${version.id.slice(0, 12)} is not valid: ${parsed.error}`);
    if (parsed.manifest.scope !== scope) throw new MountFetchError(`version ${version.id.slice(0, 12)} belongs to another scope`);
    const signer = signerOf(parsed.manifest);
    if ("error" in signer) throw new MountFetchError(`version ${version.id.slice(0, 12)}: ${signer.error}`);
    if ((signer.signer ?? null) !== version.signer || !this.isTrusted(signer.signer ?? null)) {
      throw new MountFetchError(`version ${version.id.slice(0, 12)} is not signed by a trusted key`);
    }
    return parsed.manifest;
  }

  /** Downloads each distinct content once into `staging/HASH`, verified; false when the remote went away. */
  private async download(files: MountManifest["files"], staging: string, signal: AbortSignal): Promise<boolean> {
    const wanted = [...new Map(files.map((file) => [file.blake3, file.size])).entries()];
    let next = 0;
    let away = false;
    const worker = async () => {
      while (next < wanted.length && !away && !signal.aborted) {
        const [hash, size] = wanted[next++];
        if (!(await this.fetchBlob(hash, size, join(staging, hash), signal))) away = true;
      }
    };
    await Promise.all(Array.from({ length: Math.min(DOWNLOADS_AT_ONCE, wanted.length) }, worker));
    return !away;
  }

  private async fetchBlob(hash: string, size: number, file: string, signal: AbortSignal): Promise<boolean> {
    const response = await this.options.remote.request("GET", `/v1/blobs/${hash}`, { signal });
    if (!response) return false;
    if (!response.ok) throw new MountFetchError(`file ${hash.slice(0, 12)}: HTTP ${response.status}`);
    const hasher = new Blake3Hasher();
    const fd = openSync(file, "w", 0o600);
    try {
      for await (const chunk of readBody(response, size, `file ${hash.slice(0, 12)}`, (max) => `more than the ${max} bytes the manifest gives`)) {
        hasher.update(chunk);
        writeAll(fd, chunk);
      }
    } finally {
      closeSync(fd);
    }
    const actual = hasher.digest("hex");
    if (actual !== hash) throw new MountFetchError(`file ${hash.slice(0, 12)} from the remote hashes to ${actual.slice(0, 12)}`);
    return true;
  }

  /**
   * After a build that succeeded: each mount directory it used uploads the files the server
   * lacks and a version naming its parent. Problems are warnings: the build is done.
   */
  async publish(): Promise<void> {
    // A remote only a project file names is read from, never sent to (config/remote.ts).
    if (this.options.mode !== "on" || !this.options.remote.sends) return;
    for (const used of this.used.values()) {
      if (!used.synced || !this.options.remote.available) continue;
      try {
        await this.publishOne(used);
      } catch (error) {
        this.warnOnce(`cache mount ${used.label.id}: not published (${(error as Error).message})`);
      }
    }
  }

  private async publishOne(used: Used) {
    const state = readMountState(used.path);
    const base = state?.scope === used.scope ? state : undefined;
    if (base?.version && !this.isTrusted(base.signer)) {
      this.warnOnce(`cache mount ${used.label.id}: not published: the local copy holds version ${base.version.slice(0, 12)}, which no trusted key signed`);
      return;
    }
    const local = listFiles(used.path, new Map(base?.files.map((file) => [file.path, file])));
    const files = manifestFiles(local);
    if (!base?.version && files.length === 0) return;
    if (base && sameFiles(files, manifestFiles(new Map(base.files.map((f) => [f.path, f]))))) return;
    if (!(await this.uploadMissing(used.path, files))) return;
    const unsigned: MountManifest = { format: MOUNT_FORMAT, scope: used.scope, label: used.label, parent: base?.version ?? null, created: Date.now(), files };
    const signer = this.options.signer;
    const manifest = signer ? { ...unsigned, signature: signer.signText(canonicalText(unsigned)) } : unsigned;
    const id = versionId(unsigned);
    const response = await this.options.remote.request("PUT", `/v1/mounts/${used.scope}/${id}`, { body: JSON.stringify(manifest), headers: { "content-type": "application/json" } });
    if (!response) return;
    if (!response.ok) throw new Error(`HTTP ${response.status}: ${await answerText(response)}`);
    writeState(used.path, { scope: used.scope, label: used.label, version: id, signer: signer?.publicKey ?? null, files: [...local.values()] });
    log().debug("cache mount published", { id: used.label.id, version: id.slice(0, 12), files: files.length });
  }

  /** Uploads the contents the server lacks (it answers which); false when the remote went away. */
  private async uploadMissing(path: string, files: MountManifest["files"]): Promise<boolean> {
    const hashes = [...new Set(files.map((file) => file.blake3))];
    const asked = await this.options.remote.request("POST", "/v1/mounts/missing", { body: JSON.stringify({ hashes }), headers: { "content-type": "application/json" } });
    if (!asked) return false;
    if (!asked.ok) throw new Error(`HTTP ${asked.status} asking which files the server lacks`);
    const missing = new Set((JSON.parse((await readBodyBytes(asked, MAX_LIST_BYTES, "the server's list of missing files", (max) => `larger than ${max} bytes`)).toString("utf8")) as { missing: string[] }).missing);
    const byHash = new Map(files.filter((file) => missing.has(file.blake3)).map((file) => [file.blake3, file]));
    const queue = [...byHash.values()];
    const worker = async () => {
      for (let file = queue.shift(); file; file = queue.shift()) await this.uploadFile(path, file);
    };
    await Promise.all(Array.from({ length: Math.min(8, queue.length) }, worker));
    return this.options.remote.available;
  }

  private async uploadFile(path: string, file: MountManifest["files"][number]) {
    const fd = Root.with(path, (root) => root.openFile(file.path, false), { symlinks: "none" });
    try {
      const put = await this.options.remote.request("PUT", `/v1/blobs/${file.blake3}`, { body: Bun.file(`/proc/self/fd/${fd}`), headers: { "content-type": "application/octet-stream" } });
      // A file changed since it was hashed is refused (400): this version is not published.
      if (put && !put.ok) throw new Error(`the server refused ${file.path} (HTTP ${put.status}: ${await answerText(put)})`);
    } finally {
      closeSync(fd);
    }
  }
}

/** A server's error text, bounded and safe to print. */
async function answerText(response: Response): Promise<string> {
  try {
    return terminalText((await readBodyBytes(response, 4096, "the server's answer", () => "too long")).toString("utf8"), { max: 200 });
  } catch {
    return "";
  }
}
