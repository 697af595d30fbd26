/**
 * The build flags a job carries to its worker (`build --builder`), end to end: `memobuild serve`,
 * a real `memobuild worker` and clients. Each flag has its effect inside the worker's RUN or on
 * the image, as in a local build with the same flags (same step keys, same image); entitlements
 * are the worker's to grant (`worker --allow`), to read-write tokens' builds only; --cache-from
 * and --cache-to stay refused (the worker would reach wherever the submitter names).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { memobuildBinary } from "./support/binary.ts";
import { buildBaseImage, machineWithBase, writeProject } from "./support/base-image.ts";
import { startCacheServer, type CacheServer } from "./support/server.ts";
import { spawnWorker, type WorkerProcess } from "./support/worker.ts";
import { buildRemotely } from "../src/builder/remote-build.ts";
import { LocalStore } from "../src/cache/store.ts";
import { loadImage } from "../src/image/layout.ts";
import { requireImage } from "../src/image/lookup.ts";
import { RemoteCache } from "../src/remote/client.ts";
import { JobsClient } from "../src/remote/jobs-client.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-builder-flags-"));
const baseOci = join(work, "base-oci");
const RW = "read-write-submitter";
const RO = "read-only-submitter";
const WORKER = "worker-token-0123";
/** A server whose worker grants both entitlements, and one whose worker grants none. */
let granting: CacheServer;
let plain: CacheServer;
const workers: WorkerProcess[] = [];
let machines = 0;

beforeAll(async () => {
  buildBaseImage(work, baseOci);
  const tokens = ["--token", RW, "--read-only-token", RO, "--worker-token", WORKER];
  granting = await startCacheServer(join(work, "server-granting"), tokens);
  plain = await startCacheServer(join(work, "server-plain"), tokens);
  workers.push(spawnWorker(granting.url, WORKER, ["--name", "granting", "--cache-dir", join(work, "cache-granting"), "--allow", "network.host", "--allow", "security.insecure"]));
  workers.push(spawnWorker(plain.url, WORKER, ["--name", "plain", "--cache-dir", join(work, "cache-plain")]));
}, 180_000);

afterAll(async () => {
  for (const worker of workers) worker.process.kill("SIGKILL");
  await granting?.stop();
  await plain?.stop();
  rmSync(work, { recursive: true, force: true });
});

/** A fresh client machine (a cache directory with the base image). */
const machine = () => machineWithBase(join(work, `machine-${++machines}`), baseOci);

interface Built {
  stderr: string;
  exitCode: number;
  meta?: { "containerimage.digest": string; steps: { id: string; key: string; status: string; instruction: string }[] };
}

async function memobuild(args: string[]): Promise<Built> {
  const metadata = join(work, `meta-${Math.random().toString(36).slice(2)}.json`);
  const child = Bun.spawn([memobuildBinary(), ...args, "--metadata-file", metadata, "--progress", "plain"], { stdout: "pipe", stderr: "pipe", env: { ...process.env, SOURCE_DATE_EPOCH: "1700000000" } });
  const [stderr, exitCode] = await Promise.all([new Response(child.stderr).text(), child.exited]);
  return { stderr, exitCode, meta: existsSync(metadata) ? JSON.parse(readFileSync(metadata, "utf8")) : undefined };
}

const remoteBuild = (dir: string, server: CacheServer, token: string, ...args: string[]) => memobuild(["build", dir, "--cache-dir", machine(), "--builder", server.url, "--remote-token", token, ...args]);
const localBuild = (dir: string, ...args: string[]) => memobuild(["build", dir, "--cache-dir", machine(), ...args]);

/** How many builds the server's hub has recorded. */
async function hubBuilds(server: CacheServer): Promise<number> {
  const answer = (await (await fetch(`${server.url}/v1/builds`, { headers: { authorization: `Bearer ${RW}` } })).json()) as { builds: unknown[] };
  return answer.builds.length;
}

/** The RUN steps' keys of a build, in order. */
const runKeys = (built: Built) => built.meta!.steps.filter((s) => s.instruction.startsWith("RUN")).map((s) => s.key);

/** A project whose RUN writes what it sees to /out, unique so that no cache of an earlier test answers it. */
function project(name: string, run: string): string {
  return writeProject(join(work, name), { Dockerfile: `FROM memobuild/busybox\nRUN echo ${name}-${Date.now()} > /id && ${run}\n` });
}

/** The built image's /out, written by -o type=local. */
const outOf = (dest: string) => readFileSync(join(dest, "out"), "utf8");

/**
 * What a job sent by hand needs, as a read-only token's submitter on the granting server sends it:
 * the client's own flag checks are skipped, so only the server and the worker stand in the way.
 */
function readOnlyJob(dir: string, store: LocalStore) {
  return {
    jobs: new JobsClient({ url: granting.url, token: RO }),
    remote: new RemoteCache({ url: granting.url, token: RO, warn: () => {} }),
    store,
    contextDir: dir,
    dockerfileText: readFileSync(join(dir, "Dockerfile"), "utf8"),
    dockerfilePath: "Dockerfile",
    dockerfileAbsolute: join(dir, "Dockerfile"),
    buildArgs: {},
    noCache: false,
    labels: {},
    progress: () => {},
  };
}

describe("build flags carried to the worker", () => {
  test("--add-host, --shm-size and --ulimit reach the worker's RUN: the same step keys and image as a local build", async () => {
    const dir = project("sandbox", "{ grep -w db /etc/hosts; df -k /dev/shm | tail -n 1; ulimit -n; } > /out");
    const flags = ["--add-host", "db:10.1.2.3", "--shm-size", "8m", "--ulimit", "nofile=777:777"];
    const remoteOut = join(work, "sandbox-remote");
    const client = machine();
    const remote = await memobuild(["build", dir, "--cache-dir", client, "--builder", granting.url, "--remote-token", RO, ...flags, "-o", `type=local,dest=${remoteOut}`]);
    expect(remote.stderr).not.toContain("error");
    expect(remote.exitCode).toBe(0);
    const seen = outOf(remoteOut).split("\n");
    expect(seen[0]).toMatch(/^10\.1\.2\.3\s+db$/);
    expect(seen[1]).toMatch(/^\S+\s+8192\s/); // /dev/shm is 8 MiB
    expect(seen[2]).toBe("777");
    const local = await localBuild(dir, ...flags);
    expect(local.exitCode).toBe(0);
    expect(runKeys(remote)).toEqual(runKeys(local));
    expect(remote.meta!["containerimage.digest"]).toBe(local.meta!["containerimage.digest"]);
    // The client keyed the build as the worker did (its hints to the server, explain): every step hits.
    const explain = Bun.spawnSync([memobuildBinary(), "explain", dir, "--cache-dir", client, "--builder", granting.url, "--remote-token", RO, ...flags, "--json"], { env: { ...process.env, SOURCE_DATE_EPOCH: "1700000000" } });
    const explained = JSON.parse(explain.stdout.toString()) as { hit: boolean; configOnly: boolean }[];
    expect(explained.filter((e) => !e.configOnly).map((e) => e.hit)).toEqual([true]);
    // And sent the server those keys: the worker that ran the build holds every one of them.
    expect((await memobuild(["build", dir, "--cache-dir", client, "--builder", granting.url, "--remote-token", RO, ...flags])).exitCode).toBe(0);
    const { jobs } = (await (await fetch(`${granting.url}/v1/jobs`, { headers: { authorization: `Bearer ${RO}` } })).json()) as { jobs: { affinity?: number; hints: number }[] };
    expect(jobs[0]!.hints).toBeGreaterThan(0);
    expect(jobs[0]!.affinity).toBe(jobs[0]!.hints);
  }, 120_000);

  test("--network none: the worker's RUN has only its loopback, keyed as a local build keys it", async () => {
    const dir = project("network-none", "awk 'NR>2 {print $1}' /proc/net/dev > /out");
    const remoteOut = join(work, "none-remote");
    const remote = await remoteBuild(dir, granting, RO, "--network", "none", "-o", `type=local,dest=${remoteOut}`);
    expect(remote.exitCode).toBe(0);
    expect(outOf(remoteOut)).toBe("lo:\n");
    const local = await localBuild(dir, "--network", "none");
    expect(runKeys(remote)).toEqual(runKeys(local));
    // The default network keys apart: the job did not run with it.
    const fallback = await localBuild(dir);
    expect(runKeys(remote)).not.toEqual(runKeys(fallback));
  }, 120_000);

  test("--network host with --allow network.host: granted by a worker started with it, to a read-write token's build only", async () => {
    const dir = project("network-host", "awk 'NR>2 {print $1}' /proc/net/dev > /out");
    const hostInterfaces = readFileSync("/proc/net/dev", "utf8").split("\n").slice(2).map((l) => l.trim().split(/\s+/)[0]).filter(Boolean);
    const out = join(work, "host-remote");
    const granted = await remoteBuild(dir, granting, RW, "--network", "host", "--allow", "network.host", "-o", `type=local,dest=${out}`);
    expect(granted.exitCode).toBe(0);
    expect(outOf(out).trim().split("\n").sort()).toEqual(hostInterfaces.sort());
    // The same rule as a local build: host needs the submitter's --allow (an error before anything is sent).
    const unasked = await remoteBuild(dir, granting, RW, "--network", "host");
    expect(unasked.exitCode).toBe(2);
    expect(unasked.stderr).toContain("--network host uses the host's network: add --allow network.host to let it");
    // A read-only token's build is never granted it: the server refuses the job.
    const readOnly = await remoteBuild(dir, granting, RO, "--network", "host", "--allow", "network.host");
    expect(readOnly.exitCode).not.toBe(0);
    expect(readOnly.stderr).toContain("--allow network.host: a read-only token's build is never granted an entitlement");
    // A worker not started with --allow network.host does not grant it, and says so.
    const notGranted = await remoteBuild(dir, plain, RW, "--network", "host", "--allow", "network.host");
    expect(notGranted.exitCode).not.toBe(0);
    expect(notGranted.stderr).toContain("--allow network.host: worker plain does not grant it (start it with memobuild worker --allow network.host)");
  }, 120_000);

  test("RUN --security=insecure with --allow security.insecure runs privileged on a worker that grants it, as locally", async () => {
    const dir = writeProject(join(work, "insecure"), { Dockerfile: `FROM memobuild/busybox\nRUN --security=insecure echo ${Date.now()} > /id && grep CapEff /proc/self/status > /out\n` });
    const out = join(work, "insecure-remote");
    const remote = await remoteBuild(dir, granting, RW, "--allow", "security.insecure", "-o", `type=local,dest=${out}`);
    expect(remote.exitCode).toBe(0);
    const localOut = join(work, "insecure-local");
    const local = await localBuild(dir, "--allow", "security.insecure", "-o", `type=local,dest=${localOut}`);
    expect(local.exitCode).toBe(0);
    expect(outOf(out)).toBe(outOf(localOut));
    // Without the submitter's --allow the worker's build refuses it, as a local build does.
    const unasked = await remoteBuild(dir, granting, RW);
    expect(unasked.exitCode).not.toBe(0);
    expect(unasked.stderr).toContain("run the build with --allow security.insecure to let it");
    const readOnly = await remoteBuild(dir, granting, RO, "--allow", "security.insecure");
    expect(readOnly.exitCode).not.toBe(0);
    expect(readOnly.stderr).toContain("--allow security.insecure: a read-only token's build is never granted an entitlement");
  }, 120_000);

  test("a read-only token's build may not raise --ulimit rtprio, rttime, memlock or nice on the shared worker; a read-write token's may", async () => {
    const dir = project("ulimit-policy", "grep -i 'realtime priority' /proc/self/limits > /out");
    // The attack: a pull request's RUN with real-time scheduling (it can starve the worker) or pinned memory.
    for (const spec of ["rtprio=99", "memlock=-1"]) {
      const readOnly = await remoteBuild(dir, granting, RO, "--ulimit", spec);
      expect(readOnly.exitCode).not.toBe(0);
      expect(readOnly.stderr).toContain(`--ulimit ${spec}: a read-only token's build may set only limits that bound its own RUNs (core, cpu`);
    }
    const out = join(work, "ulimit-policy-remote");
    // (0: raising it needs a privilege this test's machine may lack; the worker takes the limit all the same.)
    const trusted = await remoteBuild(dir, granting, RW, "--ulimit", "rtprio=0", "-o", `type=local,dest=${out}`);
    expect(trusted.exitCode).toBe(0);
    expect(outOf(out)).toMatch(/^Max realtime priority\s+0\s+0\s/);
  }, 120_000);

  test("--add-host NAME:host-gateway reaches the worker's loopback, so it is asked for and granted as network.host", async () => {
    const dir = project("gateway", "grep gw /etc/hosts > /out");
    const before = await hubBuilds(granting);
    const unasked = await remoteBuild(dir, granting, RW, "--add-host", "gw:host-gateway");
    expect(unasked.exitCode).toBe(2);
    expect(unasked.stderr).toContain("--add-host NAME:host-gateway on a remote builder reaches the worker's own loopback: add --allow network.host");
    expect(await hubBuilds(granting)).toBe(before); // a usage error, before anything is sent
    const readOnly = await remoteBuild(dir, granting, RO, "--add-host", "gw:host-gateway", "--allow", "network.host");
    expect(readOnly.exitCode).not.toBe(0);
    expect(readOnly.stderr).toContain("never granted an entitlement");
    const out = join(work, "gateway-remote");
    const granted = await remoteBuild(dir, granting, RW, "--add-host", "gw:host-gateway", "--allow", "network.host", "-o", `type=local,dest=${out}`);
    expect(granted.exitCode).toBe(0);
    expect(outOf(out)).toMatch(/\sgw\n$/);
  }, 120_000);

  test("a job sent by hand with --add-host gw:[host-gateway] (brackets, as for IPv6) is refused too: no read-only token's RUN reaches the worker's loopback", async () => {
    // What only the worker's machine serves, on its loopback.
    const secret = `loopback-only-${Date.now()}`;
    const service = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response(secret) });
    const dir = project("gateway-bracketed", `{ wget -q -O - http://gw:${service.port}/ || echo unreachable; } > /out`);
    const store = LocalStore.open(machine());
    try {
      // The client's own check (build --add-host) is skipped: the job goes up as a hostile submitter would send it.
      const sent = buildRemotely({
        ...readOnlyJob(dir, store),
        asked: { allow: [], sandbox: { addHost: ["gw:[host-gateway]"], ulimit: [] }, noCacheFilter: [], pull: false, annotations: {} },
      });
      await expect(sent).rejects.toThrow("--add-host NAME:host-gateway reaches the worker's loopback: the job must ask for --allow network.host");
    } finally {
      store.close();
      service.stop(true);
    }
  }, 120_000);

  test("--no-cache-filter STAGE runs that stage's steps again on the worker; the other stage comes from the cache", async () => {
    const unique = Date.now();
    const dir = writeProject(join(work, "filter"), { Dockerfile: `FROM memobuild/busybox AS a\nRUN echo a-${unique} > /a\nFROM memobuild/busybox\nCOPY --from=a /a /a\nRUN echo b-${unique} > /b\n` });
    const first = await remoteBuild(dir, granting, RO);
    expect(first.exitCode).toBe(0);
    const second = await remoteBuild(dir, granting, RO, "--no-cache-filter", "a");
    expect(second.exitCode).toBe(0);
    const status = (built: Built, text: string) => built.meta!.steps.find((s) => s.instruction.includes(text))!.status;
    expect(status(second, `a-${unique}`)).toBe("executed");
    expect(status(second, `b-${unique}`)).not.toBe("executed");
    expect(runKeys(second)).toEqual(runKeys(first));
  }, 120_000);

  test("--annotation is on the manifest the worker built: the same manifest as a local build's", async () => {
    const dir = project("annotated", "true");
    const layout = join(work, "annotated-oci");
    const remote = await remoteBuild(dir, granting, RO, "--annotation", "org.example.team=builders", "-o", `type=oci,dest=${layout}`);
    expect(remote.exitCode).toBe(0);
    const index = JSON.parse(readFileSync(join(layout, "index.json"), "utf8")) as { manifests: { digest: string }[] };
    const manifest = JSON.parse(readFileSync(join(layout, "blobs/sha256", index.manifests[0]!.digest.slice("sha256:".length)), "utf8"));
    expect(manifest.annotations?.["org.example.team"]).toBe("builders");
    const local = await localBuild(dir, "--annotation", "org.example.team=builders", "-o", `type=oci,dest=${join(work, "annotated-local")}`);
    expect(remote.meta!["containerimage.digest"]).toBe(local.meta!["containerimage.digest"]);
  }, 120_000);

  test("--cache-from and --cache-to stay refused with a reason, before anything is sent", async () => {
    const dir = project("cache-flags", "true");
    const before = await hubBuilds(granting);
    const result = await remoteBuild(dir, granting, RW, "--cache-from", "type=local,src=/etc", "--cache-to", "type=registry,ref=10.0.0.1/x:cache");
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toBe("memobuild: --builder: --cache-from (the worker would read a build cache from wherever the submitter names: its own disk, any host it reaches); --cache-to (the worker would write a build cache wherever the submitter names): not with a remote builder\n");
    // Nothing sent: no build on the builder's hub (it was reported there as a failed build), and
    // the cache named was not opened (it warned that /etc holds no build cache).
    expect(await hubBuilds(granting)).toBe(before);
  }, 60_000);
});

describe("ADD from a URL on a worker", () => {
  // What only the worker's machine serves, on its loopback (the RUN's network never reaches it).
  const secret = `loopback-only-${Date.now()}\n`;
  let service: ReturnType<typeof Bun.serve>;
  beforeAll(() => {
    service = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response(secret) });
  });
  afterAll(() => service.stop(true));

  test("never reaches the worker's loopback unless the job was granted network.host; a local build's ADD still may", async () => {
    // The attack: a read-only token's job ADDs the loopback service and gets its answer back in the image.
    for (const host of ["127.0.0.1", "localhost"]) {
      const address = `http://${host}:${service.port}/secret.txt`;
      const dir = writeProject(join(work, `add-loopback-${host}`), { Dockerfile: `FROM memobuild/busybox\nADD ${address} /loot-${Date.now()}\n` });
      const refused = await remoteBuild(dir, granting, RO, "-o", `type=local,dest=${join(work, `add-loopback-${host}-out`)}`);
      expect(refused.exitCode).not.toBe(0);
      expect(refused.stderr).toContain(`Dockerfile:2:1: ADD ${address}`);
      expect(refused.stderr).toContain(`ADD ${address}: ${host}:${service.port}${host === "localhost" ? " (127.0.0.1)" : ""} is on this worker's loopback, which a job reaches only with network.host granted`);
      expect(existsSync(join(work, `add-loopback-${host}-out`))).toBe(false);
    }
    const dir = writeProject(join(work, "add-loopback-granted"), { Dockerfile: `FROM memobuild/busybox\nADD http://127.0.0.1:${service.port}/secret.txt /loot\n` });
    // A read-write token's job granted network.host may, as its RUN may reach the loopback then.
    const out = join(work, "add-loopback-granted-out");
    const granted = await remoteBuild(dir, granting, RW, "--allow", "network.host", "-o", `type=local,dest=${out}`);
    expect(granted.exitCode).toBe(0);
    expect(readFileSync(join(out, "loot"), "utf8")).toBe(secret);
    // Not granted (the worker does not give it): refused as a read-only token's job is.
    const plainWorker = await remoteBuild(dir, plain, RW);
    expect(plainWorker.exitCode).not.toBe(0);
    expect(plainWorker.stderr).toContain("is on this worker's loopback");
    // A local build fetches from its user's own network, loopback included, as BuildKit's daemon does.
    const local = join(work, "add-loopback-local");
    expect((await localBuild(dir, "-o", `type=local,dest=${local}`)).exitCode).toBe(0);
    expect(readFileSync(join(local, "loot"), "utf8")).toBe(secret);
  }, 180_000);
});

describe("--pull with --builder", () => {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const registry = `127.0.0.1:${port}`;
  let server: ReturnType<typeof Bun.spawn> | undefined;

  beforeAll(async () => {
    const config = join(work, "registry.yml");
    writeFileSync(config, `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${join(work, "registry")}\nhttp:\n  addr: ${registry}\n`);
    server = Bun.spawn(["docker-registry", "serve", config], { stdout: "ignore", stderr: "ignore" });
    for (let i = 0; i < 100 && !(await fetch(`http://${registry}/v2/`).then(() => true, () => false)); i++) await Bun.sleep(50);
  }, 30_000);

  afterAll(() => server?.kill("SIGKILL"));

  test("the worker looks the base image up in its registry instead of taking the client's copy", async () => {
    const base = `${registry}/base:1`;
    const pushed = writeProject(join(work, "pull-registry"), { Dockerfile: "FROM memobuild/busybox\nRUN echo registry > /marker\n" });
    expect((await memobuild(["build", pushed, "--cache-dir", machine(), "-t", base, "--push"])).exitCode).toBe(0);
    // The client's store has another image under the same name.
    const client = machine();
    const stale = writeProject(join(work, "pull-stale"), { Dockerfile: "FROM memobuild/busybox\nRUN echo client > /marker\n" });
    expect((await memobuild(["build", stale, "--cache-dir", client, "-t", base])).exitCode).toBe(0);
    const dir = writeProject(join(work, "pull"), { Dockerfile: `FROM ${base}\nRUN cat /marker > /out\n` });
    const build = async (...args: string[]) => {
      const out = join(work, `pull-${Math.random().toString(36).slice(2)}`);
      const built = await memobuild(["build", dir, "--cache-dir", client, "--builder", granting.url, "--remote-token", RO, "-o", `type=local,dest=${out}`, ...args]);
      expect(built.exitCode).toBe(0);
      return outOf(out);
    };
    expect(await build()).toBe("client\n");
    expect(await build("--pull")).toBe("registry\n");
  }, 180_000);
});

describe("a base image's reference sent by hand", () => {
  const port = 20000 + Math.floor(Math.random() * 20000);
  let daemon: ReturnType<typeof Bun.spawn> | undefined;

  beforeAll(async () => {
    // A repository only the worker's machine reaches (its loopback): what a hostile job wants.
    const repo = join(work, "git", "secret");
    mkdirSync(repo, { recursive: true });
    writeFileSync(join(repo, "secret.txt"), "the worker's private repository\n");
    const git = (...args: string[]) => expect(Bun.spawnSync(["git", "-C", repo, "-c", "user.name=t", "-c", "user.email=t@example.com", ...args], { stderr: "pipe" }).exitCode).toBe(0);
    git("init", "-q", "-b", "main");
    git("add", "-A");
    git("commit", "-qm", "secret");
    daemon = Bun.spawn(["git", "daemon", `--base-path=${join(work, "git")}`, "--export-all", "--reuseaddr", "--listen=127.0.0.1", `--port=${port}`, join(work, "git")], { stdout: "ignore", stderr: "ignore" });
    await Bun.sleep(500);
  }, 30_000);

  afterAll(async () => {
    daemon?.kill();
    await daemon?.exited;
  });

  test("cannot carry an '=': the worker would read the rest of its --build-context flag as a git URL and fetch it itself", async () => {
    const dir = writeProject(join(work, "ref-injection"), { Dockerfile: `FROM memobuild/busybox\nCOPY --from=x /secret.txt /loot-${Date.now()}\n` });
    const store = LocalStore.open(machine());
    try {
      const base = loadImage(store, requireImage(store, "memobuild/busybox").manifestDigest);
      // A read-only token's job whose base image is named "x=git://…#main::": the worker would pass
      // --build-context=x=git://…#main::=oci-layout://DIR, a git context x of the whole repository.
      const sent = buildRemotely({
        ...readOnlyJob(dir, store),
        namedContexts: new Map([[`x=git://127.0.0.1:${port}/secret#main::`, { kind: "image", image: base, digest: base.manifestDigest }]]),
      });
      await expect(sent).rejects.toThrow(`images.x=git://127.0.0.1:${port}/secret#main::: expected a reference`);
    } finally {
      store.close();
    }
  }, 120_000);
});
