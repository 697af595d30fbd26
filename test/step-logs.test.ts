/**
 * Every step's log end to end: a real build (the compiled binary) with a secret and a RUN that
 * prints more than a step streams, against a real `memobuild serve`: the log endpoint gives the
 * start, a line saying how much was left out, and the end, with the secret's value masked.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runMemobuildAsync } from "./support/binary.ts";
import { buildBaseImage, machineWithBase, writeProject } from "./support/base-image.ts";
import { startCacheServer, type CacheServer } from "./support/server.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-step-logs-e2e-"));
const TOKEN = "step-logs-e2e-token";
const baseOci = join(work, "base-oci");
let server: CacheServer;

beforeAll(async () => {
  buildBaseImage(work, baseOci);
  server = await startCacheServer(join(work, "data"), ["--token", TOKEN]);
}, 120_000);

afterAll(async () => {
  await server?.stop();
  rmSync(work, { recursive: true, force: true });
});

test("a step that prints more than its bound keeps its start and its end, its secret masked, at GET /v1/builds/{id}/steps/{n}/log", async () => {
  const secret = "pw-9f8e7d6c5b4a";
  // 30,000 numbered lines (about 169 KB), then the secret, read from its mount, on the last line.
  const dir = writeProject(join(work, "app"), { Dockerfile: "FROM memobuild/busybox\nRUN --mount=type=secret,id=pw seq 1 30000 && echo \"last: $(cat /run/secrets/pw)\"\n" });
  const built = await runMemobuildAsync(["build", dir, "--cache-dir", machineWithBase(join(work, "machine"), baseOci), "--remote", server.url, "--remote-token", TOKEN, "--secret", "id=pw,env=PW"], { PW: secret });
  expect(built.exitCode).toBe(0);
  const get = (path: string) => fetch(`${server.url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  const [build] = ((await (await get("/v1/builds")).json()) as { builds: { id: string }[] }).builds;
  const response = await get(`/v1/builds/${build.id}/steps/2/log`);
  expect(response.status).toBe(200);
  expect(decodeURIComponent(response.headers.get("memobuild-step")!)).toStartWith("[stage-0 2/2] RUN --mount=type=secret,id=pw seq 1 30000");
  const log = await response.text();
  expect(log).toStartWith("1\n2\n3\n");
  expect(log).toMatch(/\n\[… \d+ bytes of output left out …\]\n/);
  expect(log).toEndWith("29999\n30000\nlast: ****\n");
  expect(log).not.toContain(secret);
  expect(log.length).toBeLessThanOrEqual(128 * 1024 + 200);
  // The FROM step printed nothing; there is no step 3.
  expect(await (await get(`/v1/builds/${build.id}/steps/1/log`)).text()).toBe("");
  expect((await get(`/v1/builds/${build.id}/steps/3/log`)).status).toBe(404);
}, 120_000);
