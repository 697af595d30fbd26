/**
 * `RUN --mount=type=cache` with `memobuild build --builder`: real `serve` and two `memobuild
 * worker` processes (each its own cache and key, trusting the other's). A trusted submitter's
 * job publishes the mount from its worker, and the next job, on the other worker, finds the
 * files. A read-only submitter's job writes into a scope of its own: no job of another token,
 * on the same worker or through the server, ever sees those files.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { memobuildBinary, runMemobuild } from "./support/binary.ts";
import { buildBaseImage, machineWithBase, writeProject } from "./support/base-image.ts";
import { startCacheServer, type CacheServer } from "./support/server.ts";
import { spawnWorker, type WorkerProcess } from "./support/worker.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-builder-mounts-"));
const baseOci = join(work, "base-oci");
const TEAM = "team-rw-token-0123";
const PR_ONE = "pull-request-token-1";
const PR_TWO = "pull-request-token-2";
const WORKER = "worker-token-0123";
let server: CacheServer;
const workers = new Map<string, WorkerProcess>();
const keys = new Map<string, { file: string; publicKey: string }>();

function startWorker(name: string) {
  const trust = [...keys].filter(([other]) => other !== name).flatMap(([, key]) => ["--remote-trust", key.publicKey]);
  workers.set(name, spawnWorker(server.url, WORKER, ["--name", name, "--cache-dir", join(work, `cache-${name}`), "--sign-key", keys.get(name)!.file, ...trust]));
}

beforeAll(async () => {
  buildBaseImage(work, baseOci);
  server = await startCacheServer(join(work, "server"), ["--token", TEAM, "--read-only-token", PR_ONE, "--read-only-token", PR_TWO, "--worker-token", WORKER, "--job-lease", "5"]);
  for (const name of ["w1", "w2"]) {
    const file = join(work, `${name}.key`);
    keys.set(name, { file, publicKey: runMemobuild(["key", "generate", "--out", file]).stdout.trim() });
  }
  startWorker("w1");
  startWorker("w2");
}, 180_000);

afterAll(async () => {
  for (const worker of workers.values()) worker.process.kill("SIGKILL");
  await server?.stop();
  rmSync(work, { recursive: true, force: true });
});

let count = 0;

/**
 * A build on a worker whose RUN says which of `looks` the npm cache mount holds, then writes
 * `writes` into it; the answers come back in the image (`/seen`).
 */
async function remoteBuild(token: string, looks: string[], writes: string, ...args: string[]) {
  const checks = looks.map((file) => `[ -f /root/.npm/${file} ] && echo ${file} found || echo ${file} missing`).join("; ");
  const dockerfile = `FROM memobuild/busybox\nRUN --mount=type=cache,id=npm,target=/root/.npm,sharing=locked sh -c '(${checks}) > /seen; echo from-${writes} > /root/.npm/${writes}'\n`;
  const dir = writeProject(join(work, `project-${++count}`), { Dockerfile: dockerfile });
  const out = join(work, `out-${count}`);
  const metadata = join(work, `meta-${count}.json`);
  const child = Bun.spawn([memobuildBinary(), "build", dir, "--cache-dir", machineWithBase(join(work, `client-${count}`), baseOci), "--builder", server.url, "--remote-token", token, "--metadata-file", metadata, "-o", `type=local,dest=${out}`, "--progress", "plain", ...args], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stderr, exitCode] = await Promise.all([new Response(child.stderr).text(), child.exited]);
  expect({ exitCode, stderr: exitCode ? stderr : "" }).toEqual({ exitCode: 0, stderr: "" });
  return {
    seen: readFileSync(join(out, "seen"), "utf8").trim().split("\n"),
    worker: (JSON.parse(readFileSync(metadata, "utf8")) as { steps: { worker?: string }[] }).steps[0].worker!,
  };
}

const scopes = async () =>
  ((await (await fetch(`${server.url}/v1/mounts`, { headers: { authorization: `Bearer ${TEAM}` } })).json()) as { scopes: { scope: string; label: { id: string; scope: string | null }; current: { id: string; files: number } }[] }).scopes;

describe("cache mounts of builds on workers", () => {
  test("a trusted submitter's job publishes the mount from its worker; the next job, on the other worker, finds its files", async () => {
    const first = await remoteBuild(TEAM, ["a.tgz"], "a.tgz");
    expect(first.seen).toEqual(["a.tgz missing"]);
    // Only the other worker is left to take the next job.
    const other = first.worker === "w1" ? "w2" : "w1";
    workers.get(first.worker)!.process.kill("SIGKILL");
    await workers.get(first.worker)!.process.exited;
    const second = await remoteBuild(TEAM, ["a.tgz", "b.tgz"], "b.tgz");
    expect(second.worker).toBe(other);
    expect(second.seen).toEqual(["a.tgz found", "b.tgz missing"]);
    const shared = (await scopes()).filter((s) => s.label.scope === null);
    expect(shared.map((s) => [s.label.id, s.current.files])).toEqual([["npm", 2]]);
    // The submitter's --cache-mount-scope (a branch) reaches the worker: that scope starts apart.
    const branch = await remoteBuild(TEAM, ["a.tgz"], "x.tgz", "--cache-mount-scope", "feature/x");
    expect(branch.seen).toEqual(["a.tgz missing"]);
    expect((await scopes()).filter((s) => s.label.scope === "feature/x").map((s) => s.current.files)).toEqual([1]);
  }, 180_000);

  test("a read-only submitter's job keeps its mount files to itself: another token's jobs never see them, on the same worker or another", async () => {
    const planted = await remoteBuild(PR_ONE, ["a.tgz", "planted.tgz"], "planted.tgz");
    // Its own scope starts apart from the team's: it does not build on the team's files either.
    expect(planted.seen).toEqual(["a.tgz missing", "planted.tgz missing"]);
    const otherPullRequest = await remoteBuild(PR_TWO, ["planted.tgz"], "two.tgz");
    expect(otherPullRequest.worker).toBe(planted.worker); // the same worker's directories
    expect(otherPullRequest.seen).toEqual(["planted.tgz missing"]);
    const team = await remoteBuild(TEAM, ["a.tgz", "planted.tgz"], "c.tgz");
    expect(team.seen).toEqual(["a.tgz found", "planted.tgz missing"]);
    // The same submitter's next job finds its own files (through the server, from its scope).
    const again = await remoteBuild(PR_ONE, ["planted.tgz"], "planted2.tgz");
    expect(again.seen).toEqual(["planted.tgz found"]);
    // On the server: the team's scope never held the planted file; each pull request has its own.
    const listed = await scopes();
    const teamScope = listed.find((s) => s.label.scope === null)!;
    const manifest = (await (await fetch(`${server.url}/v1/mounts/${teamScope.scope}/${teamScope.current.id}`, { headers: { authorization: `Bearer ${TEAM}` } })).json()) as { files: { path: string }[] };
    expect(manifest.files.map((f) => f.path)).toEqual(["a.tgz", "b.tgz", "c.tgz"]);
    expect(listed.filter((s) => s.label.scope?.startsWith("job-private/")).map((s) => s.label.scope!.replace(/[0-9a-f]{12}$/, "ID")).sort()).toEqual(["job-private/ID", "job-private/ID"]);
  }, 240_000);

  test("a read-only submitter cannot launder its mount's files into the team's step results: a RUN that read them keys apart", async () => {
    // The pull request plants a file in its own mount, then runs the team's exact step (same
    // Dockerfile, same key but for the mount's contents) on top of it.
    await remoteBuild(PR_ONE, ["nothing"], "evil.tgz");
    const laundered = await remoteBuild(PR_ONE, ["evil.tgz"], "team.tgz");
    expect(laundered.seen).toEqual(["evil.tgz found"]);
    // The team's build of that step runs it on the team's mount: no result of the pull request's is a hit.
    const team = await remoteBuild(TEAM, ["evil.tgz"], "team.tgz");
    expect(team.seen).toEqual(["evil.tgz missing"]);
  }, 240_000);
});
