/**
 * A deliberately hostile registry on loopback (issue 12): every lie or stall is refused with a
 * clear message within its timeout, and the cache is intact afterwards.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { memobuildBinary, runMemobuildAsync } from "./support/binary.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-hostile-"));
const cache = join(work, "cache");
afterAll(() => rmSync(work, { recursive: true, force: true }));

const sha256 = (bytes: Uint8Array | string) => `sha256:${new Bun.CryptoHasher("sha256").update(bytes).digest("hex")}`;
const MANIFEST = "application/vnd.oci.image.manifest.v1+json";

/** What ADD URLs get, by name under /add/. */
const addUrls = new Map<string, () => Response | Promise<Response>>();
let flakyRequests = 0;

/** What the registry serves: manifests by repository, blobs by digest (a body or a Response). */
const manifests = new Map<string, string>();
const blobs = new Map<string, () => Response>();
let server: ReturnType<typeof Bun.serve>;

/** An image whose config is honest and whose one layer is served by `layer`. */
function image(repository: string, declaredLayerSize: number, layer: () => Response, configText?: string) {
  const config = configText ?? JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [sha256("layer")] } });
  blobs.set(sha256(config), () => new Response(config));
  const layerDigest = sha256(`layer of ${repository}`);
  blobs.set(layerDigest, layer);
  manifests.set(repository, JSON.stringify({ schemaVersion: 2, mediaType: MANIFEST, config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: sha256(config), size: config.length }, layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", digest: layerDigest, size: declaredLayerSize }] }));
}

/** A body that sends `bytes` bytes, or without end. */
function flood(bytes = Infinity): Response {
  let sent = 0;
  return new Response(new ReadableStream({ pull(controller) {
    if (sent >= bytes) return controller.close();
    controller.enqueue(new Uint8Array(64 * 1024));
    sent += 64 * 1024;
  } }));
}

beforeAll(() => {
  memobuildBinary();
  server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    idleTimeout: 0,
    fetch(request) {
      const path = new URL(request.url).pathname;
      const manifest = /^\/v2\/(.+)\/manifests\/[^/]+$/.exec(path);
      if (manifest) {
        const body = manifests.get(manifest[1]);
        return body === undefined ? new Response("", { status: 404 }) : new Response(body, { headers: { "content-type": MANIFEST } });
      }
      if (path.startsWith("/add/")) return addUrls.get(path.slice("/add/".length))?.() ?? new Response("", { status: 404 });
      const blob = /^\/v2\/.+\/blobs\/(sha256:[0-9a-f]+)$/.exec(path);
      const serve = blob && blobs.get(blob[1]);
      return serve ? serve() : new Response("", { status: path === "/v2/" ? 200 : 404 });
    },
  });
  addUrls.set("endless", () => flood());
  addUrls.set("stall", () => new Response(new ReadableStream({ async pull(controller) {
    controller.enqueue(new Uint8Array(1));
    await Bun.sleep(60_000);
  } })));
  addUrls.set("trickle", () => new Response(new ReadableStream({ async pull(controller) {
    await Bun.sleep(100);
    controller.enqueue(new Uint8Array(1));
  } })));
  // Accepts the request and never starts an answer: only a deadline on the headers ends it.
  addUrls.set("silent", () => Bun.sleep(60_000).then(() => new Response("too late")));
  addUrls.set("flaky", () => (++flakyRequests === 1 ? new Response("busy", { status: 503 }) : new Response("finally\n")));
  image("oversized", 100, () => flood(10 * 1024 * 1024));
  image("endless-and-huge", 1024 * 1024 * 1024 * 1024, () => flood());
  image("slow", 100, () => new Response(new ReadableStream({ async pull(controller) {
    controller.enqueue(new Uint8Array(1));
    await Bun.sleep(60_000);
  } })));
  image("short", 100, () => new Response(new Uint8Array(50)));
  manifests.set("huge-manifest", JSON.stringify({ schemaVersion: 2, padding: "x".repeat(5 * 1024 * 1024) }));
  image("config-not-json", 10, () => new Response(""), "{ not json");
  image("bad-diff-id", 10, () => new Response(""), JSON.stringify({ rootfs: { type: "layers", diff_ids: ["sha256:../.."] } }));
  image("diff-id-count", 10, () => new Response(""), JSON.stringify({ rootfs: { type: "layers", diff_ids: [] } }));
  manifests.set("bad-digest", JSON.stringify({ schemaVersion: 2, config: { digest: "md5:abc", size: 2 }, layers: [] }));
  manifests.set("many-layers", JSON.stringify({ schemaVersion: 2, config: { digest: sha256("c"), size: 1 }, layers: Array.from({ length: 10_000 }, (_, i) => ({ digest: sha256(String(i)), size: 1 })) }));
});
afterAll(() => server?.stop(true));

/** A peer that promises 1,000,000 bytes, sends 1,000 and hangs up (a truncated download). */
const hangUp = Bun.listen({
  hostname: "127.0.0.1",
  port: 0,
  socket: {
    data(socket) {
      socket.write("HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n" + "x".repeat(1000));
      setTimeout(() => socket.terminate(), 50);
    },
  },
});
afterAll(() => hangUp.stop(true));

async function pull(repository: string) {
  const started = performance.now();
  const child = Bun.spawn([memobuildBinary(), "image", "pull", `127.0.0.1:${server.port}/${repository}:1`, "--cache-dir", cache], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, MEMOBUILD_NETWORK_TIMEOUT: "2" },
  });
  const [stderr, exitCode] = await Promise.all([new Response(child.stderr).text(), child.exited]);
  return { stderr: stderr.split("\n").filter((l) => l.startsWith("memobuild:")).join("\n"), exitCode, seconds: (performance.now() - started) / 1000 };
}

describe("a hostile registry", () => {
  const host = () => `127.0.0.1:${server.port}`;
  const cases: [string, (h: string) => string][] = [
    ["oversized", (h) => `blob ${sha256("layer of oversized")} from ${h}/oversized: the registry sent more than the 100 bytes the manifest declares`],
    ["endless-and-huge", (h) => `blob ${sha256("layer of endless-and-huge")} from ${h}/endless-and-huge: the manifest declares 1099511627776 bytes, over the limit (the limit is MEMOBUILD_MAX_BLOB_SIZE=68719476736)`],
    ["slow", (h) => `blob ${sha256("layer of slow")} from ${h}/slow: only 1 bytes received in 2 s, too slow (MEMOBUILD_NETWORK_TIMEOUT)`],
    ["short", (h) => `blob ${sha256("layer of short")} from ${h}/short: the registry sent 50 bytes, the manifest declares 100; nothing was kept`],
    ["huge-manifest", (h) => `the manifest of ${h}/huge-manifest:1: it is larger than 4194304 bytes (the limit is MEMOBUILD_MAX_MANIFEST_SIZE=4194304)`],
    ["config-not-json", (h) => `${h}/config-not-json:1: config sha256:`],
    ["bad-diff-id", () => 'diff ID "sha256:../.." is not a sha256 digest'],
    ["diff-id-count", (h) => `${h}/diff-id-count:1: config ${sha256(JSON.stringify({ rootfs: { type: "layers", diff_ids: [] } }))} lists 0 layers, the manifest 1`],
    ["bad-digest", (h) => `${h}/bad-digest:1: config has digest "md5:abc", not a sha256 digest`],
    ["many-layers", (h) => `${h}/many-layers:1: 10000 layers is over the limit (the limit is MEMOBUILD_MAX_LAYERS=500)`],
  ];
  for (const [repository, message] of cases) {
    test(`${repository}: refused with a clear message, in time`, async () => {
      const result = await pull(repository);
      expect(result.stderr).toContain(message(host()));
      expect(result.stderr).not.toContain("internal error");
      expect(result.exitCode).toBe(1);
      expect(result.seconds).toBeLessThan(20);
    }, 30_000);
  }

  test("the cache is intact afterwards: every blob verifies, nothing is left in tmp/, gc and prune work", () => {
    if (existsSync(join(cache, "blobs/sha256"))) {
      for (const name of readdirSync(join(cache, "blobs/sha256"))) expect(sha256(readFileSync(join(cache, "blobs/sha256", name)))).toBe(`sha256:${name}`);
    }
    expect(readdirSync(join(cache, "tmp"))).toEqual([]);
    for (const args of [["cache", "gc", "--max-size", "0"], ["cache", "prune"]]) {
      const result = Bun.spawnSync([memobuildBinary(), ...args, "--cache-dir", cache], { stderr: "pipe" });
      expect(result.stderr.toString()).toBe("");
      expect(result.exitCode).toBe(0);
    }
  });
});

describe("a hostile ADD URL", () => {
  const work2 = join(work, "add");
  async function build(name: string) {
    const dir = join(work2, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "Dockerfile"), `FROM scratch\nADD ${address(name)} /got\n`);
    const started = performance.now();
    const result = await runMemobuildAsync(["build", dir, "--cache-dir", cache, "--progress", "plain"], { MEMOBUILD_NETWORK_TIMEOUT: "2", MEMOBUILD_MAX_DOWNLOAD_SIZE: "1M" });
    return { ...result, seconds: (performance.now() - started) / 1000 };
  }
  const address = (name: string) => (name === "reset" ? `http://127.0.0.1:${hangUp.port}/reset` : `http://127.0.0.1:${server.port}/add/${name}`);
  const url = (name: string) => `ADD ${address(name)}`;
  const cases: [string, (name: string) => RegExp | string][] = [
    ["endless", (n) => `${url(n)}: larger than 1048576 bytes (the limit is MEMOBUILD_MAX_DOWNLOAD_SIZE=1048576)`],
    ["stall", (n) => `${url(n)}: only 1 bytes received in 2 s, too slow (MEMOBUILD_NETWORK_TIMEOUT)`],
    ["trickle", (n) => new RegExp(`${url(n).replace(/[.]/g, "\\.")}: only \\d+ bytes received in 2 s, too slow \\(MEMOBUILD_NETWORK_TIMEOUT\\)`)],
    ["reset", (n) => `${url(n)}: the connection failed`],
    ["silent", (n) => `${url(n)}: no answer within 2 s (MEMOBUILD_NETWORK_TIMEOUT)`],
  ];
  for (const [name, message] of cases) {
    test(`${name}: refused with a clear message, in time, nothing left behind`, async () => {
      const result = await build(name);
      const expected = message(name);
      if (typeof expected === "string") expect(result.stderr).toContain(expected);
      else expect(result.stderr).toMatch(expected);
      expect(result.stderr).not.toContain("internal error");
      expect(result.exitCode).toBe(1);
      expect(result.seconds).toBeLessThan(25);
      expect(readdirSync(join(cache, "tmp"))).toEqual([]);
    }, 40_000);
  }

  test("a transient failure (503) is tried again and the build succeeds", async () => {
    const result = await build("flaky");
    expect(result.exitCode).toBe(0);
    expect(flakyRequests).toBe(2);
  }, 40_000);
});
