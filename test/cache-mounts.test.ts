/**
 * `RUN --mount=type=cache` shared through the remote cache, end to end: `memobuild serve` as a
 * process, builds by the compiled binary on "machines" (separate cache directories), and a fake
 * package registry on loopback that RUN downloads from.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { memobuildBinary, runMemobuild, runMemobuildAsync } from "./support/binary.ts";
import { startCacheServer, type CacheServer } from "./support/server.ts";
import { buildBaseImage, machineWithBase, writeProject } from "./support/base-image.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-mounts-"));
const TOKEN = "team-token-for-tests";
const READER = "reader-token-for-tests";
const baseOci = join(work, "base-oci");
let registry: ReturnType<typeof Bun.serve>;
/** Package files the fake registry served (each RUN that "downloads" counts here). */
let served = 0;

beforeAll(() => {
  buildBaseImage(work, baseOci);
  registry = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: (request) => {
      served++;
      return new Response(`package ${new URL(request.url).pathname}\n`.repeat(50));
    },
  });
}, 120_000);
afterAll(() => {
  registry?.stop(true);
  rmSync(work, { recursive: true, force: true });
});

let count = 0;
const machine = (name: string) => machineWithBase(join(work, `machine-${name}-${++count}`), baseOci);
// Each request is logged at debug: the tests count blob uploads from those lines.
const startServer = (args: string[] = []) => startCacheServer(join(work, `data-${++count}`), ["--token", TOKEN, "--read-only-token", READER, ...args], { MEMOBUILD_LOG: "debug" });

/** A RUN that fetches the packages it lacks into the npm-like cache, then "installs" them. */
const fetchPackages = (id: string, packages: number, extra = "") =>
  `RUN --mount=type=cache,id=${id},target=/root/.cache/x,sharing=locked sh -c 'for i in $(seq 1 ${packages}); do [ -f /root/.cache/x/p$i.tgz ] || wget -q -O /root/.cache/x/p$i.tgz http://127.0.0.1:${registry.port}/p$i.tgz; done; ls /root/.cache/x > /installed${extra}'`;

/** Builds `dockerfile` on `cache`; the image's files land in `out`. */
async function build(cache: string, dockerfile: string, args: string[], remote: string, token = TOKEN, env: Record<string, string> = {}) {
  const project = writeProject(join(work, `project-${++count}`), { Dockerfile: `FROM memobuild/busybox\n${dockerfile}\n` });
  const out = join(work, `out-${count}`);
  const child = Bun.spawn(
    [memobuildBinary(), "build", project, "--cache-dir", cache, "--network", "host", "--allow", "network.host", "--remote", remote, "--remote-token", token, "--progress", "plain", "-o", `type=local,dest=${out}`, ...args],
    { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } },
  );
  const [stderr, exitCode] = await Promise.all([new Response(child.stderr).text(), child.exited]);
  const file = (name: string) => (existsSync(join(out, name)) ? readFileSync(join(out, name), "utf8") : undefined);
  return { exitCode, stderr, file, warnings: stderr.split("\n").filter((line) => line.includes("warning")) };
}

/** The scopes the server holds, as GET /v1/mounts lists them. */
async function scopes(server: CacheServer): Promise<{ scope: string; label: { id: string }; versions: number; current: { id: string; parent: string | null; signer: string | null; files: number; changed: number } }[]> {
  const response = await fetch(`${server.url}/v1/mounts`, { headers: { authorization: `Bearer ${TOKEN}` } });
  return ((await response.json()) as { scopes: never[] }).scopes;
}

const blobPuts = (server: CacheServer) => server.log().split("\n").filter((line) => line.includes("method=PUT path=/v1/blobs/")).length;

describe("a cache mount follows the team through the remote cache", () => {
  test("machine B's different Dockerfile finds A's downloads; B's publish uploads only what changed", async () => {
    const server = await startServer();
    try {
      const machineA = machine("a");
      const a = await build(machineA, fetchPackages("npm", 30), ["--remote-cache-mounts", "on"], server.url);
      expect(a.exitCode).toBe(0);
      expect(a.warnings).toEqual([]);
      expect(served).toBeGreaterThanOrEqual(30);
      const [published] = await scopes(server);
      expect(published.label.id).toBe("npm");
      expect(published.current.files).toBe(30);
      expect(published.current.parent).toBeNull();
      // Locally, the mount is listed by id with the version it holds.
      const local = runMemobuild(["cache", "mounts", "ls", "--cache-dir", machineA]);
      expect(local.stdout).toMatch(new RegExp(`^npm\\s+[0-9a-f]{32}\\s+\\S+ \\S+\\s+${published.current.id.slice(0, 12)}\\s+-$`, "m"));
      const putsAfterA = blobPuts(server);
      expect(putsAfterA).toBe(1 + 30); // the RUN's layer, and each package once

      // B: no local cache, another Dockerfile (35 packages), the same mount id; it publishes too.
      const before = served;
      const b = await build(machine("b"), fetchPackages("npm", 35, "-b"), ["--remote-cache-mounts", "on"], server.url);
      expect(b.exitCode).toBe(0);
      expect(b.warnings).toEqual([]);
      expect(served - before).toBe(5); // only what A did not have
      expect(b.file("installed-b")!.trim().split("\n")).toHaveLength(35);
      expect(blobPuts(server) - putsAfterA).toBe(1 + 5); // B's layer, and the 5 new files only
      const [second] = await scopes(server);
      expect(second.versions).toBe(2);
      expect(second.current.parent).toBe(published.current.id);
      expect(second.current.changed).toBe(5);

      // The listing names ids, versions, sizes and the publisher.
      const listed = runMemobuild(["cache", "mounts", "ls", "--remote"], { env: { MEMOBUILD_REMOTE_URL: server.url, MEMOBUILD_TOKEN: READER } });
      expect(listed.exitCode).toBe(0);
      expect(listed.stdout).toMatch(/^npm\s+-\s+2\s+35\s+/m);
      expect(listed.stdout).toContain(second.current.id.slice(0, 12));
    } finally {
      await server.stop();
    }
  }, 120_000);

  test("a failed build publishes nothing; the default (read) and a read-only token fetch but never publish", async () => {
    const server = await startServer();
    try {
      const failed = await build(machine("fail"), `${fetchPackages("apt", 3)}\nRUN exit 3`, ["--remote-cache-mounts", "on"], server.url);
      expect(failed.exitCode).not.toBe(0);
      expect(await scopes(server)).toEqual([]);
      const reader = await build(machine("reader"), fetchPackages("apt", 3), [], server.url);
      expect(reader.exitCode).toBe(0);
      expect(reader.warnings).toEqual([]);
      expect(await scopes(server)).toEqual([]);
      // Asked to publish with a read-only token: refused by the server, one warning, the build stands.
      const readOnly = await build(machine("read-only"), fetchPackages("apt", 3, "-ro"), ["--remote-cache-mounts", "on", "--remote-upload", "off"], server.url, READER);
      expect(readOnly.exitCode).toBe(0);
      expect(readOnly.warnings).toHaveLength(1);
      expect(readOnly.warnings[0]).toContain("cache mount apt: not published");
      expect(await scopes(server)).toEqual([]);
    } finally {
      await server.stop();
    }
  }, 120_000);

  test("a project file may not turn publishing on (a pull request could), nor is a server only it names published to", async () => {
    const project = writeProject(join(work, `project-file-${++count}`), { Dockerfile: "FROM memobuild/busybox\n", "memobuild.json": '{ "remote": { "cacheMounts": "on" } }' });
    const refused = runMemobuild(["build", "--cache-dir", join(work, "unused")], { cwd: project });
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain(`${join(project, "memobuild.json")}: remote.cacheMounts: a project file may say read or off, not on`);
    writeProject(project, { "memobuild.json": '{ "remote": { "cacheMounts": "off" } }' });
    expect(runMemobuild(["build", "--cache-dir", machine("project-file")], { cwd: project }).exitCode).toBe(0);
    // A server without tokens, so that a build without one may read (and could write) there.
    const server = await startCacheServer(join(work, `data-${++count}`), [], { MEMOBUILD_LOG: "debug" });
    try {
      writeProject(project, { Dockerfile: `FROM memobuild/busybox\n${fetchPackages("gems", 2)}\n`, "memobuild.json": JSON.stringify({ remote: { url: server.url } }) });
      const child = Bun.spawn([memobuildBinary(), "build", "--cache-dir", machine("project-url"), "--network", "host", "--allow", "network.host", "--remote-cache-mounts", "on"], { cwd: project, stdout: "pipe", stderr: "pipe", env: { ...process.env, MEMOBUILD_TOKEN: TOKEN } });
      const [projectErr, projectCode] = await Promise.all([new Response(child.stderr).text(), child.exited]);
      expect(projectErr).toContain("warning: not sending the token");
      expect(projectCode).toBe(0);
      expect(await scopes(server)).toEqual([]);
    } finally {
      await server.stop();
    }
  }, 60_000);

  test("a version by an untrusted key is ignored by a client with a trust list, and by one that signs", async () => {
    const server = await startServer();
    const key = (name: string) => {
      const out = join(work, `${name}-${++count}.key`);
      const made = runMemobuild(["key", "generate", "--out", out]);
      return { file: out, public: made.stdout.trim() };
    };
    const [team, intruder] = [key("team"), key("intruder")];
    try {
      const planted = await build(machine("intruder"), fetchPackages("pip", 4), ["--remote-cache-mounts", "on", "--remote-sign-key", intruder.file], server.url);
      expect(planted.exitCode).toBe(0);
      expect((await scopes(server))[0].current.signer).toBe(intruder.public);
      const before = served;
      const careful = await build(machine("careful"), fetchPackages("pip", 4), ["--remote-trust", team.public], server.url);
      expect(careful.exitCode).toBe(0);
      expect(served - before).toBe(4); // nothing taken from the intruder's version
      const trustingMachine = machine("trusting");
      const trusting = await build(trustingMachine, fetchPackages("pip", 4, "-t"), ["--remote-trust", intruder.public], server.url);
      expect(trusting.exitCode).toBe(0);
      expect(served - before).toBe(4); // with the key on its list, the files come from the remote
      // The same machine, now trusting only the team: the files it got from the intruder are gone before the RUN.
      const changedMind = await build(trustingMachine, fetchPackages("pip", 4, "-t2"), ["--remote-trust", team.public], server.url);
      expect(changedMind.exitCode).toBe(0);
      expect(served - before).toBe(8);
      // CI signs and lists no keys: it trusts its own key only, so it builds on nothing the intruder planted.
      const ci = await build(machine("ci"), fetchPackages("pip", 4, "-ci"), ["--remote-cache-mounts", "on", "--remote-sign-key", team.file], server.url);
      expect(ci.exitCode).toBe(0);
      expect(served - before).toBe(12);
      const [scope] = await scopes(server);
      expect([scope.versions, scope.current.signer, scope.current.parent]).toEqual([2, team.public, null]);
    } finally {
      await server.stop();
    }
  }, 120_000);

  test("a remote that dies during the fetch costs one warning; the build succeeds on the local copy", async () => {
    const server = await startServer();
    try {
      const a = await build(machine("a2"), fetchPackages("cargo", 20), ["--remote-cache-mounts", "on"], server.url);
      expect(a.exitCode).toBe(0);
      // A proxy that dies at the first file it is asked for.
      let dead = false;
      const proxy = Bun.serve({
        hostname: "127.0.0.1",
        port: 0,
        fetch: async (request) => {
          const url = new URL(request.url);
          if (url.pathname.startsWith("/v1/blobs/") && request.method === "GET" && !dead) {
            dead = true;
            setTimeout(() => proxy.stop(true), 0);
            return new Response(null, { status: 500 });
          }
          return fetch(`${server.url}${url.pathname}`, { method: request.method, headers: request.headers, body: request.body });
        },
      });
      const before = served;
      const b = await build(machine("b2"), fetchPackages("cargo", 20), [], `http://127.0.0.1:${proxy.port}`);
      expect(b.exitCode).toBe(0);
      expect(dead).toBe(true);
      expect(b.warnings).toHaveLength(1);
      expect(served - before).toBe(20); // the RUN ran on the (empty) local copy
    } finally {
      await server.stop();
    }
  }, 120_000);

  test("a remote that stalls during the fetch is given up after MEMOBUILD_CACHE_MOUNT_TIMEOUT: one warning, the local copy", async () => {
    const server = await startServer();
    try {
      expect((await build(machine("a3"), fetchPackages("go", 5), ["--remote-cache-mounts", "on"], server.url)).exitCode).toBe(0);
      // A proxy whose file downloads never answer.
      const proxy = Bun.serve({
        hostname: "127.0.0.1",
        port: 0,
        idleTimeout: 0,
        fetch: async (request) => {
          const url = new URL(request.url);
          if (url.pathname.startsWith("/v1/blobs/") && request.method === "GET") return new Promise<Response>(() => {});
          return fetch(`${server.url}${url.pathname}`, { method: request.method, headers: request.headers, body: request.body });
        },
      });
      try {
        const before = served;
        const b = await build(machine("b3"), fetchPackages("go", 5, "-b"), [], `http://127.0.0.1:${proxy.port}`, TOKEN, { MEMOBUILD_CACHE_MOUNT_TIMEOUT: "1" });
        expect(b.exitCode).toBe(0);
        expect(b.warnings).toEqual(["warning: cache mount go: could not fetch it from the remote cache (slower than 1 s); using the local copy"]);
        expect(served - before).toBe(5);
      } finally {
        proxy.stop(true);
      }
    } finally {
      await server.stop();
    }
  }, 60_000);

  test("the same files under two ids are stored once; another --cache-mount-scope starts apart", async () => {
    const server = await startServer();
    try {
      const twice = `${fetchPackages("one", 10)}\n${fetchPackages("two", 10, "-2")}`;
      const result = await build(machine("twice"), twice, ["--remote-cache-mounts", "on"], server.url);
      expect(result.exitCode).toBe(0);
      const listed = await scopes(server);
      expect(listed.map((s) => s.label.id).sort()).toEqual(["one", "two"]);
      expect(listed.map((s) => s.current.files)).toEqual([10, 10]);
      expect(blobPuts(server)).toBe(2 + 10); // two layers; each package's content once
      // Under another --cache-mount-scope (a branch), the same id starts apart.
      const before = served;
      const branch = await build(machine("branch"), fetchPackages("one", 10, "-branch"), ["--cache-mount-scope", "feature/x"], server.url);
      expect(branch.exitCode).toBe(0);
      expect(served - before).toBe(10);
      const main = await build(machine("main"), fetchPackages("one", 10, "-main"), [], server.url);
      expect(main.exitCode).toBe(0);
      expect(served - before).toBe(10);
    } finally {
      await server.stop();
    }
  }, 120_000);
});

test("cache mounts ls --remote refuses a server's list whose figures are not numbers, naming the field: no escape sequence reaches the terminal", async () => {
  const current = { id: "a".repeat(64), parent: null, signer: null, author: "0123456789ab", created: 1, published: 1, files: 1, size: 1, changed: 1 };
  const listing = (override: Record<string, unknown>) => ({ scope: "b".repeat(64), label: { id: "npm", scope: null }, versions: 1, stored: 1, changes: [1], fetched: {}, ...override, current: { ...current, ...(override.current as object) } });
  let scopes: unknown[] = [];
  const hostile = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => Response.json({ scopes }) });
  try {
    const list = () => runMemobuildAsync(["cache", "mounts", "ls", "--remote"], { MEMOBUILD_REMOTE_URL: `http://127.0.0.1:${hostile.port}`, MEMOBUILD_TOKEN: READER });
    scopes = [listing({})];
    expect((await list()).exitCode).toBe(0);
    for (const [override, field] of [
      [{ versions: "\x1b]0;owned\x07" }, "scopes[0].versions"],
      [{ current: { files: "\x1b[2J" } }, "scopes[0].current.files"],
      [{ current: { published: "never" } }, "scopes[0].current.published"],
    ] as const) {
      scopes = [listing(override)];
      const result = await list();
      expect({ exitCode: result.exitCode, stdout: result.stdout.includes("\x1b"), stderr: result.stderr.trim() }).toEqual({
        exitCode: 1,
        stdout: false,
        stderr: `memobuild: the remote cache at http://127.0.0.1:${hostile.port} sent a list of cache mounts that is not valid: ${field} is not a whole number`,
      });
    }
  } finally {
    hostile.stop(true);
  }
});

test("cache mounts ls --remote keeps its columns in line when a scope name is long (a job-private/… scope)", async () => {
  const current = { id: "a".repeat(64), parent: null, signer: null, author: "0123456789ab", created: 1, published: 1, files: 3, size: 1, changed: 1 };
  const scope = (label: { id: string; scope: string | null }) => ({ scope: "b".repeat(64), label, versions: 1, stored: 1, changes: [1], fetched: {}, current });
  const scopes = [scope({ id: "npm", scope: null }), scope({ id: "npm", scope: `job-private/${"c".repeat(64)}` })];
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => Response.json({ scopes }) });
  try {
    const result = await runMemobuildAsync(["cache", "mounts", "ls", "--remote"], { MEMOBUILD_REMOTE_URL: `http://127.0.0.1:${server.port}`, MEMOBUILD_TOKEN: READER });
    expect(result.exitCode).toBe(0);
    const [header, ...rows] = result.stdout.trimEnd().split("\n");
    // Each row's CURRENT (the version id) and WHEN start under their headers.
    for (const row of rows) {
      expect(row.indexOf("aaaaaaaaaaaa")).toBe(header.indexOf("CURRENT"));
      expect(row.indexOf("1970-")).toBe(header.indexOf("WHEN"));
    }
  } finally {
    server.stop(true);
  }
});
