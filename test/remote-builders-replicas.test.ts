/**
 * Remote execution across replicas: two `memobuild serve` processes on one PostgreSQL (--db) and
 * one S3 bucket (--blobs), two `memobuild worker` processes that talk only to replica B, and
 * clients that build with `--builder` replica A. The queue, its wake-ups, and the secret and ssh
 * agent relays all have to cross from one replica to the other through the database. Real
 * engines (test/support/engines.ts), the real binary, loopback only.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { REPO_ROOT, memobuildBinary, runMemobuild } from "./support/binary.ts";
import { buildBaseImage, machineWithBase, writeProject } from "./support/base-image.ts";
import { postgres, s3, startPostgres } from "./support/engines.ts";
import { startCacheServer, type CacheServer } from "./support/server.ts";

await Promise.all([startPostgres(), s3()]);

const work = mkdtempSync(join(tmpdir(), "memobuild-builders-replicas-"));
const baseOci = join(work, "base-oci");
const CLIENT = "replica-submitter";
const WORKER = "replica-worker-token";
let db = "";
let a: CacheServer;
let b: CacheServer;
const workers = new Map<string, ReturnType<typeof Bun.spawn>>();

function startWorker(name: string) {
  const key = join(work, `${name}.key`);
  if (!existsSync(key)) runMemobuild(["key", "generate", "--out", key]);
  const child = Bun.spawn([memobuildBinary(), "worker", "--server", b.url, "--token", WORKER, "--name", name, "--cache-dir", join(work, `cache-${name}`), "--sign-key", key], { stdout: "ignore", stderr: "ignore" });
  workers.set(name, child);
}

beforeAll(async () => {
  buildBaseImage(work, baseOci);
  db = await postgres();
  const { url: blobs, env } = (await s3()).blobs();
  const args = ["--db", db, "--blobs", blobs, "--read-only-token", CLIENT, "--worker-token", WORKER, "--job-lease", "3"];
  a = await startCacheServer(join(work, "replica-a"), args, env);
  b = await startCacheServer(join(work, "replica-b"), args, env);
  startWorker("w1");
  startWorker("w2");
}, 180_000);

afterAll(async () => {
  for (const worker of workers.values()) worker.kill("SIGKILL");
  await Promise.all([a?.stop("SIGKILL"), b?.stop("SIGKILL")]);
  rmSync(work, { recursive: true, force: true });
});

const api = async <T>(server: CacheServer, path: string): Promise<T> => (await (await fetch(`${server.url}${path}`, { headers: { authorization: `Bearer ${CLIENT}` } })).json()) as T;

async function buildThroughA(dir: string, cache: string, ...args: string[]) {
  const metadata = join(work, `meta-${Math.random().toString(36).slice(2)}.json`);
  const child = Bun.spawn([memobuildBinary(), "build", dir, "--cache-dir", cache, "--builder", a.url, "--remote-token", CLIENT, "--metadata-file", metadata, "--progress", "plain", ...args], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, SOURCE_DATE_EPOCH: "1700000000" },
  });
  const [stderr, exitCode] = await Promise.all([new Response(child.stderr).text(), child.exited]);
  return { stderr, exitCode, meta: existsSync(metadata) ? JSON.parse(readFileSync(metadata, "utf8")) : undefined };
}

test("a build submitted to replica A runs on a worker of replica B and gives the image a local build gives", async () => {
  const local = runMemobuild(["build", join(REPO_ROOT, "examples/hello"), "--cache-dir", machineWithBase(join(work, "local"), baseOci), "--metadata-file", join(work, "local.json"), "-q"], { env: { SOURCE_DATE_EPOCH: "1700000000" } });
  expect(local.exitCode).toBe(0);
  const client = machineWithBase(join(work, "client"), baseOci);
  const remote = await buildThroughA(join(REPO_ROOT, "examples/hello"), client, "-t", "hello:replicas");
  expect({ exitCode: remote.exitCode, stderr: remote.exitCode ? remote.stderr : "" }).toEqual({ exitCode: 0, stderr: "" });
  expect(remote.meta["containerimage.digest"]).toBe(JSON.parse(readFileSync(join(work, "local.json"), "utf8"))["containerimage.digest"]);
  expect(["w1", "w2"]).toContain(remote.meta.steps[0].worker);
  expect(runMemobuild(["run", "hello:replicas", "--cache-dir", client, "--", "replicas"]).stdout).toBe("hello, replicas!\n");
  // Both replicas show the same queue and the same workers.
  const [jobsA, jobsB] = [await api<{ jobs: { id: string; state: string }[] }>(a, "/v1/jobs"), await api<{ jobs: { id: string; state: string }[] }>(b, "/v1/jobs")];
  expect(jobsA.jobs[0]).toMatchObject({ state: "succeeded" });
  expect(jobsB.jobs.map((j) => j.id)).toEqual(jobsA.jobs.map((j) => j.id));
  expect((await api<{ workers: { name: string }[] }>(a, "/v1/workers")).workers.map((w) => w.name)).toEqual(["w1", "w2"]);
}, 180_000);

test("the next build of a project, submitted to replica A, goes to the worker of replica B that holds its steps (affinity in /v1/jobs)", async () => {
  const dir = writeProject(join(work, "affinity"), { Dockerfile: `FROM memobuild/busybox\nCOPY a.txt /a\nRUN cat /a > /b-${Date.now()}\n`, "a.txt": "1\n" });
  const client = machineWithBase(join(work, "client-affinity"), baseOci);
  const first = await buildThroughA(dir, client);
  expect({ exitCode: first.exitCode, stderr: first.exitCode ? first.stderr : "" }).toEqual({ exitCode: 0, stderr: "" });
  const owner = first.meta.steps[0].worker as string;
  for (let i = 0; i < 2; i++) {
    const again = await buildThroughA(dir, client);
    expect(again.exitCode).toBe(0);
    expect(again.meta.steps[0].worker).toBe(owner);
  }
  const { jobs } = await api<{ jobs: { worker?: string; affinity?: number }[] }>(a, "/v1/jobs");
  expect(jobs[0]).toMatchObject({ worker: owner });
  expect(jobs[0].affinity).toBeGreaterThan(0);
}, 180_000);

test("a worker killed with -9 in the middle of a RUN loses the build to the other worker, and the build succeeds", async () => {
  const dir = writeProject(join(work, "killed"), { Dockerfile: `FROM memobuild/busybox\nRUN sleep 3 && echo survived-${Date.now()} > /s\n` });
  const building = buildThroughA(dir, machineWithBase(join(work, "client-killed"), baseOci));
  let victim: string | undefined;
  for (let i = 0; i < 150 && !victim; i++) {
    await Bun.sleep(100);
    const { jobs } = await api<{ jobs: { state: string; worker?: string }[] }>(a, "/v1/jobs");
    if (jobs[0]?.state === "running") victim = jobs[0].worker;
  }
  expect(victim).toBeDefined();
  await Bun.sleep(800); // inside the RUN
  workers.get(victim!)!.kill("SIGKILL");
  const result = await building;
  expect(result.stderr).toContain(`worker ${victim} stopped answering; the build goes to another worker`);
  expect({ exitCode: result.exitCode, stderr: result.exitCode ? result.stderr : "" }).toEqual({ exitCode: 0, stderr: "" });
  expect(result.meta.steps[0].worker).not.toBe(victim);
  expect((await api<{ jobs: { attempts: number }[] }>(b, "/v1/jobs")).jobs[0].attempts).toBe(2);
  startWorker(victim!); // for the tests after this one
}, 180_000);

test("a secret given to replica A reaches the RUN on a worker of replica B, and is at rest nowhere: not the database's files either", async () => {
  const secret = `r3pl1c4-${Date.now()}-value`;
  const dir = writeProject(join(work, "secret"), { Dockerfile: "FROM memobuild/busybox\nRUN --mount=type=secret,id=token,required=true wc -c < /run/secrets/token > /len\n" });
  const out = join(work, "secret-out");
  const child = Bun.spawn([memobuildBinary(), "build", dir, "--cache-dir", machineWithBase(join(work, "client-secret"), baseOci), "--builder", a.url, "--remote-token", CLIENT, "--secret", "id=token,env=MY_TOKEN", "-o", `type=local,dest=${out}`], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, MY_TOKEN: secret },
  });
  const [stderr, code] = await Promise.all([new Response(child.stderr).text(), child.exited]);
  expect({ code, stderr: code ? stderr : "" }).toEqual({ code: 0, stderr: "" });
  expect(readFileSync(join(out, "len"), "utf8").trim()).toBe(String(secret.length));
  // Whatever PostgreSQL holds, written out now: its tables, its WAL, its notification queue.
  const sql = new Bun.SQL(db);
  let dataDirectory: string;
  try {
    await sql`CHECKPOINT`;
    dataDirectory = (await sql`SHOW data_directory`)[0].data_directory;
    expect(await sql`SELECT * FROM job_secret_asks`).toEqual([]);
  } finally {
    await sql.close();
  }
  for (const where of [work, dataDirectory]) {
    const grep = Bun.spawnSync(["grep", "-rl", "--binary-files=text", secret, where], { stdout: "pipe" });
    expect({ where, found: grep.stdout.toString() }).toEqual({ where, found: "" });
  }
}, 180_000);

test("--ssh given to replica A answers the RUN on a worker of replica B; its messages are in the database's files only sealed", async () => {
  const comment = `replica-agent-key-${Date.now()}`;
  const keyFile = join(work, "agent-key");
  expect(Bun.spawnSync(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", keyFile]).exitCode).toBe(0);
  const fingerprint = Bun.spawnSync(["ssh-keygen", "-l", "-f", keyFile]).stdout.toString().split(" ")[1];
  const socket = join(work, "agent.sock");
  const agent = Bun.spawn(["ssh-agent", "-D", "-a", socket], { stdout: "ignore", stderr: "ignore" });
  try {
    for (let i = 0; i < 100 && !existsSync(socket); i++) await Bun.sleep(20);
    expect(Bun.spawnSync(["ssh-add", "-q", keyFile], { env: { SSH_AUTH_SOCK: socket, PATH: process.env.PATH } }).exitCode).toBe(0);
    // OpenSSH's own ssh-add (with its loader and libraries) reaches the container by a bind mount of the context.
    const dir = writeProject(join(work, "ssh"), {
      Dockerfile: `FROM memobuild/busybox\nRUN --mount=type=bind,source=tools,target=/tools --mount=type=ssh,required=true echo ${Date.now()} && /tools/ld.so --library-path /tools /tools/ssh-add -l > /keys\n`,
    });
    mkdirSync(join(dir, "tools"));
    const libraries = Bun.spawnSync(["ldd", "/usr/bin/ssh-add"]).stdout.toString().match(/\/\S+\.so[.\d]*/g)!;
    for (const library of libraries) copyFileSync(library, join(dir, "tools", library.includes("ld-linux") ? "ld.so" : basename(library)));
    copyFileSync("/usr/bin/ssh-add", join(dir, "tools/ssh-add"));
    const out = join(work, "ssh-out");
    const child = Bun.spawn([memobuildBinary(), "build", dir, "--cache-dir", machineWithBase(join(work, "client-ssh"), baseOci), "--builder", a.url, "--remote-token", CLIENT, "--ssh", "default", "-o", `type=local,dest=${out}`], {
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, SSH_AUTH_SOCK: socket },
    });
    const [stderr, code] = await Promise.all([new Response(child.stderr).text(), child.exited]);
    expect({ code, stderr: code ? stderr : "" }).toEqual({ code: 0, stderr: "" });
    expect(readFileSync(join(out, "keys"), "utf8")).toContain(`${fingerprint} ${comment} (ED25519)`);
    // The agent's answer (it names the key's comment) crossed the database: its files never held it in the clear.
    const sql = new Bun.SQL(db);
    let dataDirectory: string;
    try {
      await sql`CHECKPOINT`;
      dataDirectory = (await sql`SHOW data_directory`)[0].data_directory;
      expect(await sql`SELECT * FROM job_agent_asks`).toEqual([]);
    } finally {
      await sql.close();
    }
    const grep = Bun.spawnSync(["grep", "-rl", "--binary-files=text", comment, dataDirectory], { stdout: "pipe" });
    expect(grep.stdout.toString()).toBe("");
  } finally {
    agent.kill("SIGKILL");
  }
}, 180_000);
