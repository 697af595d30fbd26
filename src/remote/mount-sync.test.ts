/**
 * The cache-mount sync against the real server app in process: `sharing=` keeps its meaning
 * (the fetch happens inside the RUN's own lock, into the directory that RUN gets), and one
 * directory is fetched once per build.
 */
import { afterAll, afterEach, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { directoryCacheMounts, type CacheMount } from "../executor/cache-mount.ts";
import { createApp } from "../server/app.ts";
import { createParts, type ServerParts } from "../server/parts.ts";
import { createLogger } from "../util/log.ts";
import { RemoteCache } from "./client.ts";
import { RemoteCacheMounts } from "./mount-sync.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-mount-sync-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

let parts: ServerParts;
let server: ReturnType<typeof Bun.serve>;
let seen: string[];
let n = 0;
let warnings: string[];

beforeEach(async () => {
  parts = await createParts({ dataDir: join(work, `data${++n}`), tokens: [], log: createLogger({ MEMOBUILD_LOG: "error" }) });
  const app = createApp(parts);
  seen = [];
  warnings = [];
  server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch: (request) => (seen.push(`${request.method} ${new URL(request.url).pathname}`), app.fetch(request)),
  });
});
afterEach(async () => {
  server.stop(true);
  await parts.close();
});

const mount = (sharing: CacheMount["sharing"]): CacheMount => ({ type: "cache", target: "/root/.npm", id: "npm", sharing, readonly: false, mode: 0o755, uid: 0, gid: 0 });

/** One build on a machine (a store directory): the local mounts, wrapped. */
function machine(store: string, mode: "on" | "read") {
  const remote = new RemoteCache({ url: `http://127.0.0.1:${server.port}`, warn: (m) => warnings.push(m), attempts: 1 });
  const mounts = new RemoteCacheMounts({ remote, mode, warn: (m) => warnings.push(m), staging: () => mkdtempSync(join(work, "staging-")) });
  const local = directoryCacheMounts((identity) => join(store, Bun.hash(identity).toString(16)));
  return { mounts, provider: mounts.wrap(local), local };
}

/** Machine A publishes the npm mount with one file. */
async function publishFromA() {
  const a = machine(join(work, `a-${++n}`), "on");
  const lease = await a.provider.acquire(mount("locked"));
  writeFileSync(join(lease.path, "p1.tgz"), "package one");
  lease.release();
  await a.mounts.publish();
  expect(warnings).toEqual([]);
}

const fetches = () => seen.filter((line) => line.startsWith("GET /v1/mounts/")).length;

describe("sharing keeps its meaning with a shared cache", () => {
  test("locked: the fetch waits for the build holding the directory, and happens under the lock", async () => {
    await publishFromA();
    const store = join(work, `b-${++n}`);
    const other = directoryCacheMounts((identity) => join(store, Bun.hash(identity).toString(16)));
    const held = await other.acquire(mount("locked")); // another build on this machine
    const b = machine(store, "read");
    const before = fetches();
    let acquired = false;
    const waiting = b.provider.acquire(mount("locked")).then((lease) => ((acquired = true), lease));
    await Bun.sleep(300);
    expect([acquired, fetches() - before]).toEqual([false, 0]);
    held.release();
    const lease = await waiting;
    expect(readFileSync(join(lease.path, "p1.tgz"), "utf8")).toBe("package one");
    lease.release();
  });

  test("private: a build that finds the directory in use gets its own, and that one is fetched", async () => {
    await publishFromA();
    const store = join(work, `c-${++n}`);
    const other = directoryCacheMounts((identity) => join(store, Bun.hash(identity).toString(16)));
    const held = await other.acquire(mount("private"));
    const b = machine(store, "read");
    const lease = await b.provider.acquire(mount("private"));
    expect(lease.path).toBe(`${held.path}-1`);
    expect(readFileSync(join(lease.path, "p1.tgz"), "utf8")).toBe("package one");
    expect(existsSync(join(held.path, "p1.tgz"))).toBe(false); // the other build's directory is left alone
    lease.release();
    held.release();
  });

  test("shared: RUNs of one build using the directory at once fetch it once", async () => {
    await publishFromA();
    const b = machine(join(work, `d-${++n}`), "read");
    const before = seen.length;
    const leases = await Promise.all([b.provider.acquire(mount("shared")), b.provider.acquire(mount("shared")), b.provider.acquire(mount("shared"))]);
    expect(new Set(leases.map((l) => l.path)).size).toBe(1);
    expect(seen.slice(before).filter((line) => line.startsWith("GET /v1/mounts/")).length).toBe(2); // the versions, then the one manifest
    expect(seen.slice(before).filter((line) => line.startsWith("GET /v1/blobs/")).length).toBe(1);
    expect(readFileSync(join(leases[0].path, "p1.tgz"), "utf8")).toBe("package one");
  });

  test("a directory already at the newest version downloads nothing and keeps what was added here", async () => {
    await publishFromA();
    const store = join(work, `e-${++n}`);
    const first = machine(store, "read");
    const lease = await first.provider.acquire(mount("locked"));
    writeFileSync(join(lease.path, "local.tgz"), "built here");
    lease.release();
    const second = machine(store, "read");
    const before = seen.length;
    const again = await second.provider.acquire(mount("locked"));
    const asked = seen.slice(before);
    expect(asked).toHaveLength(1); // the list of versions only
    expect(asked[0]).toStartWith("GET /v1/mounts/");
    expect(readFileSync(join(again.path, "local.tgz"), "utf8")).toBe("built here");
    again.release();
  });
});

describe("what a fetch saved", () => {
  test("each fetch reports the files it downloaded and those it already had; the server adds them up for the hub", async () => {
    const storeA = join(work, `a-${++n}`);
    const a = machine(storeA, "on");
    let lease = await a.provider.acquire(mount("locked"));
    writeFileSync(join(lease.path, "p1.tgz"), "package one");
    lease.release();
    await a.mounts.publish();
    const storeB = join(work, `b-${++n}`);
    (await machine(storeB, "read").provider.acquire(mount("locked"))).release(); // p1 downloaded
    const a2 = machine(storeA, "on");
    lease = await a2.provider.acquire(mount("locked"));
    writeFileSync(join(lease.path, "p2.tgz"), "package two!");
    lease.release();
    await a2.mounts.publish();
    (await machine(storeB, "read").provider.acquire(mount("locked"))).release(); // p2 downloaded, p1 kept
    expect(warnings).toEqual([]);
    const [scope] = (await parts.mounts!.scopes());
    expect({ ...scope.fetched, ms: 0, savedMs: 0 }).toEqual({ fetches: 2, filesFetched: 2, bytesFetched: 11 + 12, filesKept: 1, bytesKept: 11, ms: 0, savedMs: 0 });
  });
});
