import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { blake3Hex } from "../hash/blake3.ts";
import { SigningKey } from "../remote/action.ts";
import { canonicalText, MOUNT_FORMAT, mountScope, versionId, type MountManifest } from "../remote/mount-manifest.ts";
import { createLogger } from "../util/log.ts";
import { createApp } from "./app.ts";
import { createParts, type ServerParts } from "./parts.ts";
import { BACKENDS, type Backend } from "../../test/support/backends.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-mounts-server-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const RW = "read-write-token";
const RO = "read-only-token";
/** A token the token file names (`TOKEN rw name=ci-bot`). */
const NAMED = "named-ci-token";
let opened: ServerParts[] = [];
let parts: ServerParts | undefined;
let n = 0;
afterEach(async () => {
  await Promise.all(opened.map((p) => p.close()));
  opened = [];
});

type ServerOptions = { mountBudget?: number; maxSize?: number; pendingGraceMs?: number; dataDir?: string };

/** A server on `backend`; the same dataDir again is another replica over the same stores. */
async function serverOn(backend: Backend, options: ServerOptions = {}) {
  const dataDir = options.dataDir ?? join(work, `data${++n}`);
  parts = await createParts({ ...options, dataDir, ...(await backend.options(dataDir)), tokens: [{ token: RW, role: "rw" }, { token: RO, role: "ro" }, { token: NAMED, role: "rw", name: "ci-bot" }], log: createLogger({ MEMOBUILD_LOG: "error" }) });
  opened.push(parts);
  const app = createApp(parts);
  const call = (method: string, path: string, body?: string, token = RW) => app.fetch(new Request(`http://cache${path}`, { method, body, headers: { authorization: `Bearer ${token}` } }));
  return Object.assign(call, { dataDir });
}
type Call = Awaited<ReturnType<typeof serverOn>>;

const SCOPE = mountScope("npm", undefined);

/** A version of `files` (name → content), its blobs uploaded first. */
async function publish(call: Call, files: Record<string, string>, options: { parent?: string | null; key?: SigningKey; created?: number; token?: string; scope?: string; label?: MountManifest["label"] } = {}) {
  for (const content of Object.values(files)) await call("PUT", `/v1/blobs/${blake3Hex(content)}`, content);
  const unsigned: MountManifest = {
    format: MOUNT_FORMAT,
    scope: options.scope ?? SCOPE,
    label: options.label ?? { id: "npm", scope: null },
    parent: options.parent ?? null,
    created: options.created ?? 1,
    files: Object.entries(files).sort().map(([path, content]) => ({ path, mode: 0o644, blake3: blake3Hex(content), size: content.length })),
  };
  const manifest = options.key ? { ...unsigned, signature: options.key.signText(canonicalText(unsigned)) } : unsigned;
  const id = versionId(unsigned);
  const response = await call("PUT", `/v1/mounts/${unsigned.scope}/${id}`, JSON.stringify(manifest), options.token);
  return { id, response, manifest };
}

const versions = async (call: Call) => ((await (await call("GET", `/v1/mounts/${SCOPE}`)).json()) as { versions: { id: string; parent: string | null; signer: string | null; changed: number }[] }).versions;

for (const backend of BACKENDS) describe(`shared cache mounts on ${backend.name}`, () => {
  const server = (options: ServerOptions = {}) => serverOn(backend, options);
  test("a version is published, listed and served; a read-only token fetches but gets 403 publishing", async () => {
    const call = await server();
    const first = await publish(call, { "a.tgz": "A", "b.tgz": "B" });
    expect(first.response.status).toBe(201);
    expect((await publish(call, { "a.tgz": "A", "b.tgz": "B" })).response.status).toBe(200); // the same again
    const served = await call("GET", `/v1/mounts/${SCOPE}/${first.id}`, undefined, RO);
    expect(JSON.parse(await served.text())).toEqual(first.manifest);
    const refused = await publish(call, { "c.tgz": "C" }, { token: RO });
    expect(refused.response.status).toBe(403);
    expect((await versions(call)).map((v) => v.id)).toEqual([first.id]);
  });

  test("two publishers from one parent are both kept; the newer is current; nothing is merged", async () => {
    const call = await server();
    const parent = await publish(call, { "a.tgz": "A" });
    const left = await publish(call, { "a.tgz": "A", "left.tgz": "L" }, { parent: parent.id, created: 2 });
    const right = await publish(call, { "a.tgz": "A", "right.tgz": "R" }, { parent: parent.id, created: 3 });
    const listed = await versions(call);
    expect(listed.map((v) => [v.id, v.parent, v.changed])).toEqual([
      [right.id, parent.id, 1],
      [left.id, parent.id, 1],
      [parent.id, null, 1],
    ]);
    const current = JSON.parse(await (await call("GET", `/v1/mounts/${SCOPE}/${right.id}`)).text()) as MountManifest;
    expect(current.files.map((f) => f.path)).toEqual(["a.tgz", "right.tgz"]);
  });

  test("publishers from one parent at once, on two replicas: every version kept, the last published current, no update lost", async () => {
    const one = await server();
    // On PostgreSQL a second replica over the same database and bucket; on SQLite the one process.
    const two = backend.files ? one : await server({ dataDir: one.dataDir });
    const parent = await publish(one, { "a.tgz": "A" });
    const forks = await Promise.all(Array.from({ length: 6 }, (_, i) => publish(i % 2 ? two : one, { "a.tgz": "A", [`f${i}.tgz`]: `F${i}` }, { parent: parent.id, created: 10 + i })));
    expect(forks.map((f) => f.response.status)).toEqual([201, 201, 201, 201, 201, 201]);
    const listed = await versions(two);
    expect(listed.map((v) => v.id).sort()).toEqual([parent.id, ...forks.map((f) => f.id)].sort());
    expect(listed.filter((v) => v.parent === parent.id).map((v) => v.changed)).toEqual([1, 1, 1, 1, 1, 1]);
    const { scopes } = (await (await one("GET", "/v1/mounts")).json()) as { scopes: { current: { id: string }; versions: number; changes: number[] }[] };
    expect(scopes.map((s) => [s.current.id, s.versions])).toEqual([[listed[0].id, 7]]);
    expect(scopes[0].changes).toEqual([1, 1, 1, 1, 1, 1, 1]);
  });

  test("a named token's publish is shown by the token's name; an unnamed one's by its hash prefix", async () => {
    const call = await server();
    expect((await publish(call, { "a.tgz": "A" }, { token: NAMED })).response.status).toBe(201);
    const listed = async () => ((await (await call("GET", "/v1/mounts")).json()) as { scopes: { current: { author: string; authorName?: string } }[] }).scopes[0].current;
    expect(await listed()).toMatchObject({ author: blake3Hex(NAMED).slice(0, 12), authorName: "ci-bot" });
    expect((await publish(call, { "b.tgz": "B" }, { parent: (await versions(call))[0].id, created: 2 })).response.status).toBe(201);
    expect((await listed()).authorName).toBeUndefined();
  });

  test("a fetch's report is added to its scope: files and bytes downloaded and kept, and the time the kept ones saved", async () => {
    const call = await server();
    // 32 files of 4000 bytes in all: as much as each report below says it fetched and kept.
    await publish(call, Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`f${String(i).padStart(2, "0")}`, String(i).padEnd(i === 31 ? 280 : 120, "x")])));
    const report = (body: unknown, token = RO, scope = SCOPE) => call("POST", `/v1/mounts/${scope}/fetched`, JSON.stringify(body), token);
    // 1000 bytes in 50 ms: the 3000 bytes kept would have taken 150 ms.
    expect((await report({ filesFetched: 2, bytesFetched: 1000, filesKept: 30, bytesKept: 3000, ms: 50 })).status).toBe(200);
    expect((await report({ filesFetched: 0, bytesFetched: 0, filesKept: 31, bytesKept: 4000, ms: 9 })).status).toBe(200); // no rate: nothing counted
    expect((await report({ filesFetched: 1, bytesFetched: 10, filesKept: 1, bytesKept: 10, ms: -1 })).status).toBe(400);
    expect((await report({ filesFetched: "1" })).status).toBe(400);
    expect((await report({ filesFetched: 1, bytesFetched: 1, filesKept: 1, bytesKept: 1, ms: 1 }, RO, mountScope("never", undefined))).status).toBe(404);
    const { scopes } = (await (await call("GET", "/v1/mounts")).json()) as { scopes: { fetched: unknown }[] };
    expect(scopes[0].fetched).toEqual({ fetches: 2, filesFetched: 2, bytesFetched: 1000, filesKept: 61, bytesKept: 7000, ms: 59, savedMs: 150 });
  });

  test("a fetch report cannot say more than fetching the scope could have: more files or bytes than a version holds, or a fetch longer than a day, is refused and counts nothing", async () => {
    const call = await server();
    await publish(call, { "a.tgz": "A".repeat(100), "b.tgz": "B".repeat(50) });
    const report = (body: Record<string, number>) => call("POST", `/v1/mounts/${SCOPE}/fetched`, JSON.stringify({ filesFetched: 1, bytesFetched: 1, filesKept: 1, bytesKept: 149, ms: 10, ...body }), RO);
    const refusals: Record<string, number>[] = [{ bytesKept: 2 ** 50, ms: 2 ** 50 }, { filesKept: 2 }, { bytesKept: 150 }, { ms: 86_400_001 }];
    const answers = await Promise.all(refusals.map(async (body) => { const r = await report(body); return [r.status, ((await r.json()) as { error: string }).error]; }));
    expect(answers).toEqual([
      [400, "ms must be a whole number from 0 to 86400000 (a day)"],
      [400, "the report names 3 files and this scope's largest version holds 2"],
      [400, "the report names 151 bytes and this scope's largest version holds 150"],
      [400, "ms must be a whole number from 0 to 86400000 (a day)"],
    ]);
    expect((await report({})).status).toBe(200); // all a version holds: 149 bytes kept at 1 byte in 10 ms
    const { scopes } = (await (await call("GET", "/v1/mounts")).json()) as { scopes: { fetched: { fetches: number; savedMs: number } }[] };
    expect([scopes[0].fetched.fetches, scopes[0].fetched.savedMs]).toEqual([1, 1490]);
    // Totals as many reports would leave them: they stop at 2^53 - 1 (a JS number's whole numbers) and never overflow.
    await backend.exec(parts!.storage, "UPDATE mount_fetches SET bytes_kept = $1, saved_ms = $1", [String(Number.MAX_SAFE_INTEGER - 1)]);
    expect((await report({})).status).toBe(200);
    const after = (await (await call("GET", "/v1/mounts")).json()) as { scopes: { fetched: { bytesKept: number; savedMs: number } }[] };
    expect([after.scopes[0].fetched.bytesKept, after.scopes[0].fetched.savedMs]).toEqual([Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER]);
  });

  test("refuses a version naming files not uploaded, a wrong name, another scope, and a bad signature", async () => {
    const call = await server();
    const good = await publish(call, { "a.tgz": "A" });
    const missing = { ...good.manifest, files: [...good.manifest.files, { path: "z", mode: 0o644, blake3: blake3Hex("never sent"), size: 10 }] };
    const missingResponse = await call("PUT", `/v1/mounts/${SCOPE}/${versionId(missing)}`, JSON.stringify(missing));
    expect([missingResponse.status, ((await missingResponse.json()) as { error: string }).error]).toEqual([400, "1 file(s) are not stored with the size the manifest gives (upload them first), e.g. z"]);
    const renamed = { ...good.manifest, created: 99 };
    expect((await call("PUT", `/v1/mounts/${SCOPE}/${good.id}`.replace(good.id, blake3Hex("x")), JSON.stringify(renamed))).status).toBe(400);
    const other = mountScope("pip", undefined);
    expect((await call("PUT", `/v1/mounts/${other}/${versionId({ ...good.manifest, created: 5 })}`, JSON.stringify({ ...good.manifest, created: 5 }))).status).toBe(400);
    const key = SigningKey.generate().key;
    const forged = { ...good.manifest, created: 7, signature: key.signText("something else") };
    const { signature: _, ...unsigned } = forged;
    const bad = await call("PUT", `/v1/mounts/${SCOPE}/${versionId(unsigned)}`, JSON.stringify(forged));
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toStartWith("bad signature");
    const escaping = { ...good.manifest, created: 8, files: [{ ...good.manifest.files[0], path: "../../etc/passwd" }] };
    expect((await call("PUT", `/v1/mounts/${SCOPE}/${versionId(escaping)}`, JSON.stringify(escaping))).status).toBe(400);
    const both = { ...good.manifest, created: 9, files: [good.manifest.files[0], { ...good.manifest.files[0], path: "a.tgz-x" }, { ...good.manifest.files[0], path: "a.tgz/inside" }] };
    const bothResponse = await call("PUT", `/v1/mounts/${SCOPE}/${versionId(both)}`, JSON.stringify(both));
    expect(((await bothResponse.json()) as { error: string }).error).toBe('files[2]: "a.tgz/inside" is below "a.tgz", which is a file');
  });

  test("a worker's private scope (a read-only submitter's job) is not listed, read or reported on by read-only tokens; read-write tokens see it", async () => {
    const call = await server();
    await publish(call, { "a.tgz": "A" });
    const label = { id: "npm", scope: "job-private/0123456789ab" };
    const scope = mountScope("npm", label.scope);
    const secret = await publish(call, { "token.txt": "what one pull request's RUN wrote" }, { scope, label });
    expect(secret.response.status).toBe(201);
    const listed = async (token: string) => ((await (await call("GET", "/v1/mounts", undefined, token)).json()) as { scopes: { scope: string }[] }).scopes.map((s) => s.scope).sort();
    expect(await listed(RW)).toEqual([SCOPE, scope].sort());
    expect(await listed(RO)).toEqual([SCOPE]);
    const report = JSON.stringify({ filesFetched: 1, bytesFetched: 1, filesKept: 0, bytesKept: 0, ms: 1 });
    // As if it did not exist: no versions, no manifest, no scope to report on.
    expect(await (await call("GET", `/v1/mounts/${scope}`, undefined, RO)).json()).toEqual({ versions: [] });
    const asRo = [await call("GET", `/v1/mounts/${scope}/${secret.id}`, undefined, RO), await call("POST", `/v1/mounts/${scope}/fetched`, report, RO)];
    expect(await Promise.all(asRo.map(async (r) => [r.status, ((await r.json()) as { error: string }).error]))).toEqual([[404, "no such version"], [404, "no such scope"]]);
    expect((await call("GET", `/v1/mounts/${scope}/${secret.id}`, undefined, RW)).status).toBe(200);
  });

  test("a label holding a NUL or a lone surrogate (no text column can keep it), or such a path, is refused with a 400 naming it", async () => {
    const call = await server();
    for (const label of [{ id: "a\u0000b", scope: null }, { id: "npm", scope: "x\u0000" }, { id: "\ud800", scope: null }]) {
      const { response } = await publish(call, { "a.tgz": "A" }, { label });
      expect([response.status, ((await response.json()) as { error: string }).error]).toEqual([400, "label: an id is at most 256 characters, a scope 128, each well-formed text without a NUL"]);
    }
    // Nor a path: a file name written as UTF-8 would not be the name the manifest lists.
    const { response } = await publish(call, { "a\ud800": "A" });
    expect([response.status, ((await response.json()) as { error: string }).error]).toEqual([400, 'files[0]: path "a\\ud800" is too long, holds a NUL or is not well-formed text']);
  });

  test("a signed version records its signer", async () => {
    const call = await server();
    const key = SigningKey.generate().key;
    await publish(call, { "a.tgz": "A" }, { key });
    expect((await versions(call))[0].signer).toBe(key.publicKey);
  });

  test("old versions go past the scope's budget, the newest stays; their files are then ordinary unneeded blobs", async () => {
    const call = await server({ mountBudget: 100, maxSize: 150, pendingGraceMs: 0 });
    const big = (c: string) => c.repeat(40);
    const v1 = await publish(call, { a: big("a") });
    const v2 = await publish(call, { a: big("a"), b: big("b") }, { parent: v1.id, created: 2 });
    expect((await versions(call)).map((v) => v.id)).toEqual([v2.id, v1.id]); // 80 bytes: both fit
    const v3 = await publish(call, { b: big("b"), c: big("c") }, { parent: v2.id, created: 3 });
    expect((await versions(call)).map((v) => v.id)).toEqual([v3.id]); // a, b, c: 120 bytes
    // The storage's own eviction (over 150 bytes) takes what no version needs, oldest first ("a",
    // then "d"), never b or c, though they are older than "d".
    await call("PUT", `/v1/blobs/${blake3Hex("d".repeat(100))}`, "d".repeat(100));
    await parts!.storage.evict();
    expect(await Promise.all([big("a"), big("b"), big("c")].map((c) => parts!.storage.hasBlob(blake3Hex(c))))).toEqual([false, true, true]);
    const tooBig = await publish(call, { x: "x".repeat(101) }, { created: 4 });
    expect(tooBig.response.status).toBe(413);
  });

  test("a read-only submitter's private scopes share one budget: more mount ids do not buy it more of the server's storage", async () => {
    const call = await server({ mountBudget: 100 });
    const big = (c: string) => c.repeat(60);
    const privately = (id: string, files: Record<string, string>, created: number) => {
      const label = { id, scope: "job-private/0123456789ab" };
      return publish(call, files, { scope: mountScope(id, label.scope), label, created });
    };
    const team = await publish(call, { t: big("t") });
    const npm = await privately("npm", { a: big("a") }, 1);
    const pip = await privately("pip", { b: big("b") }, 2);
    expect([team.response.status, npm.response.status, pip.response.status]).toEqual([201, 201, 201]);
    // 120 bytes in that submitter's scopes: its older version goes; the team's scope is its own.
    const listed = (await (await call("GET", "/v1/mounts")).json()) as { scopes: { label: { id: string; scope: string | null }; current: { id: string } }[] };
    expect(listed.scopes.map((s) => [s.label.id, s.label.scope, s.current.id]).sort()).toEqual([
      ["npm", null, team.id],
      ["pip", "job-private/0123456789ab", pip.id],
    ]);
  });

  test("the same files in two mounts are stored once", async () => {
    const call = await server();
    await publish(call, { "a.tgz": "same content" });
    await publish(call, { "a.tgz": "same content" }, { scope: mountScope("yarn", undefined) });
    const missing = await call("POST", "/v1/mounts/missing", JSON.stringify({ hashes: [blake3Hex("same content"), blake3Hex("new")] }), RO);
    expect(await missing.json()).toEqual({ missing: [blake3Hex("new")] });
    expect((await parts!.storage.counts()).blobs).toBe(1);
    const listed = (await (await call("GET", "/v1/mounts")).json()) as { scopes: { stored: number }[] };
    expect(listed.scopes.map((s) => s.stored)).toEqual([12, 12]);
  });
});
