import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { BodyTooLargeError, fetchWithTimeout, MIN_BYTES_PER_WINDOW, NetworkError, readBody, readBodyBytes } from "./network.ts";

/** Short windows keep these tests quick; what is checked is the outcome, never a duration. */
const TIMEOUT = "0.3";
let saved: string | undefined;
beforeAll(() => {
  saved = process.env.MEMOBUILD_NETWORK_TIMEOUT;
  process.env.MEMOBUILD_NETWORK_TIMEOUT = TIMEOUT;
});
afterAll(() => {
  if (saved === undefined) delete process.env.MEMOBUILD_NETWORK_TIMEOUT;
  else process.env.MEMOBUILD_NETWORK_TIMEOUT = saved;
});

/** A body that sends `chunk` bytes every `everyMs` until `total` (or without end). */
function drip(chunk: number, everyMs: number, total = Infinity): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    async pull(controller) {
      if (sent >= total) return controller.close();
      await Bun.sleep(everyMs);
      const size = Math.min(chunk, total - sent);
      controller.enqueue(new Uint8Array(size).fill(0x61));
      sent += size;
    },
  });
}

const routes: Record<string, (request: Request) => Response | Promise<Response>> = {
  "/ok": () => new Response("hello"),
  "/silent": () => Bun.sleep(5_000).then(() => new Response("late")),
  // Answers only after reading the upload, later than the timeout: uploads get no deadline.
  "/slow-upload": async (request) => {
    const body = await request.text();
    await Bun.sleep(3 * Number(TIMEOUT) * 1000);
    return new Response(`got ${body}`);
  },
  "/declared-large": () => new Response("x".repeat(100), { headers: { "content-length": "100" } }),
  "/chunked-100": () => new Response(drip(25, 1, 100)),
  // One byte, then nothing.
  "/stall": () => new Response(new ReadableStream({ async pull(controller) {
    controller.enqueue(new Uint8Array(1));
    await Bun.sleep(60_000);
  } })),
  "/trickle": () => new Response(drip(1, 20)),
  "/minimum-then-stall": () => new Response(new ReadableStream({ async pull(controller) {
    controller.enqueue(new Uint8Array(MIN_BYTES_PER_WINDOW));
    await Bun.sleep(60_000);
  } })),
  "/steady": () => new Response(drip(64 * 1024, 30, 2 * 1024 * 1024)),
};
let server: ReturnType<typeof Bun.serve>;
beforeAll(() => {
  server = Bun.serve({ port: 0, hostname: "127.0.0.1", idleTimeout: 0, fetch: (request) => routes[new URL(request.url).pathname]?.(request) ?? new Response("", { status: 404 }) });
});
afterAll(() => server.stop(true));
const url = (path: string) => `http://127.0.0.1:${server.port}${path}`;

const tooLarge = (max: number) => `over ${max} bytes`;
async function collect(path: string, max: number): Promise<{ bytes: number; error?: Error }> {
  const response = await fetchWithTimeout(url(path), {}, `GET ${path}`);
  let bytes = 0;
  try {
    for await (const chunk of readBody(response, max, `GET ${path}`, tooLarge)) bytes += chunk.length;
    return { bytes };
  } catch (error) {
    return { bytes, error: error as Error };
  }
}

describe("fetchWithTimeout: a deadline for the answer's headers", () => {
  test("an answer in time is returned as it is", async () => {
    const response = await fetchWithTimeout(url("/ok"), {}, "GET /ok");
    expect(response.status).toBe(200);
    expect(await response.text()).toBe("hello");
  });

  test("a server that never starts its answer is given up, naming the request and the variable", async () => {
    const error = await fetchWithTimeout(url("/silent"), {}, "ADD x").catch((e) => e);
    expect(error).toBeInstanceOf(NetworkError);
    expect(error.message).toBe(`ADD x: no answer within ${TIMEOUT} s (MEMOBUILD_NETWORK_TIMEOUT)`);
  });

  test("a null body is no body: the deadline holds", async () => {
    const error = await fetchWithTimeout(url("/silent"), { body: null }, "GET").catch((e) => e);
    expect(error).toBeInstanceOf(NetworkError);
  });

  test("a request that uploads a body waits for its answer however long the upload takes", async () => {
    const response = await fetchWithTimeout(url("/slow-upload"), { method: "POST", body: "data" }, "PUT");
    expect(await response.text()).toBe("got data");
  });

  test("a failure that is not the deadline is passed on as it is", async () => {
    const closed = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("") });
    const port = closed.port;
    closed.stop(true);
    const error = await fetchWithTimeout(`http://127.0.0.1:${port}/`, {}, "GET").catch((e) => e);
    expect(error).toBeInstanceOf(Error);
    expect(error).not.toBeInstanceOf(NetworkError);
  });
});

describe("readBody: a byte limit and a minimum rate", () => {
  test("a declared length over the limit is refused before any byte is read", async () => {
    const response = await fetchWithTimeout(url("/declared-large"), {}, "GET");
    const reading = readBody(response, 99, "GET big", tooLarge);
    const error = await reading.next().catch((e) => e);
    expect(error).toBeInstanceOf(BodyTooLargeError);
    expect(error.message).toBe("GET big: over 99 bytes");
  });

  test("a declared length over the limit is refused without waiting for the body (or having one)", async () => {
    const promiseOnly = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: { data(socket) { socket.write("HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n"); } },
    });
    try {
      const response = await fetchWithTimeout(`http://127.0.0.1:${promiseOnly.port}/`, {}, "GET");
      const error = await readBodyBytes(response, 99, "GET promised", tooLarge).catch((e) => e);
      expect(error).toBeInstanceOf(BodyTooLargeError);
      expect(error.message).toBe("GET promised: over 99 bytes");
    } finally {
      promiseOnly.stop(true);
    }
    const bodiless = new Response(null, { headers: { "content-length": "1000" } });
    expect(await readBodyBytes(bodiless, 99, "GET none", tooLarge).catch((e) => e)).toBeInstanceOf(BodyTooLargeError);
  });

  test("exactly the limit, declared or streamed, is read whole", async () => {
    expect(await collect("/declared-large", 100)).toEqual({ bytes: 100 });
    expect(await collect("/chunked-100", 100)).toEqual({ bytes: 100 });
  });

  test("a streamed body that passes the limit is cut off there", async () => {
    const { bytes, error } = await collect("/chunked-100", 60);
    expect(error).toBeInstanceOf(BodyTooLargeError);
    expect(error!.message).toBe("GET /chunked-100: over 60 bytes");
    expect(bytes).toBeLessThanOrEqual(60);
  });

  test("a body that stops is given up after one window", async () => {
    const { bytes, error } = await collect("/stall", 1 << 30);
    expect(error).toBeInstanceOf(NetworkError);
    expect(error).not.toBeInstanceOf(BodyTooLargeError);
    expect(error!.message).toBe(`GET /stall: only 1 bytes received in ${TIMEOUT} s, too slow (MEMOBUILD_NETWORK_TIMEOUT)`);
    expect(bytes).toBe(1);
  });

  test("a body that trickles under the minimum rate is given up like one that stops", async () => {
    const { error } = await collect("/trickle", 1 << 30);
    expect(error!.message).toMatch(new RegExp(`^GET /trickle: only \\d+ bytes received in ${TIMEOUT} s, too slow`));
    const received = Number(/only (\d+) bytes/.exec(error!.message)![1]);
    expect(received).toBeGreaterThan(0);
    expect(received).toBeLessThan(MIN_BYTES_PER_WINDOW);
  });

  test("a window with exactly the minimum is fast enough: the next, empty one is what gives up", async () => {
    const { bytes, error } = await collect("/minimum-then-stall", 1 << 30);
    expect(bytes).toBe(MIN_BYTES_PER_WINDOW);
    expect(error!.message).toBe(`GET /minimum-then-stall: nothing received for ${TIMEOUT} s (MEMOBUILD_NETWORK_TIMEOUT)`);
  });

  test("a body that keeps coming over many windows is read whole", async () => {
    expect(await collect("/steady", 1 << 30)).toEqual({ bytes: 2 * 1024 * 1024 });
  });

  test("a response that sends nothing before its headers end has nothing to stall on", async () => {
    const silentHeaders = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: { data(socket) { socket.write("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"); } },
    });
    try {
      const response = await fetchWithTimeout(`http://127.0.0.1:${silentHeaders.port}/`, {}, "GET");
      const error = await readBodyBytes(response, 1 << 20, "GET quiet", tooLarge).catch((e) => e);
      expect(error).toBeInstanceOf(NetworkError);
      expect(error.message).toBe(`GET quiet: nothing received for ${TIMEOUT} s (MEMOBUILD_NETWORK_TIMEOUT)`);
    } finally {
      silentHeaders.stop(true);
    }
  });

  test("a connection cut mid-body is a NetworkError that says so", async () => {
    const cut = Bun.listen({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        data(socket) {
          socket.write("HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n" + "x".repeat(1000));
          setTimeout(() => socket.terminate(), 20);
        },
      },
    });
    try {
      const response = await fetchWithTimeout(`http://127.0.0.1:${cut.port}/`, {}, "GET");
      const error = await readBodyBytes(response, 1 << 30, "GET cut", tooLarge).catch((e) => e);
      expect(error).toBeInstanceOf(NetworkError);
      expect(error.message).toStartWith("GET cut: the connection failed (");
    } finally {
      cut.stop(true);
    }
  });

  test("a response without a body yields nothing; readBodyBytes joins the chunks", async () => {
    const chunks: Uint8Array[] = [];
    for await (const chunk of readBody(new Response(null), 10, "none", tooLarge)) chunks.push(chunk);
    expect(chunks).toEqual([]);
    const response = await fetchWithTimeout(url("/chunked-100"), {}, "GET");
    expect((await readBodyBytes(response, 100, "GET", tooLarge)).toString()).toBe("a".repeat(100));
  });
});
