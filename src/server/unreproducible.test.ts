/**
 * A step its own writer made again with another result: the server compares the two layers it
 * holds (on each back end, blobs in a directory or in S3), answers "not-reproducible" with the
 * files that differ, keeps the first result, and records the build each came from only when
 * the uploader's token owns that build.
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { blake3Hex } from "../hash/blake3.ts";
import { TarWriter } from "../sys/tar.ts";
import { createApp } from "./app.ts";
import { createLogger } from "../util/log.ts";
import { createParts, type ServerParts } from "./parts.ts";
import { BACKENDS } from "../../test/support/backends.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-unreproducible-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const RW = "unreproducible-rw-token";
const OTHER = "unreproducible-other-token";
const WORKER = "unreproducible-worker-token";
const KEY = blake3Hex("a step");

/** A layer with one file /d holding `date`. */
function layer(date: string): Uint8Array {
  const chunks: Uint8Array[] = [];
  const writer = new TarWriter((chunk) => chunks.push(Buffer.from(chunk)));
  const data = Buffer.from(`${date}\n`);
  writer.add({ name: "d", type: "file", mode: 0o644, uid: 0, gid: 0, mtime: 1, size: data.length });
  writer.content(data);
  writer.pad(data.length);
  writer.finish();
  return Buffer.concat(chunks);
}

for (const backend of BACKENDS) describe(`results not reproducible on ${backend.name}`, () => {
  let n = 0;
  const open: ServerParts[] = [];
  afterEach(async () => {
    for (const parts of open.splice(0)) await parts.close();
  });

  async function server() {
    const dataDir = join(work, `s${++n}`);
    const parts = await createParts({ dataDir, tokens: [{ token: RW, role: "rw" }, { token: OTHER, role: "rw" }, { token: WORKER, role: "worker" }], log: createLogger({ MEMOBUILD_LOG: "error" }), ...(await backend.options(dataDir)) });
    open.push(parts);
    const app = createApp(parts);
    const call = (method: string, path: string, token: string, body?: string | Uint8Array, headers: Record<string, string> = {}) =>
      app.fetch(new Request(`http://cache${path}`, { method, body, headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...headers } }));
    /** Uploads a layer and the action naming it; the answer to the action. */
    const upload = async (token: string, date: string, headers: Record<string, string> = {}) => {
      const tar = layer(date);
      const hash = blake3Hex(tar);
      expect((await call("PUT", `/v1/blobs/${hash}`, token, tar)).ok).toBe(true);
      const digest = `sha256:${new Bun.CryptoHasher("sha256").update(tar).digest("hex")}`;
      const action = { blobs: [hash], diffId: digest, created: 1, layer: { blake3: hash, digest, size: tar.length, mediaType: "application/vnd.oci.image.layer.v1.tar" } };
      return call("PUT", `/v1/actions/${KEY}`, token, JSON.stringify(action), headers);
    };
    return { parts, call, upload };
  }

  test("the files that differ are named, the first result is kept, and no conflict is recorded", async () => {
    const { parts, call, upload } = await server();
    expect((await upload(RW, "Mon 10:00:00", { "memobuild-build": "build-first-0001", "memobuild-step": encodeURIComponent("[app 2/2] RUN date > /d") })).status).toBe(201);
    const kept = await (await call("GET", `/v1/actions/${KEY}`, RW)).text();
    const again = await upload(RW, "Mon 10:00:01", { "memobuild-build": "build-again-0002", "memobuild-step": encodeURIComponent("[app 2/2] RUN date > /d") });
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({
      key: KEY,
      outcome: "not-reproducible",
      step: "[app 2/2] RUN date > /d",
      firstBuild: "build-first-0001",
      differences: { files: [{ path: "/d", how: ["content"] }], more: 0 },
    });
    expect(await (await call("GET", `/v1/actions/${KEY}`, RW)).text()).toBe(kept);
    expect(await parts.storage.conflictCount()).toBe(0);
    expect(await parts.storage.unreproducible()).toMatchObject([{ key: KEY, first: { build: "build-first-0001" }, second: { build: "build-again-0002" }, step: "[app 2/2] RUN date > /d" }]);
  });

  test("an upload cannot claim another token's build as where it came from", async () => {
    const { call, upload } = await server();
    const started = { type: "build.started", seq: 1, time: 1, dockerfile: "Dockerfile", platform: "linux/amd64", host: "h", labels: {}, steps: [] };
    expect((await call("POST", "/v1/builds/build-of-other-1/events", OTHER, JSON.stringify({ events: [started] }))).status).toBe(200);
    expect((await upload(RW, "Mon 10:00:00", { "memobuild-build": "build-of-other-1" })).status).toBe(201);
    const conflict = await upload(OTHER, "Mon 10:00:02", { "memobuild-build": "build-of-other-1" });
    expect(conflict.status).toBe(409);
    // The first result's build was not recorded (it is OTHER's build); the second's was (it is).
    expect(await conflict.json()).toMatchObject({ firstBuild: null });
    const { conflicts } = (await (await call("GET", "/v1/conflicts", RW)).json()) as { conflicts: { first: { build: string | null }; second: { build: string | null } }[] };
    expect(conflicts).toMatchObject([{ first: { build: null }, second: { build: "build-of-other-1" } }]);
  });

  test("a worker's upload names the build of the job it holds (its lease the proof), and no other", async () => {
    const { call, upload } = await server();
    const started = { type: "build.started", seq: 1, time: 1, dockerfile: "Dockerfile", platform: "linux/amd64", host: "h", labels: {}, steps: [] };
    for (const [token, build] of [[RW, "build-of-rw-1"], [OTHER, "build-of-other-2"]]) expect((await call("POST", `/v1/builds/${build}/events`, token, JSON.stringify({ events: [started] }))).status).toBe(200);
    expect((await call("POST", "/v1/jobs", RW, JSON.stringify({ definition: { version: 1 }, hints: [] }))).status).toBe(201);
    const job = (await (await call("POST", "/v1/workers/claim", WORKER, JSON.stringify({ name: "runner-1" }))).json()) as { id: string; lease: string };
    const held = { "memobuild-job": job.id, "memobuild-lease": job.lease };
    expect((await upload(WORKER, "Mon 10:00:00", { "memobuild-build": "build-of-rw-1", ...held })).status).toBe(201);
    // Another build (not the job's submitter's), or the job without its lease: not named.
    expect(await (await upload(WORKER, "Mon 10:00:01", { "memobuild-build": "build-of-other-2", ...held })).json()).toMatchObject({ outcome: "not-reproducible", firstBuild: "build-of-rw-1" });
    await upload(WORKER, "Mon 10:00:02", { "memobuild-build": "build-of-rw-1", "memobuild-job": job.id, "memobuild-lease": "not-the-lease" });
    const { unreproducible } = (await (await call("GET", "/v1/unreproducible", RW)).json()) as { unreproducible: { first: { build: string | null }; second: { build: string | null } }[] };
    expect(unreproducible.map((u) => u.second.build)).toEqual([null, null]);
  });
});
