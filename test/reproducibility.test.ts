/**
 * Not reproducible, named, end to end: a `--no-cache` rebuild of a time-dependent step against
 * a real `memobuild serve` is recorded as one step that is not reproducible, naming the file
 * that changed, and is no conflict; another token's different result still is a conflict, its
 * warning names the step and the build that wrote the first result, and cache.conflict fires.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runMemobuildAsync } from "./support/binary.ts";
import { buildBaseImage, machineWithBase, writeProject } from "./support/base-image.ts";
import { startCacheServer, type CacheServer } from "./support/server.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-repro-e2e-"));
const TOKEN = "repro-token-first-writer";
const OTHER = "repro-token-other-writer";
const SECRET = `whsec_${Buffer.from("a webhook secret of 32 bytes!!!!").toString("base64")}`;
const baseOci = join(work, "base-oci");
const hooks: { type: string; body: string }[] = [];
const receiver = Bun.serve({
  port: 0,
  hostname: "127.0.0.1",
  async fetch(request) {
    const body = await request.text();
    hooks.push({ type: (JSON.parse(body) as { type: string }).type, body });
    return new Response(null, { status: 204 });
  },
});
let server: CacheServer;

beforeAll(async () => {
  buildBaseImage(work, baseOci);
  server = await startCacheServer(join(work, "data"), ["--token", TOKEN, "--token", OTHER, "--webhook", `http://127.0.0.1:${receiver.port}/hook`, "--webhook-secret", SECRET]);
}, 120_000);

afterAll(async () => {
  await server?.stop();
  receiver.stop(true);
  rmSync(work, { recursive: true, force: true });
});

const api = async <T>(path: string): Promise<T> => (await (await fetch(`${server.url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as T;

interface Unreproducible {
  step: string;
  first: { build: string | null };
  second: { build: string | null };
  differences: { files: { path: string; how: string[] }[] };
}

/** Waits for the next second: `date` prints seconds, and two builds in one second agree. */
const nextSecond = () => Bun.sleep(1000 - (Date.now() % 1000) + 50);

test("a --no-cache rebuild of RUN date > /d is one step not reproducible, naming /d, and no conflict; another token's result is a conflict that names the step and the first build", async () => {
  const dir = writeProject(join(work, "app"), { Dockerfile: "FROM memobuild/busybox AS build\nRUN date > /d\n" });
  const machine = machineWithBase(join(work, "machine-a"), baseOci);
  const remote = (token: string) => ["--remote", server.url, "--remote-token", token, "--progress", "plain"];
  const first = await runMemobuildAsync(["build", dir, "--cache-dir", machine, ...remote(TOKEN)]);
  expect(first.exitCode).toBe(0);
  await nextSecond();
  const rebuild = await runMemobuildAsync(["build", dir, "--cache-dir", machine, "--no-cache", ...remote(TOKEN)]);
  expect(rebuild.exitCode).toBe(0);
  expect(rebuild.stderr).toContain("[build 2/2] RUN date > /d is not reproducible");
  expect(rebuild.stderr).toContain("/d (content)");
  expect(rebuild.stderr).not.toContain("conflict");

  const builds = (await api<{ builds: { id: string }[] }>("/v1/builds")).builds.map((b) => b.id);
  expect(builds.length).toBe(2);
  const { unreproducible } = await api<{ unreproducible: Unreproducible[] }>("/v1/unreproducible");
  expect(unreproducible.length).toBe(1);
  expect(unreproducible[0].step).toBe("[build 2/2] RUN date > /d");
  // /d first; a directory the RUN touched (its date) may follow.
  expect(unreproducible[0].differences.files[0]).toEqual({ path: "/d", how: ["content"] });
  expect(unreproducible[0].differences.files.slice(1).every((f) => f.how.join() === "mtime only")).toBe(true);
  // The first result came from the first build, the other from the rebuild (newest first in the list).
  expect([unreproducible[0].second.build, unreproducible[0].first.build]).toEqual(builds);
  expect((await api<{ conflicts: unknown[] }>("/v1/conflicts")).conflicts).toEqual([]);
  const stats = await api<{ nondeterministic: { step: string; count: number }[] }>("/v1/stats");
  expect(stats.nondeterministic).toMatchObject([{ step: "[build 2/2] RUN date > /d", count: 1 }]);

  // Another writer (its own token and machine) makes the step: that is a conflict, as before.
  await nextSecond();
  const other = await runMemobuildAsync(["build", dir, "--cache-dir", machineWithBase(join(work, "machine-b"), baseOci), "--no-cache", ...remote(OTHER)]);
  expect(other.exitCode).toBe(0);
  expect(other.stderr).toContain(`[build 2/2] RUN date > /d: the remote cache holds another writer's result for this step, from build ${builds[1]}`);
  const { conflicts } = await api<{ conflicts: { step: string; first: { build: string }; second: { build: string } }[] }>("/v1/conflicts");
  expect(conflicts.length).toBe(1);
  expect(conflicts[0]).toMatchObject({ step: "[build 2/2] RUN date > /d", first: { build: builds[1] } });
  const deadline = Date.now() + 15_000;
  while (!hooks.some((h) => h.type === "cache.conflict") && Date.now() < deadline) await Bun.sleep(50);
  expect(hooks.filter((h) => h.type === "cache.conflict").length).toBe(1);
  expect(JSON.parse(hooks.find((h) => h.type === "cache.conflict")!.body).data).toMatchObject({ step: "[build 2/2] RUN date > /d", first: { build: builds[1] } });
}, 120_000);
