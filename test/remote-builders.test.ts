/**
 * Remote execution end to end: `memobuild serve` with two `memobuild worker` processes (each its
 * own cache and signing key) and clients that build with `--builder`. A read-only submitter's
 * build runs on a worker, gives the same image as a local build, and its results are shared,
 * written and signed by the worker; the next build of the project goes to the worker that holds
 * it; a worker killed in the middle of a RUN loses the build to the other, and the build succeeds.
 * Independent stages of one build run as jobs of their own on both workers at once; a failing
 * stage fails the build and cancels the rest, as Ctrl-C cancels every job of the build.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { REPO_ROOT, memobuildBinary, runMemobuild } from "./support/binary.ts";
import { buildBaseImage, machineWithBase, writeProject } from "./support/base-image.ts";
import { startCacheServer, type CacheServer } from "./support/server.ts";
import { spawnWorker, type WorkerProcess } from "./support/worker.ts";
import { attestSchemaErrors } from "./support/attest-schema.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-builders-"));
const baseOci = join(work, "base-oci");
const CLIENT = "read-only-submitter";
const WORKER = "worker-token-0123";
let server: CacheServer;
const workers = new Map<string, WorkerProcess & { publicKey: string }>();

function startWorker(name: string) {
  const key = join(work, `${name}.key`);
  const publicKey = runMemobuild(["key", "generate", "--out", key]).stdout.trim();
  // As the README starts one: the key named relative to the directory the worker starts in
  // (each build runs in a job directory of its own, where that relative path names nothing).
  workers.set(name, { ...spawnWorker(server.url, WORKER, ["--name", name, "--cache-dir", join(work, `cache-${name}`), "--sign-key", `${name}.key`], work), publicKey });
}

beforeAll(async () => {
  buildBaseImage(work, baseOci);
  server = await startCacheServer(join(work, "server"), ["--read-only-token", CLIENT, "--worker-token", WORKER, "--job-lease", "5"]);
  startWorker("w1");
  startWorker("w2");
}, 180_000);

afterAll(async () => {
  for (const worker of workers.values()) worker.process.kill("SIGKILL");
  await server?.stop();
  rmSync(work, { recursive: true, force: true });
});

const api = async <T>(path: string): Promise<T> => (await (await fetch(`${server.url}${path}`, { headers: { authorization: `Bearer ${CLIENT}` } })).json()) as T;

async function remoteBuild(dir: string, cache: string, ...args: string[]) {
  const metadata = join(work, `meta-${Math.random().toString(36).slice(2)}.json`);
  const child = Bun.spawn([memobuildBinary(), "build", dir, "--cache-dir", cache, "--builder", server.url, "--remote-token", CLIENT, "--metadata-file", metadata, "--progress", "plain", ...args], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, SOURCE_DATE_EPOCH: "1700000000" },
  });
  const [stderr, exitCode] = await Promise.all([new Response(child.stderr).text(), child.exited]);
  return { stderr, exitCode, meta: existsSync(metadata) ? JSON.parse(readFileSync(metadata, "utf8")) : undefined };
}

interface Linked {
  step?: string | null;
  first: { build?: string | null };
  second: { build?: string | null };
}

describe("builds through --builder", () => {
  test("a read-only submitter's build runs on a worker: the same image as a local build, results written and signed by the worker", async () => {
    const local = runMemobuild(["build", join(REPO_ROOT, "examples/hello"), "--cache-dir", machineWithBase(join(work, "local"), baseOci), "--metadata-file", join(work, "local.json"), "-q"], { env: { SOURCE_DATE_EPOCH: "1700000000" } });
    expect(local.exitCode).toBe(0);
    const client = machineWithBase(join(work, "client"), baseOci);
    const remote = await remoteBuild(join(REPO_ROOT, "examples/hello"), client, "-t", "hello:remote");
    expect(remote.stderr).toContain("naming to docker.io/library/hello:remote");
    expect(remote.exitCode).toBe(0);
    expect(remote.meta["containerimage.digest"]).toBe(JSON.parse(readFileSync(join(work, "local.json"), "utf8"))["containerimage.digest"]);
    // Every step names the worker that ran it; the image is in the client's store and runs.
    const steps = remote.meta.steps as { worker?: string; key: string; status: string }[];
    const worker = steps[0].worker!;
    expect(["w1", "w2"]).toContain(worker);
    expect(steps.every((s) => s.worker === worker)).toBe(true);
    expect(runMemobuild(["run", "hello:remote", "--cache-dir", client, "--", "remote"]).stdout).toBe("hello, remote!\n");
    // The results are in the shared cache, signed by that worker's key.
    const run = steps.find((s) => s.status === "executed" && s.key)!;
    const action = await api<{ signature?: { signer: string } }>(`/v1/actions/${run.key}`);
    expect(action.signature?.signer).toBe(workers.get(worker)!.publicKey);
    // The submitter itself still cannot write anything to the cache.
    const put = await fetch(`${server.url}/v1/actions/${"a".repeat(64)}`, { method: "PUT", headers: { authorization: `Bearer ${CLIENT}`, "content-type": "application/json" }, body: "{}" });
    expect(put.status).toBe(403);
  }, 120_000);

  test("independent stages run on different workers at once; the build's own job finds them in the shared cache", async () => {
    const unique = Date.now();
    const dir = writeProject(join(work, "spread"), {
      Dockerfile: `FROM memobuild/busybox AS a\nRUN sleep 2 && echo a-${unique} > /a\nFROM memobuild/busybox AS b\nRUN sleep 2 && echo b-${unique} > /b\nFROM memobuild/busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n`,
    });
    const local = runMemobuild(["build", dir, "--cache-dir", machineWithBase(join(work, "local-spread"), baseOci), "--metadata-file", join(work, "local-spread.json"), "-q"], { env: { SOURCE_DATE_EPOCH: "1700000000" } });
    expect(local.exitCode).toBe(0);
    const localMeta = JSON.parse(readFileSync(join(work, "local-spread.json"), "utf8"));
    const since = Date.now();
    const remote = await remoteBuild(dir, machineWithBase(join(work, "client-spread"), baseOci));
    expect({ exitCode: remote.exitCode, stderr: remote.exitCode ? remote.stderr : "" }).toEqual({ exitCode: 0, stderr: "" });
    expect(remote.meta["containerimage.digest"]).toBe(localMeta["containerimage.digest"]);
    // Every step once, in the build's order, each naming the worker that ran it.
    const steps = remote.meta.steps as { id: string; worker?: string; status: string }[];
    expect(steps.map((s) => s.id)).toEqual(localMeta.steps.map((s: { id: string }) => s.id));
    const ran = (id: string) => steps.find((s) => s.id === id)!;
    expect([ran("a/1").status, ran("b/1").status]).toEqual(["executed", "executed"]);
    expect(ran("a/1").worker).not.toBe(ran("b/1").worker);
    expect(["w1", "w2"]).toContain(ran("a/1").worker!);
    expect(["w1", "w2"]).toContain(ran("b/1").worker!);
    // The display shows each step once, numbered as in the build's plan.
    expect(remote.stderr).toMatch(/^#2 \[a 2\/2\] RUN sleep 2/m);
    expect(remote.stderr).toMatch(/^#4 \[b 2\/2\] RUN sleep 2/m);
    const shown = (what: string) => [...remote.stderr.matchAll(new RegExp(`^#(\\d+) ${what}`, "gm"))].map((m) => Number(m[1])).sort((a, b) => a - b);
    expect(shown("\\[")).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(shown("(DONE|CACHED)")).toEqual([1, 2, 3, 4, 5, 6, 7]);
    // Three jobs: one per stage, at the same time on different workers, then the build's own.
    type Job = { state: string; worker?: string; created: number; started: number; finished: number; hints: number };
    const jobs = (await api<{ jobs: Job[] }>("/v1/jobs")).jobs.filter((j) => j.created >= since).reverse();
    expect(jobs.map((j) => j.state)).toEqual(["succeeded", "succeeded", "succeeded"]);
    expect(jobs.map((j) => j.hints)).toEqual([2, 2, 7]); // each job is scheduled by the keys of its own steps
    const [first, second, last] = jobs;
    expect(new Set([first.worker, second.worker])).toEqual(new Set([ran("a/1").worker, ran("b/1").worker]));
    expect(first.started < second.finished && second.started < first.finished).toBe(true);
    expect(last.created).toBeGreaterThanOrEqual(Math.max(first.finished, second.finished));
  }, 120_000);

  test("a stage that fails fails the build with its error, and the other stage's job is cancelled", async () => {
    const since = Date.now();
    const dir = writeProject(join(work, "spread-fail"), {
      Dockerfile: `FROM memobuild/busybox AS slow\nRUN sleep 30 && echo never-${since} > /s\nFROM memobuild/busybox AS broken\nRUN sleep 1 && echo broken-${since} && exit 7\nFROM memobuild/busybox\nCOPY --from=slow /s /s\nCOPY --from=broken /b /b\n`,
    });
    const started = Date.now();
    const result = await remoteBuild(dir, machineWithBase(join(work, "client-spread-fail"), baseOci));
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/stage broken: the build failed on worker w[12]: .*exit code 7/s);
    expect(Date.now() - started).toBeLessThan(25_000); // it did not wait for the slow stage
    // The slow stage's job was cancelled, and the build's own job was never submitted.
    type Job = { state: string; created: number };
    const jobs = async () => (await api<{ jobs: Job[] }>("/v1/jobs")).jobs.filter((j) => j.created >= since);
    for (let i = 0; i < 100 && (await jobs()).some((j) => j.state === "running"); i++) await Bun.sleep(100);
    expect((await jobs()).map((j) => j.state).sort()).toEqual(["cancelled", "failed"]);
  }, 120_000);

  test("Ctrl-C on a build spread over workers cancels every job of it", async () => {
    const since = Date.now();
    const dir = writeProject(join(work, "spread-cancel"), {
      Dockerfile: `FROM memobuild/busybox AS a\nRUN sleep 60 && echo a-${since} > /a\nFROM memobuild/busybox AS b\nRUN sleep 60 && echo b-${since} > /b\nFROM memobuild/busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n`,
    });
    const client = Bun.spawn([memobuildBinary(), "build", dir, "--cache-dir", machineWithBase(join(work, "client-spread-cancel"), baseOci), "--builder", server.url, "--remote-token", CLIENT, "--progress", "plain"], { stdout: "ignore", stderr: "pipe" });
    type Job = { state: string; created: number };
    const jobs = async () => (await api<{ jobs: Job[] }>("/v1/jobs")).jobs.filter((j) => j.created >= since);
    for (let i = 0; i < 100 && (await jobs()).filter((j) => j.state === "running").length < 2; i++) await Bun.sleep(100);
    expect((await jobs()).map((j) => j.state)).toEqual(["running", "running"]);
    client.kill("SIGINT");
    expect(await client.exited).toBe(130);
    for (let i = 0; i < 100 && (await jobs()).some((j) => j.state === "running"); i++) await Bun.sleep(100);
    expect((await jobs()).map((j) => j.state)).toEqual(["cancelled", "cancelled"]);
  }, 120_000);

  test("provenance of a build run on a worker names the worker as the builder and by each step, and the base image", async () => {
    const client = machineWithBase(join(work, "client-provenance"), baseOci);
    const layout = join(work, "provenance-oci");
    const built = await remoteBuild(join(REPO_ROOT, "examples/hello"), client, "-t", "hello:attested", "--provenance", "mode=max", "-o", `type=oci,dest=${layout}`);
    expect(built.exitCode).toBe(0);
    const blob = (digest: string) => JSON.parse(readFileSync(join(layout, "blobs/sha256", digest.slice(7)), "utf8"));
    const attestation = JSON.parse(readFileSync(join(layout, "index.json"), "utf8")).manifests[1];
    const provenance = blob(blob(attestation.digest).layers[0].digest);
    expect(attestSchemaErrors("slsa", provenance)).toEqual([]);
    const worker = built.meta.steps[0].worker as string;
    expect(provenance.predicate.runDetails.builder.id).toBe(`https://memobuild.dev/builders/worker/${worker}`);
    const ran = provenance.predicate.runDetails.byproducts.filter((b: { annotations: { status: string } }) => b.annotations.status !== "skipped");
    expect(ran.every((b: { annotations: { worker?: string } }) => b.annotations.worker === worker)).toBe(true);
    expect(provenance.predicate.buildDefinition.resolvedDependencies.map((d: { name: string }) => d.name)).toEqual(["memobuild/busybox:latest"]);
    expect(provenance.predicate.buildDefinition.internalParameters.steps.map((s: { key: string }) => s.key)).toEqual(built.meta.steps.map((s: { key: string }) => s.key));
  }, 120_000);

  test("the next build of a project goes to the worker that holds its steps (affinity in /v1/jobs)", async () => {
    const dir = writeProject(join(work, "affinity"), { Dockerfile: "FROM memobuild/busybox\nCOPY a.txt /a\nRUN cat /a > /b\n", "a.txt": "1\n" });
    const client = machineWithBase(join(work, "client-affinity"), baseOci);
    const first = await remoteBuild(dir, client);
    expect(first.exitCode).toBe(0);
    const owner = first.meta.steps[0].worker as string;
    for (let i = 0; i < 2; i++) {
      const again = await remoteBuild(dir, client);
      expect(again.exitCode).toBe(0);
      expect(again.meta.steps[0].worker).toBe(owner);
    }
    const { jobs } = await api<{ jobs: { worker?: string; affinity?: number; hints: number }[] }>("/v1/jobs");
    expect(jobs[0]).toMatchObject({ worker: owner });
    expect(jobs[0].affinity).toBeGreaterThan(0);
  }, 120_000);

  test("a worker killed in the middle of a RUN loses the build to the other worker, and the build succeeds", async () => {
    const dir = writeProject(join(work, "killed"), { Dockerfile: `FROM memobuild/busybox\nRUN sleep 3 && echo survived-${Date.now()} > /s\n` });
    const client = machineWithBase(join(work, "client-killed"), baseOci);
    const building = remoteBuild(dir, client);
    let victim: string | undefined;
    for (let i = 0; i < 100 && !victim; i++) {
      await Bun.sleep(100);
      const { jobs } = await api<{ jobs: { state: string; worker?: string }[] }>("/v1/jobs");
      if (jobs[0]?.state === "running") victim = jobs[0].worker;
    }
    expect(victim).toBeDefined();
    await Bun.sleep(800); // inside the RUN
    workers.get(victim!)!.process.kill("SIGKILL");
    const result = await building;
    expect(result.stderr).toContain(`worker ${victim} stopped answering; the build goes to another worker`);
    expect({ exitCode: result.exitCode, stderr: result.exitCode ? result.stderr : "" }).toEqual({ exitCode: 0, stderr: "" });
    expect(result.meta.steps[0].worker).not.toBe(victim);
    startWorker(victim!); // for the tests after this one
  }, 120_000);

  test("Ctrl-C on the client cancels the build on its worker: no container of it is left running", async () => {
    const dir = writeProject(join(work, "cancelled"), { Dockerfile: `FROM memobuild/busybox\nRUN sleep 60 && echo never-${Date.now()} > /n\n` });
    const client = Bun.spawn([memobuildBinary(), "build", dir, "--cache-dir", machineWithBase(join(work, "client-cancelled"), baseOci), "--builder", server.url, "--remote-token", CLIENT, "--progress", "plain"], { stdout: "ignore", stderr: "pipe" });
    let worker: string | undefined;
    for (let i = 0; i < 100 && !worker; i++) {
      await Bun.sleep(100);
      const { jobs } = await api<{ jobs: { state: string; worker?: string }[] }>("/v1/jobs");
      if (jobs[0]?.state === "running") worker = jobs[0].worker;
    }
    expect(worker).toBeDefined();
    // The RUN's container is up: one of the worker's builds (a child of the worker) holds it.
    const containersOf = (parent: number) =>
      (existsSync("/run/crun") ? readdirSync("/run/crun") : []).filter((name) => {
        const pid = /^memobuild-(\d+)-/.exec(name)?.[1];
        return pid !== undefined && existsSync(`/proc/${pid}/status`) && readFileSync(`/proc/${pid}/status`, "utf8").includes(`\nPPid:\t${parent}\n`);
      });
    const workerPid = workers.get(worker!)!.process.pid;
    for (let i = 0; i < 100 && containersOf(workerPid).length === 0; i++) await Bun.sleep(100);
    const running = containersOf(workerPid);
    expect(running).toHaveLength(1);
    client.kill("SIGINT");
    expect(await client.exited).toBe(130);
    // The container itself is gone (killed and deleted), not only the build that started it.
    const left = () => running.filter((name) => existsSync(join("/run/crun", name)));
    for (let i = 0; i < 100 && left().length > 0; i++) await Bun.sleep(100);
    expect(left()).toEqual([]);
    // The job is marked cancelled when the worker reports back, a moment after its container is gone.
    const state = async () => (await api<{ jobs: { state: string }[] }>("/v1/jobs")).jobs[0].state;
    for (let i = 0; i < 100 && (await state()) !== "cancelled"; i++) await Bun.sleep(100);
    expect(await state()).toBe("cancelled");
    expect(workers.get(worker!)!.log()).toContain("cancelled by its submitter; stopping it");
  }, 120_000);

  test("a secret reaches the worker's RUN from the client for that build only, and is at rest nowhere", async () => {
    const secret = `s3cr3t-${Date.now()}-value`;
    const dir = writeProject(join(work, "secret"), { Dockerfile: "FROM memobuild/busybox\nRUN --mount=type=secret,id=token,required=true wc -c < /run/secrets/token > /len\n" });
    const client = machineWithBase(join(work, "client-secret"), baseOci);
    const out = join(work, "secret-out");
    const child = Bun.spawn([memobuildBinary(), "build", dir, "--cache-dir", client, "--builder", server.url, "--remote-token", CLIENT, "--secret", "id=token,env=MY_TOKEN", "-o", `type=local,dest=${out}`], {
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, MY_TOKEN: secret },
    });
    const [stderr, code] = await Promise.all([new Response(child.stderr).text(), child.exited]);
    expect(stderr).not.toContain(secret);
    expect(code).toBe(0);
    expect(readFileSync(join(out, "len"), "utf8").trim()).toBe(String(secret.length));
    // Nothing under the test's directory (the server's data, both workers' caches, the clients') holds it.
    const grep = Bun.spawnSync(["grep", "-rl", "--binary-files=text", secret, work], { stdout: "pipe" });
    expect(grep.stdout.toString()).toBe("");
    // A build that needs the secret and does not give it fails on the worker, naming it.
    const without = await remoteBuild(dir, client, "--no-cache");
    expect(without.exitCode).toBe(1);
    expect(without.stderr).toContain('secret \"token\" is required but was not given');
  }, 120_000);

  test("a --no-cache rebuild on a worker is recorded against the client's build: the hub links both builds", async () => {
    const dir = writeProject(join(work, "linked"), { Dockerfile: "FROM memobuild/busybox\nRUN cat /proc/sys/kernel/random/uuid > /id\n" });
    const reporting = ["--remote", server.url];
    expect((await remoteBuild(dir, machineWithBase(join(work, "client-linked-1"), baseOci), ...reporting)).exitCode).toBe(0);
    expect((await remoteBuild(dir, machineWithBase(join(work, "client-linked-2"), baseOci), "--no-cache", ...reporting)).exitCode).toBe(0);
    const { builds } = await api<{ builds: { id: string }[] }>("/v1/builds?per_page=2");
    // The other worker (another signer) makes it a conflict, the same one not reproducible: both name the builds.
    const [{ unreproducible }, { conflicts }] = await Promise.all([api<{ unreproducible: Linked[] }>("/v1/unreproducible"), api<{ conflicts: Linked[] }>("/v1/conflicts")]);
    const record = [...unreproducible, ...conflicts].find((r) => r.step?.includes("random/uuid"));
    expect(record).toMatchObject({ first: { build: builds[1].id }, second: { build: builds[0].id } });
  }, 120_000);

  test("--ssh reaches the worker's RUN from the client's agents (ssh-add -l in the container lists their keys); no key at rest", async () => {
    const key = (name: string) => {
      const file = join(work, name);
      expect(Bun.spawnSync(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", file]).exitCode).toBe(0);
      return { file, fingerprint: Bun.spawnSync(["ssh-keygen", "-l", "-f", file]).stdout.toString().split(" ")[1], body: readFileSync(file, "utf8").split("\n")[1] };
    };
    const held = key("agent-key");
    const deploy = key("deploy-key");
    // A real agent, as a user's: started by the test, the key added to it.
    const socket = join(work, "agent.sock");
    const agent = Bun.spawn(["ssh-agent", "-D", "-a", socket], { stdout: "ignore", stderr: "ignore" });
    try {
      for (let i = 0; i < 100 && !existsSync(socket); i++) await Bun.sleep(20);
      expect(Bun.spawnSync(["ssh-add", "-q", held.file], { env: { SSH_AUTH_SOCK: socket, PATH: process.env.PATH } }).exitCode).toBe(0);
      // The container gets OpenSSH's own ssh-add (with its loader and libraries) by a bind mount of the context.
      const dir = writeProject(join(work, "ssh"), {
        Dockerfile:
          "FROM memobuild/busybox\n" +
          `RUN --mount=type=bind,source=tools,target=/tools --mount=type=ssh,required=true --mount=type=ssh,id=deploy,target=/deploy.sock,required=true echo ${Date.now()} && ` +
          "/tools/ld.so --library-path /tools /tools/ssh-add -l > /keys && SSH_AUTH_SOCK=/deploy.sock /tools/ld.so --library-path /tools /tools/ssh-add -l >> /keys\n",
      });
      mkdirSync(join(dir, "tools"));
      const libraries = Bun.spawnSync(["ldd", "/usr/bin/ssh-add"]).stdout.toString().match(/\/\S+\.so[.\d]*/g)!;
      for (const library of libraries) copyFileSync(library, join(dir, "tools", library.includes("ld-linux") ? "ld.so" : basename(library)));
      copyFileSync("/usr/bin/ssh-add", join(dir, "tools/ssh-add"));
      const out = join(work, "ssh-out");
      const child = Bun.spawn([memobuildBinary(), "build", dir, "--cache-dir", machineWithBase(join(work, "client-ssh"), baseOci), "--builder", server.url, "--remote-token", CLIENT, "--ssh", "default", "--ssh", `deploy=${deploy.file}`, "-o", `type=local,dest=${out}`], {
        stdout: "pipe",
        stderr: "pipe",
        env: { ...process.env, SSH_AUTH_SOCK: socket },
      });
      const [stderr, code] = await Promise.all([new Response(child.stderr).text(), child.exited]);
      expect({ code, stderr: code ? stderr : "" }).toEqual({ code: 0, stderr: "" });
      const keys = readFileSync(join(out, "keys"), "utf8");
      expect(keys).toContain(`${held.fingerprint} agent-key (ED25519)`);
      expect(keys).toContain(`${deploy.fingerprint} deploy-key (ED25519)`);
      // Neither private key is on the server's or the workers' disks.
      for (const body of [held.body, deploy.body]) {
        const grep = Bun.spawnSync(["grep", "-rlF", "--binary-files=text", body, join(work, "server"), join(work, "cache-w1"), join(work, "cache-w2")], { stdout: "pipe" });
        expect(grep.stdout.toString()).toBe("");
      }
    } finally {
      agent.kill("SIGKILL");
    }
  }, 120_000);

  test("--build-context DIR, docker-image:// and oci-layout:// with --builder: the same image as a local build; a directory's files go up once", async () => {
    const docs = writeProject(join(work, "named-docs"), { "guide.txt": "read me\n" });
    writeFileSync(join(docs, "big.bin"), randomBytes(2 * 1024 * 1024));
    const dir = writeProject(join(work, "named"), {
      Dockerfile: "FROM base\nCOPY --from=docs guide.txt big.bin /docs/\nCOPY --from=layout /etc/passwd /layout-passwd\nRUN wc -c < /docs/big.bin > /size && cat /docs/guide.txt >> /size\nCOPY note.txt /note\n",
      "note.txt": "1\n",
    });
    const contexts = ["--build-context", `docs=${docs}`, "--build-context", "base=docker-image://memobuild/busybox:latest", "--build-context", `layout=oci-layout://${baseOci}:memobuild/busybox:latest`];
    const localMeta = join(work, "named-local.json");
    const local = runMemobuild(["build", dir, "--cache-dir", machineWithBase(join(work, "named-local"), baseOci), "--metadata-file", localMeta, "-q", ...contexts], { env: { SOURCE_DATE_EPOCH: "1700000000" } });
    expect(local.exitCode).toBe(0);
    const client = machineWithBase(join(work, "client-named"), baseOci);
    const out = join(work, "named-out");
    const remote = await remoteBuild(dir, client, ...contexts, "-o", `type=local,dest=${out}`);
    expect({ code: remote.exitCode, stderr: remote.exitCode ? remote.stderr : "" }).toEqual({ code: 0, stderr: "" });
    expect(remote.meta["containerimage.digest"]).toBe(JSON.parse(readFileSync(localMeta, "utf8"))["containerimage.digest"]);
    expect(readFileSync(join(out, "size"), "utf8")).toBe(`${2 * 1024 * 1024}\nread me\n`);
    expect(readFileSync(join(out, "layout-passwd"), "utf8")).toStartWith("root:x:0:0:");
    // Again with the main context changed: the named directory's 2 MiB are on the server already.
    const bytesIn = async () => Number(/^memobuild_bytes_in_total (\d+)/m.exec(await (await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${CLIENT}` } })).text())![1]);
    const before = await bytesIn();
    writeFileSync(join(dir, "note.txt"), "2\n");
    const again = await remoteBuild(dir, client, ...contexts);
    expect(again.exitCode).toBe(0);
    expect(again.meta.steps.find((s: { instruction: string }) => s.instruction.startsWith("RUN")).status).not.toBe("executed");
    expect((await bytesIn()) - before).toBeLessThan(256 * 1024);
  }, 120_000);

  test("the server keeps each worker's steps run and cached: its hit rate in /v1/workers and /metrics", async () => {
    type Counted = { name: string; steps: { executed: number; cachedLocal: number; cachedRemote: number }; hitRate?: number };
    const counted = async (name: string) => (await api<{ workers: Counted[] }>("/v1/workers")).workers.find((w) => w.name === name)!;
    const dir = writeProject(join(work, "hits"), { Dockerfile: `FROM memobuild/busybox\nCOPY a.txt /a\nRUN echo ${Date.now()} > /b\n`, "a.txt": "hits\n" });
    const client = machineWithBase(join(work, "client-hits"), baseOci);
    const first = await remoteBuild(dir, client);
    expect(first.exitCode).toBe(0);
    const worker = first.meta.steps[0].worker as string;
    const after1 = await counted(worker);
    const second = await remoteBuild(dir, client);
    expect(second.exitCode).toBe(0);
    expect(second.meta.steps[0].worker).toBe(worker); // affinity: the worker that holds it
    const after2 = await counted(worker);
    // The second build ran nothing: its two steps (COPY, RUN) came from the worker's own cache.
    expect(after2.steps.executed).toBe(after1.steps.executed);
    expect(after2.steps.cachedLocal - after1.steps.cachedLocal).toBe(2);
    const total = after2.steps.executed + after2.steps.cachedLocal + after2.steps.cachedRemote;
    expect(after2.hitRate).toBeCloseTo((after2.steps.cachedLocal + after2.steps.cachedRemote) / total, 6);
    const metrics = await (await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${CLIENT}` } })).text();
    expect(metrics).toContain(`memobuild_worker_steps{worker="${worker}",status="cached-local"} ${after2.steps.cachedLocal}`);
    expect(metrics).toMatch(new RegExp(`memobuild_worker_hit_ratio\\{worker="${worker}"\\} 0\\.\\d+`));
  }, 120_000);

  test("the build is reported to the builder's hub, each step with the worker that ran or reused it", async () => {
    const dir = writeProject(join(work, "hub"), { Dockerfile: `FROM memobuild/busybox\nRUN echo ${Date.now()} > /h\n` });
    const built = await remoteBuild(dir, machineWithBase(join(work, "client-hub"), baseOci), "--build-label", "suite=remote-hub");
    expect(built.exitCode).toBe(0);
    const worker = built.meta.steps[0].worker as string;
    const { builds } = await api<{ builds: { id: string }[] }>("/v1/builds?label=suite=remote-hub");
    expect(builds).toHaveLength(1);
    const { steps } = await api<{ steps: { name: string; state: string; worker?: string }[] }>(`/v1/builds/${builds[0].id}`);
    expect(steps.map((s) => s.worker)).toEqual([worker, worker]);
  }, 120_000);

  test("explain after a build on a worker: every step hits in the builder's cache and names the worker of the last build", async () => {
    const dir = writeProject(join(work, "explained"), { Dockerfile: `FROM memobuild/busybox\nCOPY a.txt /a\nRUN echo ${Date.now()} > /e\n`, "a.txt": "1\n" });
    const client = machineWithBase(join(work, "client-explained"), baseOci);
    const built = await remoteBuild(dir, client);
    expect(built.exitCode).toBe(0);
    const worker = built.meta.steps[0].worker as string;
    const explain = (...args: string[]) => runMemobuild(["explain", dir, "--cache-dir", client, "--builder", server.url, "--remote-token", CLIENT, ...args], { env: { SOURCE_DATE_EPOCH: "1700000000" } });
    const explained = JSON.parse(explain("--json").stdout) as { name: string; hit: boolean; worker?: string; configOnly: boolean }[];
    expect(explained.filter((e) => !e.configOnly).map((e) => [e.hit, e.worker])).toEqual([[true, worker], [true, worker]]);
    expect(explain().stdout).toContain(`hit   [stage-0 3/3] RUN echo`);
    expect(explain().stdout).toMatch(new RegExp(`RUN echo \\d+ > /e  \\(last build: worker ${worker}\\)`));
    // A file changed: the miss says which, and still which worker built the step last.
    writeFileSync(join(dir, "a.txt"), "2\n");
    const changed = JSON.parse(explain("--json").stdout) as { name: string; hit: boolean; worker?: string; reasons: string[] }[];
    const copy = changed.find((e) => e.name.includes("COPY"))!;
    expect(copy).toMatchObject({ hit: false, worker });
    expect(copy.reasons.join("\n")).toContain("a.txt (content)");
  }, 120_000);
});

test("a submitter's values cannot pass for flags of the worker's build (a target that looks like one is a stage name)", async () => {
  const dir = writeProject(join(work, "flaglike"), { Dockerfile: "FROM memobuild/busybox AS real\nRUN echo x > /x\n" });
  const result = await remoteBuild(dir, machineWithBase(join(work, "client-flaglike"), baseOci), "--target", "--allow=security.insecure");
  expect(result.exitCode).toBe(1);
  expect(result.stderr).toContain("--allow=security.insecure");
  expect(result.stderr).toMatch(/no stage|not a stage|target/i);
}, 60_000);
