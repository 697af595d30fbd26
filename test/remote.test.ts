/**
 * The remote cache end to end: `memobuild serve` as a real process on loopback, and builds on
 * two "machines" (separate cache directories) sharing it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { blake3Hex } from "../src/hash/blake3.ts";
import { memobuildBinary, REPO_ROOT, runMemobuild } from "./support/binary.ts";
import { startCacheServer, type CacheServer } from "./support/server.ts";
import { buildBaseImage, machineWithBase } from "./support/base-image.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-remote-"));
const TOKEN = "team-token-for-tests";
const baseOci = join(work, "base-oci");
afterAll(() => rmSync(work, { recursive: true, force: true }));

let servers = 0;
const startServer = (args: string[] = [], data = join(work, `data-${++servers}`)): Promise<CacheServer> => startCacheServer(data, args);
const stop = (server: CacheServer, signal: NodeJS.Signals = "SIGTERM") => server.stop(signal);

/** A machine: its own cache directory, with the busybox base image imported. */
const machine = (name: string) => machineWithBase(join(work, `machine-${name}`), baseOci);

/** Runs a build without blocking this process (the server may be a child of it). */
async function build(cache: string, args: string[], env: Record<string, string> = {}) {
  const metadata = join(work, `meta-${Math.random().toString(36).slice(2)}.json`);
  const child = Bun.spawn([memobuildBinary(), "build", join(REPO_ROOT, "examples/hello"), "--cache-dir", cache, "--metadata-file", metadata, ...args], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, ...env },
  });
  const [stderr, exitCode] = await Promise.all([new Response(child.stderr).text(), child.exited]);
  const meta = existsSync(metadata) ? JSON.parse(readFileSync(metadata, "utf8")) : undefined;
  return { stderr, exitCode, meta };
}

beforeAll(() => buildBaseImage(work, baseOci), 120_000);

describe("a server only the project file names", () => {
  test("is looked up but sent nothing: no result, no build report, until the user file names it too", async () => {
    const server = await startServer(); // no tokens: it would take anything sent
    const project = join(work, "project-named");
    const xdg = join(work, "project-named-xdg");
    cpSync(join(REPO_ROOT, "examples/hello"), project, { recursive: true });
    mkdirSync(join(project, ".git"));
    writeFileSync(join(project, "memobuild.json"), JSON.stringify({ remote: { url: server.url } }));
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("MEMOBUILD_")));
    const run = async (cache: string) => {
      const child = Bun.spawn([memobuildBinary(), "build", "--cache-dir", cache, "--progress", "plain"], { cwd: project, stdout: "pipe", stderr: "pipe", env: { ...env, XDG_CONFIG_HOME: xdg } });
      const [stderr, exitCode] = await Promise.all([new Response(child.stderr).text(), child.exited]);
      return { stderr, exitCode };
    };
    const sent = async () => {
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      const builds = ((await (await fetch(`${server.url}/v1/builds`)).json()) as { total: number }).total;
      return { actions: Number(/^memobuild_actions (\d+)/m.exec(metrics)?.[1]), builds };
    };
    try {
      const first = await run(machine("project-named-1"));
      expect(first.exitCode).toBe(0);
      expect(first.stderr).toContain(`${server.url} is named only by ${join(project, "memobuild.json")}: results are looked up there, but no result and no build report is sent to it`);
      expect(await sent()).toEqual({ actions: 0, builds: 0 });
      mkdirSync(join(xdg, "memobuild"), { recursive: true });
      writeFileSync(join(xdg, "memobuild/config.json"), JSON.stringify({ remote: { url: server.url } }));
      const vouched = await run(machine("project-named-2"));
      expect(vouched.exitCode).toBe(0);
      const after = await sent();
      expect(after.actions).toBeGreaterThan(0);
      expect(after.builds).toBe(1);
    } finally {
      await stop(server);
    }
  }, 120_000);
});

describe("two machines sharing a remote cache", () => {
  test("machine B gets every step from the remote: nothing runs, same image", async () => {
    const server = await startServer(["--token", TOKEN]);
    try {
      const a = await build(machine("a"), ["--remote", server.url, "--remote-token", TOKEN]);
      expect(a.exitCode).toBe(0);
      // Machine B configures the remote through the environment.
      const b = await build(machine("b"), [], { MEMOBUILD_REMOTE_URL: server.url, MEMOBUILD_TOKEN: TOKEN });
      expect(b.exitCode).toBe(0);
      // Each result comes from the remote; a step of the same key later in the build (two stages
      // FROM the same image are the same step, whatever they are called) may then hit locally.
      const seen = new Set<string>();
      for (const step of b.meta.steps.filter((s: { status: string }) => s.status !== "skipped") as { key: string; status: string }[]) {
        expect(step.status).toBe(seen.has(step.key) && step.status === "cached-local" ? "cached-local" : "cached-remote");
        seen.add(step.key);
      }
      expect(b.meta["containerimage.digest"]).toBe(a.meta["containerimage.digest"]);
      expect(b.stderr).toContain("(0 step(s) run, 0 cached, 5 from the remote cache: 100% hit rate"); // the 5 steps that do work
      // B can run what it got.
      expect(runMemobuild(["run", "memobuild/busybox", "--cache-dir", join(work, "machine-b"), "--", "true"]).exitCode).toBe(0);
    } finally {
      await stop(server);
    }
  }, 60_000);

  test("a wrong token is an error at the first request", async () => {
    const server = await startServer(["--token", TOKEN]);
    try {
      const result = await build(machine("c"), ["--remote", server.url, "--remote-token", "not-the-token"]);
      expect(result.exitCode).toBe(1);
      expect(result.stderr).toBe(`memobuild: the remote cache at ${server.url} refused the token (HTTP 401)\n`);
    } finally {
      await stop(server);
    }
  });

  test("with the server stopped, a build succeeds with one warning; --remote-required fails", async () => {
    const server = await startServer(["--token", TOKEN]);
    await stop(server);
    const cache = machine("d");
    const result = await build(cache, ["--remote", server.url, "--remote-token", TOKEN]);
    expect(result.exitCode).toBe(0);
    expect(result.stderr.match(/warning: remote cache at .* is not answering/g)).toHaveLength(1);
    const required = await build(cache, ["--remote", server.url, "--remote-token", TOKEN, "--remote-required", "--no-cache"]);
    expect(required.exitCode).toBe(1);
    expect(required.stderr).toContain(`memobuild: the remote cache at ${server.url} is not answering`);
  }, 60_000);
});

describe("the server process", () => {
  test("refuses a non-loopback address without a token", () => {
    const result = runMemobuild(["serve", "--listen", "0.0.0.0:0", "--data", join(work, "refused")]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toBe("memobuild: refusing to listen on 0.0.0.0 without a token: give --token or --token-file (or --insecure-no-auth)\n");
  });

  test("read-only tokens from a token file; a server killed mid-upload leaves no partial blob", async () => {
    const tokenFile = join(work, "tokens");
    writeFileSync(tokenFile, `# team tokens\n${TOKEN} rw\nreader-token-123 ro\n`);
    const data = join(work, "killed-data");
    const server = await startServer(["--token-file", tokenFile], data);
    const body = new Uint8Array(8 * 1024 * 1024).fill(7);
    const hash = blake3Hex(body);
    // Send half of the body, then kill the server outright.
    let push: (chunk: Uint8Array) => void = () => {};
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        push = (chunk) => controller.enqueue(chunk);
      },
    });
    const upload = fetch(`${server.url}/v1/blobs/${hash}`, {
      method: "PUT",
      body: stream,
      headers: { authorization: `Bearer ${TOKEN}` },
      duplex: "half",
    }).catch(() => undefined);
    push(body.subarray(0, body.length / 2));
    await Bun.sleep(300);
    await stop(server, "SIGKILL");
    await upload;
    const restarted = await startServer(["--token-file", tokenFile], data);
    try {
      const head = await fetch(`${restarted.url}/v1/blobs/${hash}`, { method: "HEAD", headers: { authorization: "Bearer reader-token-123" } });
      expect(head.status).toBe(404);
      expect(readdirSync(join(data, "tmp"))).toEqual([]);
      const blobs = existsSync(join(data, "blobs")) ? readdirSync(join(data, "blobs")) : [];
      expect(blobs).toEqual([]);
      const readOnlyPut = await fetch(`${restarted.url}/v1/blobs/${hash}`, { method: "PUT", body, headers: { authorization: "Bearer reader-token-123" } });
      expect(readOnlyPut.status).toBe(403);
      const full = await fetch(`${restarted.url}/v1/blobs/${hash}`, { method: "PUT", body, headers: { authorization: `Bearer ${TOKEN}` } });
      expect(full.status).toBe(201);
    } finally {
      await stop(restarted);
    }
  }, 60_000);

  test("serves HTTPS with --tls-cert and --tls-key", async () => {
    const cert = join(work, "cert.pem");
    const key = join(work, "key.pem");
    const made = Bun.spawnSync(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert], { stderr: "pipe" });
    expect(made.exitCode).toBe(0);
    const server = await startServer(["--tls-cert", cert, "--tls-key", key], join(work, "tls-data"));
    try {
      expect(server.url).toStartWith("https://127.0.0.1:");
      const response = await fetch(`${server.url}/healthz`, { tls: { rejectUnauthorized: false } } as RequestInit);
      expect(await response.json()).toEqual({ status: "ok" });
      await expect(fetch(server.url.replace("https:", "http:") + "/healthz")).rejects.toThrow();
    } finally {
      await stop(server);
    }
  });

  test("SIGTERM stops the server cleanly", async () => {
    const server = await startServer([]);
    server.process.kill("SIGTERM");
    expect(await server.process.exited).toBe(0);
  });
});
