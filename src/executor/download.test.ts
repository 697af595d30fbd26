import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { DownloadError, Downloads, isUrl, urlFileName } from "./download.ts";
import type { Resolver } from "../util/loopback-guard.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-download-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const sha = (algorithm: "sha256" | "sha512", text: string) => `${algorithm}:${new Bun.CryptoHasher(algorithm).update(text).digest("hex")}`;
const requests = new Map<string, number>();
let failuresLeft = 0;
const routes: Record<string, () => Response> = {
  "/file.txt": () => new Response("content\n", { headers: { "last-modified": "Wed, 02 Dec 2026 10:00:00 GMT" } }),
  "/undated": () => new Response("undated\n"),
  "/bad-date": () => new Response("x", { headers: { "last-modified": "not a date" } }),
  "/missing": () => new Response("", { status: 404 }),
  "/busy-then-ok": () => (failuresLeft-- > 0 ? new Response("busy", { status: 503 }) : new Response("finally\n")),
  "/error-then-ok": () => (failuresLeft-- > 0 ? new Response("oops", { status: 500 }) : new Response("recovered\n")),
  "/always-busy": () => new Response("slow down", { status: 429 }),
  "/big": () => new Response("x".repeat(1000)),
  "/big-too": () => new Response("x".repeat(1000)),
  "/stall": () => new Response(new ReadableStream({ async pull(controller) {
    controller.enqueue(new Uint8Array(1));
    await Bun.sleep(60_000);
  } })),
};
let server: ReturnType<typeof Bun.serve>;
beforeAll(() => {
  server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    idleTimeout: 0,
    fetch(request) {
      const path = new URL(request.url).pathname;
      requests.set(path, (requests.get(path) ?? 0) + 1);
      return routes[path]?.() ?? new Response("", { status: 404 });
    },
  });
});
afterAll(() => server.stop(true));
const url = (path: string) => `http://127.0.0.1:${server.port}${path}`;

const saved = { ...process.env };
afterEach(() => {
  for (const name of ["MEMOBUILD_MAX_DOWNLOAD_SIZE", "MEMOBUILD_NETWORK_TIMEOUT"]) {
    if (saved[name] === undefined) delete process.env[name];
    else process.env[name] = saved[name];
  }
});

let dirs = 0;
/** A Downloads with a fresh staging directory. */
function downloads() {
  const dir = join(work, `d${++dirs}`);
  mkdirSync(dir);
  return { dir, downloads: new Downloads(() => dir) };
}

describe("Downloads", () => {
  test("a URL is fetched once per build, its content staged with its digest and Last-Modified time", async () => {
    const { dir, downloads: d } = downloads();
    const [first, second] = await Promise.all([d.fetch(url("/file.txt")), d.fetch(url("/file.txt"))]);
    expect(second).toBe(first);
    expect(requests.get("/file.txt")).toBe(1);
    expect(readFileSync(first.file, "utf8")).toBe("content\n");
    expect(first.file.startsWith(dir + "/")).toBe(true);
    expect(first.digest).toBe(sha("sha256", "content\n"));
    expect(first.mtime).toBe(Date.UTC(2026, 11, 2, 10) / 1000);
    expect(first.url).toBe(url("/file.txt"));
  });

  test("without a usable Last-Modified the time is 0", async () => {
    const { downloads: d } = downloads();
    expect((await d.fetch(url("/undated"))).mtime).toBe(0);
    expect((await d.fetch(url("/bad-date"))).mtime).toBe(0);
  });

  test("--checksum is checked in any of sha256, sha384 and sha512; a mismatch names both", async () => {
    const { downloads: d } = downloads();
    expect((await d.fetch(url("/file.txt"), sha("sha256", "content\n"))).digest).toBe(sha("sha256", "content\n"));
    expect((await d.fetch(url("/file.txt"), sha("sha512", "content\n"))).digest).toBe(sha("sha256", "content\n"));
    const wrong = sha("sha256", "other");
    const error = await d.fetch(url("/file.txt"), wrong).catch((e) => e);
    expect(error).toBeInstanceOf(DownloadError);
    expect(error.message).toBe(`checksum mismatch for ${url("/file.txt")}: expected ${wrong}, got ${sha("sha256", "content\n")}`);
  });

  test("a 404 is final: one request, an error naming the URL and the status", async () => {
    const { downloads: d } = downloads();
    const error = await d.fetch(url("/missing")).catch((e) => e);
    expect(error).toBeInstanceOf(DownloadError);
    expect(error.message).toBe(`cannot fetch ${url("/missing")}: HTTP 404 Not Found`);
    expect(requests.get("/missing")).toBe(1);
  });

  test("a server's reason phrase is shown bounded (Bun's fetch already refuses one with escape sequences)", async () => {
    // Bun.serve sends the standard phrase only: this peer writes its own status line.
    const loud = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: { data(socket) { socket.write(`HTTP/1.1 404 Gone${"!".repeat(200)}\r\ncontent-length: 0\r\n\r\n`); } },
    });
    try {
      const { downloads: d } = downloads();
      const address = `http://127.0.0.1:${loud.port}/x`;
      const error = await d.fetch(address).catch((e) => e);
      expect(error).toBeInstanceOf(DownloadError);
      expect(error.message).toBe(`cannot fetch ${address}: HTTP 404 Gone${"!".repeat(96)}…`);
    } finally {
      loud.stop(true);
    }
  });

  test("a 503 is tried again and the download succeeds; a server busy every time fails after three tries", async () => {
    failuresLeft = 2;
    const { downloads: d } = downloads();
    expect(readFileSync((await d.fetch(url("/busy-then-ok"))).file, "utf8")).toBe("finally\n");
    expect(requests.get("/busy-then-ok")).toBe(3);
    const error = await d.fetch(url("/always-busy")).catch((e) => e);
    expect(error.message).toBe(`cannot fetch ${url("/always-busy")}: HTTP 429 Too Many Requests`);
    expect(requests.get("/always-busy")).toBe(3);
  }, 20_000);

  test("a 500 is a server's passing trouble too: tried again", async () => {
    failuresLeft = 1;
    const { downloads: d } = downloads();
    expect(readFileSync((await d.fetch(url("/error-then-ok"))).file, "utf8")).toBe("recovered\n");
    expect(requests.get("/error-then-ok")).toBe(2);
  }, 20_000);

  test("no descriptor of a staged file stays open, after a download or a failed one", async () => {
    const { dir, downloads: d } = downloads();
    await d.fetch(url("/file.txt"));
    process.env.MEMOBUILD_MAX_DOWNLOAD_SIZE = "100";
    await d.fetch(url("/big-too")).catch(() => {});
    const open = readdirSync("/proc/self/fd").flatMap((fd) => {
      try {
        return [readlinkSync(`/proc/self/fd/${fd}`)];
      } catch {
        return []; // closed while listing
      }
    });
    expect(open.filter((target) => target.startsWith(dir + "/"))).toEqual([]);
  });

  test("a download over MEMOBUILD_MAX_DOWNLOAD_SIZE is refused at once, and its partial file removed", async () => {
    process.env.MEMOBUILD_MAX_DOWNLOAD_SIZE = "100";
    const { dir, downloads: d } = downloads();
    const error = await d.fetch(url("/big")).catch((e) => e);
    expect(error.message).toBe(`ADD ${url("/big")}: larger than 100 bytes (the limit is MEMOBUILD_MAX_DOWNLOAD_SIZE=100)`);
    expect(requests.get("/big")).toBe(1);
    expect(readdirSync(dir)).toEqual([]);
  });

  test("a body that stalls is tried again, each try a fresh file, none left behind", async () => {
    process.env.MEMOBUILD_NETWORK_TIMEOUT = "0.3";
    const { dir, downloads: d } = downloads();
    const error = await d.fetch(url("/stall")).catch((e) => e);
    expect(error).toBeInstanceOf(DownloadError);
    expect(error.message).toBe(`ADD ${url("/stall")}: only 1 bytes received in 0.3 s, too slow (MEMOBUILD_NETWORK_TIMEOUT)`);
    expect(requests.get("/stall")).toBe(3);
    expect(readdirSync(dir)).toEqual([]);
  }, 20_000);

  test("a server that refuses the connection is a DownloadError naming the URL", async () => {
    const closed = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("") });
    const port = closed.port;
    closed.stop(true);
    const { downloads: d } = downloads();
    const error = await d.fetch(`http://127.0.0.1:${port}/x`).catch((e) => e);
    expect(error).toBeInstanceOf(DownloadError);
    expect(error.message).toStartWith(`cannot fetch http://127.0.0.1:${port}/x: `);
  }, 20_000);
});

/** An address of this machine off its loopback (what a worker's job may reach), if it has one. */
const outside = Object.values(networkInterfaces()).flat().find((a) => a && !a.internal && a.family === "IPv4")?.address;

describe.skipIf(!outside)("a worker's job: ADD never reaches the worker's loopback", () => {
  // The attack: a job's `ADD http://127.0.0.1:PORT/…` reads a service that listens only on the
  // worker's loopback (which the job's RUN cannot reach), and the layer hands it to the submitter.
  let exposed: ReturnType<typeof Bun.serve>;
  beforeAll(() => {
    exposed = Bun.serve({
      port: 0,
      hostname: outside,
      fetch(request) {
        const path = new URL(request.url).pathname;
        if (path === "/to-loopback") return Response.redirect(url("/file.txt"), 302);
        if (path === "/to-localhost") return Response.redirect(`http://localhost:${server.port}/file.txt`, 301);
        if (path === "/to-outside") return Response.redirect("/public.txt", 307);
        if (path === "/public.txt") return new Response("public\n", { headers: { "last-modified": "Wed, 02 Dec 2026 10:00:00 GMT" } });
        if (path === "/big") return new Response("x".repeat(1000));
        return new Response("", { status: 404 });
      },
    });
  });
  afterAll(() => exposed.stop(true));
  const public_ = (path: string) => `http://${outside}:${exposed.port}${path}`;
  const guarded = (resolver?: Resolver) => {
    const dir = join(work, `d${++dirs}`);
    mkdirSync(dir);
    return new Downloads(() => dir, { refuseLoopback: true, resolver });
  };
  const refusal = async (d: Downloads, address: string) => {
    const error = await d.fetch(address).catch((e) => e);
    expect(error).toBeInstanceOf(DownloadError);
    return error.message as string;
  };

  test("a loopback address in any spelling is refused before any request: 127.0.0.0/8, 0.0.0.0, ::1, ::ffff:127.0.0.1", async () => {
    requests.delete("/file.txt");
    const port = server.port;
    expect(await refusal(guarded(), url("/file.txt"))).toBe(`ADD ${url("/file.txt")}: 127.0.0.1:${port} is on this worker's loopback, which a job reaches only with network.host granted (build --allow network.host, on a worker started with it)`);
    for (const host of ["127.1", "2130706433", "127.9.9.9", "0.0.0.0", "[::1]", "[::ffff:127.0.0.1]", "[::]"]) {
      expect(await refusal(guarded(), `http://${host}:${port}/file.txt`)).toContain("is on this worker's loopback");
    }
    expect(requests.get("/file.txt")).toBeUndefined();
  });

  test("a name that resolves to the loopback is refused: localhost, or any name whose answer holds a loopback address", async () => {
    expect(await refusal(guarded(), `http://localhost:${server.port}/file.txt`)).toBe(`ADD http://localhost:${server.port}/file.txt: localhost:${server.port} (127.0.0.1) is on this worker's loopback, which a job reaches only with network.host granted (build --allow network.host, on a worker started with it)`);
    const mixed: Resolver = async () => [{ address: outside!, family: 4 }, { address: "::1", family: 6 }];
    expect(await refusal(guarded(mixed), `http://mixed.test:${exposed.port}/public.txt`)).toContain("mixed.test:");
    expect(requests.get("/file.txt")).toBeUndefined();
  });

  test("every redirect is checked: one to the loopback is refused, one elsewhere is followed", async () => {
    expect(await refusal(guarded(), public_("/to-loopback"))).toBe(`ADD ${public_("/to-loopback")}: 127.0.0.1:${server.port} is on this worker's loopback, which a job reaches only with network.host granted (build --allow network.host, on a worker started with it)`);
    expect(await refusal(guarded(), public_("/to-localhost"))).toContain(`localhost:${server.port} (127.0.0.1) is on this worker's loopback`);
    expect(requests.get("/file.txt")).toBeUndefined();
    const followed = await guarded().fetch(public_("/to-outside"));
    expect(readFileSync(followed.file, "utf8")).toBe("public\n");
  });

  test("DNS rebinding: the name is resolved once per connection, and the connection goes to the address checked", async () => {
    // The first answer passes the check; a rebinding DNS then answers the loopback to whoever asks next.
    let asked = 0;
    const rebinding: Resolver = async () => (++asked === 1 ? [{ address: outside!, family: 4 }] : [{ address: "127.0.0.1", family: 4 }]);
    const got = await guarded(rebinding).fetch(`http://rebind.test:${exposed.port}/public.txt`);
    expect(readFileSync(got.file, "utf8")).toBe("public\n");
    expect(asked).toBe(1);
    // Answering the loopback first is refused at once.
    asked = 1;
    expect(await refusal(guarded(rebinding), `http://rebind.test:${exposed.port}/public.txt`)).toContain("rebind.test:");
  });

  test("off the loopback, a download is what it is without the guard: content, Last-Modified, a 404, the size limit", async () => {
    const got = await guarded().fetch(public_("/public.txt"));
    expect([readFileSync(got.file, "utf8"), got.digest, got.mtime]).toEqual(["public\n", sha("sha256", "public\n"), Date.UTC(2026, 11, 2, 10) / 1000]);
    expect(await refusal(guarded(), public_("/missing"))).toBe(`cannot fetch ${public_("/missing")}: HTTP 404 Not Found`);
    process.env.MEMOBUILD_MAX_DOWNLOAD_SIZE = "100";
    expect((await guarded().fetch(public_("/big")).catch((e) => e)).message).toBe(`ADD ${public_("/big")}: larger than 100 bytes (the limit is MEMOBUILD_MAX_DOWNLOAD_SIZE=100)`);
  });
});

describe("names", () => {
  test("isUrl: http and https only, any case", () => {
    for (const yes of ["http://x/a", "https://x", "HTTPS://X/"]) expect(isUrl(yes)).toBe(true);
    for (const no of ["ftp://x/a", "file:///etc/passwd", "x/http://y", "httpx://y", " http://x"]) expect(isUrl(no)).toBe(false);
  });

  test("urlFileName: the last path component, decoded; index.html when there is none", () => {
    expect(urlFileName("https://x/a/b.tar.gz?v=1#f")).toBe("b.tar.gz");
    expect(urlFileName("https://x/a/dir/")).toBe("dir");
    expect(urlFileName("https://x/my%20file.txt")).toBe("my file.txt");
    expect(urlFileName("https://x/")).toBe("index.html");
    expect(urlFileName("https://x")).toBe("index.html");
  });
});
