/**
 * What another web site's page can make a visitor's browser do to a cache server: nothing that
 * writes. A browser sends "simple" requests (text/plain, forms) anywhere without asking, the
 * loopback address of a tokenless server included; the server tells them apart by their
 * Origin, Sec-Fetch-Site and content type.
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createApp } from "./app.ts";
import { createLogger } from "../util/log.ts";
import { createParts, type ServerParts } from "./parts.ts";
import { BACKENDS } from "../../test/support/backends.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-browser-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let n = 0;
const open: ServerParts[] = [];
afterEach(async () => {
  for (const parts of open.splice(0)) await parts.close();
});

for (const backend of BACKENDS) describe(`browsers and ${backend.name}`, () => {
  async function server(tokens: { token: string; role: "rw" | "ro" }[]) {
    const dataDir = join(work, `data${++n}`);
    const parts = await createParts({ dataDir, tokens, log: createLogger({ MEMOBUILD_LOG: "error" }), ...(await backend.options(dataDir)) });
    open.push(parts);
    const app = createApp(parts);
    return (method: string, path: string, headers: Record<string, string>, body?: string) => app.fetch(new Request(`http://127.0.0.1:7070${path}`, { method, headers: { host: "127.0.0.1:7070", ...headers }, body }));
  }

  const fakeBuild = JSON.stringify({
    events: [{ type: "build.started", seq: 1, time: 1, dockerfile: "Dockerfile", platform: "linux/amd64", host: "x", steps: [] }],
  });

  describe("a tokenless server on the loopback address", () => {
    test("refuses a cross-site page's text/plain POST of a fake build, and any write a browser says is cross-site", async () => {
      const call = await server([]);
      const post = (headers: Record<string, string>) => call("POST", "/v1/builds/build-fake-0001/events", headers, fakeBuild);
      // What a page elsewhere can send without asking: text/plain, and its browser names its origin (or not).
      expect((await post({ "content-type": "text/plain;charset=UTF-8" })).status).toBe(415);
      expect((await post({ "content-type": "text/plain", origin: "https://evil.example" })).status).toBe(403);
      expect((await post({ "content-type": "application/json", "sec-fetch-site": "cross-site" })).status).toBe(403);
      expect((await call("PUT", `/v1/actions/${"a".repeat(64)}`, { "content-type": "application/json", origin: "null" }, "{}")).status).toBe(403);
      expect((await call("GET", "/v1/builds", {})).status).toBe(200);
      // What the client sends: JSON, no Origin.
      expect((await post({ "content-type": "application/json" })).status).toBe(200);
      expect((await post({ "content-type": "application/json", "sec-fetch-site": "same-origin", origin: "http://127.0.0.1:7070" })).status).toBe(200);
    });
  });

  describe("a dashboard session", () => {
    test("reads only from this server's own origin: the same host on another port is another site", async () => {
      const call = await server([{ token: "session-test-token", role: "ro" }]);
      const login = await call("POST", "/login", { "content-type": "application/x-www-form-urlencoded" }, "token=session-test-token");
      const cookie = login.headers.get("set-cookie")!.split(";")[0];
      expect((await call("GET", "/v1/builds", { cookie, origin: "http://127.0.0.1:7070" })).status).toBe(200);
      expect((await call("GET", "/v1/builds", { cookie, origin: "http://127.0.0.1:8080" })).status).toBe(401);
      expect((await call("GET", "/v1/builds", { cookie, origin: "http://localhost:7070" })).status).toBe(401);
    });
  });
});
