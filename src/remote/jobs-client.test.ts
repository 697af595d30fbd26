import { afterAll, expect, test } from "bun:test";
import { JobsClient } from "./jobs-client.ts";

// A build server that answers with more than any job answer needs, without saying its length.
let sent = 0;
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch(request) {
    const huge = new URL(request.url).pathname === "/v1/jobs";
    const chunk = new Uint8Array(1 << 20).fill(0x20);
    let left = huge ? 64 : 0;
    return new Response(
      new ReadableStream({
        pull(controller) {
          if (left-- <= 0) return controller.close();
          sent += chunk.length;
          controller.enqueue(chunk);
        },
      }),
      { status: 200, headers: { "content-type": "application/json" } },
    );
  },
});
afterAll(() => server.stop(true));

test("an answer over the bound is refused while it is read, not after", async () => {
  const client = new JobsClient({ url: `http://127.0.0.1:${server.port}` });
  await expect(client.submit({}, [])).rejects.toThrow("submitting the build: the answer is larger than 8388608 bytes");
  expect(sent).toBeLessThan(32 << 20); // stopped near the bound, not after all 64 MiB
});

test("a claimed job whose id could be a path (or is no job at all) is refused, naming what is missing", async () => {
  let answer: unknown;
  const hostile = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => Response.json(answer) });
  try {
    const client = new JobsClient({ url: `http://127.0.0.1:${hostile.port}` });
    const job = { id: "0f8fad5b-d9cb-469f-a165-70867728950e", lease: "l", leaseMs: 30_000, definition: {} };
    answer = job;
    expect((await client.claim({ name: "w", labels: {}, holds: "" }))?.id).toBe(job.id);
    for (const bad of [{ ...job, id: "/../../x" }, { ...job, lease: 7 }, { ...job, leaseMs: "1" }, null]) {
      answer = bad;
      await expect(client.claim({ name: "w", labels: {}, holds: "" })).rejects.toThrow("claiming a job: the server's answer is not a job (an id, a lease and its length)");
    }
  } finally {
    hostile.stop(true);
  }
});

test("a job the server forbids is said to be refused, not its token (which the server accepted)", async () => {
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: (request) => new URL(request.url).pathname === "/v1/jobs" ? Response.json({ error: "--ulimit rtprio=99: not for this token" }, { status: 403 }) : Response.json({ error: "no token" }, { status: 401 }),
  });
  try {
    const client = new JobsClient({ url: `http://127.0.0.1:${server.port}`, token: "read-only-token" });
    const url = `http://127.0.0.1:${server.port}`;
    await expect(client.submit({}, [])).rejects.toThrow(`the build server at ${url} refused the build (HTTP 403: --ulimit rtprio=99: not for this token)`);
    await expect(client.follow("0f8fad5b-d9cb-469f-a165-70867728950e", 0)).rejects.toThrow(`the build server at ${url} refused the token (HTTP 401: no token)`);
  } finally {
    server.stop(true);
  }
});

test("an error answer that is not JSON (a proxy's, say) is shown as its text, not dropped", async () => {
  const proxy = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("blocked by the corporate proxy", { status: 502 }) });
  try {
    const client = new JobsClient({ url: `http://127.0.0.1:${proxy.port}` });
    await expect(client.submit({}, [])).rejects.toThrow("submitting the build: HTTP 502 blocked by the corporate proxy");
  } finally {
    proxy.stop(true);
  }
});
