/** Which addresses keep a connection on this machine: every spelling of the loopback, and nothing else. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { networkInterfaces } from "node:os";
import { fetchAvoidingLoopback, FetchRefusedError, isLoopbackAddress, type Resolver } from "./loopback-guard.ts";

test("the loopback in every spelling is the loopback", () => {
  for (const address of ["127.0.0.1", "127.255.255.254", "0.0.0.0", "0.1.2.3", "::1", "[::1]", "::", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1", "::ffff:7f00:1", "::FFFF:7F00:0001", "::127.0.0.1", "::ffff:0.0.0.0", "::1%lo"]) {
    expect([address, isLoopbackAddress(address)]).toEqual([address, true]);
  }
  // IPv4 written inside IPv6 with any digits in any part, groups written out, a zone after it.
  for (const address of ["::ffff:127.10.0.1", "::ffff:127.0.10.1", "::ffff:127.0.0.10", "::ffff:127.1.2.3", "0:0:0::ffff:127.0.0.1", "0:0:0:0:0:ffff:7f00:1", "::ffff:127.0.0.1%eth0"]) {
    expect([address, isLoopbackAddress(address)]).toEqual([address, true]);
  }
});

test("any other address, and anything that is no address, is not", () => {
  for (const address of ["192.0.2.2", "10.0.2.2", "128.0.0.1", "1.127.0.0", "::2", "fe80::1", "::ffff:192.0.2.2", "::ffff:8.8.8.8", "2001:db8::127.0.0.1", "64:ff9b::7f00:1", "localhost", "", "127.0.0.1.example"]) {
    expect([address, isLoopbackAddress(address)]).toEqual([address, false]);
  }
  // Near the mapped form but another address (a download from one is not refused); text that only looks like one.
  for (const address of ["::ff:7f00:1", "::ff00:7f00:1", "1::ffff:7f00:1", ":::1", "::[1]", "0::2", "0:0:0::ffff:8.8.8.8"]) {
    expect([address, isLoopbackAddress(address)]).toEqual([address, false]);
  }
});

/** An address of this machine off its loopback, where a test server may listen, if it has one. */
const outside = Object.values(networkInterfaces()).flat().find((a) => a && !a.internal && a.family === "IPv4")?.address;

describe.skipIf(!outside)("fetchAvoidingLoopback off the loopback", () => {
  let server: ReturnType<typeof Bun.serve>;
  beforeAll(() => {
    server = Bun.serve({
      port: 0,
      hostname: outside,
      fetch(request) {
        const path = new URL(request.url).pathname;
        const chain = /^\/chain\/(\d+)$/.exec(path);
        if (chain) return Number(chain[1]) === 0 ? new Response("end") : Response.redirect(`/chain/${Number(chain[1]) - 1}`, 302);
        if (path === "/to-file") return Response.redirect("file:///etc/passwd", 302);
        if (path === "/to-https") return Response.redirect(`https://${outside}:${server.port}/chain/0`, 302);
        if (path === "/no-location") return new Response("moved, but nowhere", { status: 302 });
        if (path === "/no-content") return new Response(null, { status: 204 });
        if (path === "/not-modified") return new Response(null, { status: 304 });
        return new Response("", { status: 404 });
      },
    });
  });
  afterAll(() => server.stop(true));
  const at = (path: string) => `http://${outside}:${server.port}${path}`;
  const failure = (url: string, resolver?: Resolver) => fetchAvoidingLoopback(url, "ADD", resolver).then(() => undefined, (error: Error) => error);

  test("20 redirects are followed (as fetch follows), the 21st is refused", async () => {
    expect(await (await fetchAvoidingLoopback(at("/chain/20"), "ADD")).text()).toBe("end");
    const error = await failure(at("/chain/21"));
    expect(error).toBeInstanceOf(FetchRefusedError);
    expect(error?.message).toBe("ADD: more than 20 redirects");
  });

  test("a redirect to another scheme is refused; one to https is followed (here a TLS handshake with a plain server, which fails)", async () => {
    const file = await failure(at("/to-file"));
    expect(file).toBeInstanceOf(FetchRefusedError);
    expect(file?.message).toBe("ADD: redirected to file: URL, not http or https");
    const https = await failure(at("/to-https"));
    expect(https).toBeInstanceOf(Error);
    expect(https).not.toBeInstanceOf(FetchRefusedError);
  });

  test("an https URL is fetched over TLS: a plain server at it is not read", async () => {
    expect(await failure(`https://${outside}:${server.port}/chain/0`)).toBeInstanceOf(Error);
  });

  test("answers as they are: a redirect without Location, 204 and 304 without a body", async () => {
    const moved = await fetchAvoidingLoopback(at("/no-location"), "ADD");
    expect([moved.status, await moved.text()]).toEqual([302, "moved, but nowhere"]);
    for (const [path, status] of [["/no-content", 204], ["/not-modified", 304]] as const) {
      const response = await fetchAvoidingLoopback(at(path), "ADD");
      expect([response.status, response.body]).toEqual([status, null]);
    }
  });

  test("a name without an address, or a resolver that fails, fails the fetch with its reason", async () => {
    expect((await failure(`http://nowhere.test:${server.port}/chain/0`, async () => []))?.message).toContain("nowhere.test has no address");
    const broken: Resolver = () => Promise.reject(new Error("getaddrinfo ENOTFOUND broken.test"));
    expect((await failure(`http://broken.test:${server.port}/chain/0`, broken))?.message).toBe("getaddrinfo ENOTFOUND broken.test");
  });
});
