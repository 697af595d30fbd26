/**
 * `build --builder URL --platform …`, end to end: `memobuild serve`, a real `memobuild worker`
 * and clients. Each platform is one job; the worker runs another architecture's RUN under QEMU
 * as a local build does, and the client assembles the index a local build makes: under
 * SOURCE_DATE_EPOCH the same digests and the same step keys as a local build of the same
 * platforms. A platform the worker cannot emulate fails the job with a local build's error.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { memobuildBinary, runMemobuild } from "./support/binary.ts";
import { writeProject } from "./support/base-image.ts";
import { bothPlatforms, hostArch, multiArchBaseProject, otherArch, uname } from "./support/platforms.ts";
import { startCacheServer, type CacheServer } from "./support/server.ts";
import { spawnWorker, type WorkerProcess } from "./support/worker.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-builder-platforms-"));
const baseOci = join(work, "base-oci");
const both = bothPlatforms;
const TOKEN = "platforms-submitter";
const WORKER = "platforms-worker-token";
const EPOCH = { SOURCE_DATE_EPOCH: "1700000000" };
let server: CacheServer;
let worker: WorkerProcess;
let machines = 0;

beforeAll(async () => {
  const base = multiArchBaseProject(join(work, "base"));
  const built = runMemobuild(["build", base, "--platform", both, "--cache-dir", join(work, "base-cache"), "-t", "memobuild/busybox-multi", "-o", `type=oci,dest=${baseOci}`, "--progress", "plain"]);
  if (built.exitCode !== 0) throw new Error(built.stderr);
  server = await startCacheServer(join(work, "server"), ["--token", TOKEN, "--worker-token", WORKER]);
  worker = spawnWorker(server.url, WORKER, ["--name", "emulating", "--cache-dir", join(work, "worker-cache")]);
}, 300_000);

afterAll(async () => {
  worker?.process.kill("SIGKILL");
  await server?.stop();
  rmSync(work, { recursive: true, force: true });
});

/** A fresh client machine: a cache directory holding the multi-platform base (as its index). */
function machine(): string {
  const cache = join(work, `machine-${++machines}`);
  const imported = runMemobuild(["image", "import", `oci:${baseOci}:memobuild/busybox-multi:latest`, "--cache-dir", cache]);
  if (imported.exitCode !== 0) throw new Error(imported.stderr);
  return cache;
}

interface Built {
  stderr: string;
  exitCode: number;
  meta?: { "containerimage.digest": string; steps: { instruction: string; key: string; status: string; platform?: string }[] };
}

async function memobuild(args: string[]): Promise<Built> {
  const metadata = join(work, `meta-${Math.random().toString(36).slice(2)}.json`);
  const child = Bun.spawn([memobuildBinary(), ...args, "--metadata-file", metadata, "--progress", "plain"], { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...EPOCH } });
  const [stderr, exitCode] = await Promise.all([new Response(child.stderr).text(), child.exited]);
  return { stderr, exitCode, meta: existsSync(metadata) ? JSON.parse(readFileSync(metadata, "utf8")) : undefined };
}

const remoteBuild = (dir: string, ...args: string[]) => memobuild(["build", dir, "--cache-dir", machine(), "--builder", server.url, "--remote-token", TOKEN, ...args]);
const localBuild = (dir: string, ...args: string[]) => memobuild(["build", dir, "--cache-dir", machine(), ...args]);

/** Each step's platform and key, in order: what keys the build. */
const keys = (built: Built) => built.meta!.steps.map((s) => `${s.platform ?? ""} ${s.instruction} ${s.key}`);

/** A project whose RUNs record the machine they ran as, unique so that no earlier test's cache answers it. */
function project(name: string): string {
  return writeProject(join(work, name), {
    Dockerfile:
      `FROM --platform=$BUILDPLATFORM memobuild/busybox-multi AS tools\nRUN echo ${name}-${Date.now()} > /id && uname -m > /built-on\nARG TARGETARCH\nRUN echo $TARGETARCH > /built-for\n` +
      "FROM memobuild/busybox-multi\nRUN uname -m > /arch\nCOPY --from=tools /built-on /built-for /\n",
  });
}

describe("--builder with --platform", () => {
  test("several platforms: one job each, the other's RUN under QEMU on the worker; the same index, manifests and step keys as a local build", async () => {
    const dir = project("multi");
    const out = join(work, "multi-out");
    const layout = join(work, "multi-oci");
    const remote = await remoteBuild(dir, "--platform", both, "-t", "app-multi", "-o", `type=local,dest=${out}`, "-o", `type=oci,dest=${layout}`, "--annotation", "index:org.example.kind=multi", "--annotation", `manifest[linux/${otherArch}]:org.example.arch=${otherArch}`);
    expect(remote.stderr).not.toContain("error");
    expect(remote.exitCode).toBe(0);
    // The worker's steps are named with their platform, as a local build names them.
    expect(remote.stderr).toContain(`[linux/${otherArch} stage-1 2/3] RUN uname -m > /arch`);
    for (const arch of [hostArch, otherArch]) {
      const root = join(out, `linux_${arch}`);
      expect(readFileSync(join(root, "arch"), "utf8")).toBe(`${uname[arch]}\n`);
      expect(readFileSync(join(root, "built-on"), "utf8")).toBe(`${uname[hostArch]}\n`);
      expect(readFileSync(join(root, "built-for"), "utf8")).toBe(`${arch}\n`);
    }
    expect(worker.log()).toContain("done");
    const local = await localBuild(dir, "--platform", both, "-o", `type=oci,dest=${join(work, "multi-local-oci")}`, "--annotation", "index:org.example.kind=multi", "--annotation", `manifest[linux/${otherArch}]:org.example.arch=${otherArch}`);
    expect(local.exitCode).toBe(0);
    expect(remote.meta!["containerimage.digest"]).toBe(local.meta!["containerimage.digest"]);
    expect(keys(remote)).toEqual(keys(local));
    // Each platform keyed apart, the $BUILDPLATFORM stage's steps alike for both (the second from the cache).
    const arch = remote.meta!.steps.filter((s) => s.instruction.startsWith("RUN uname -m > /arch"));
    expect(arch.map((s) => s.platform)).toEqual([`linux/${hostArch}`, `linux/${otherArch}`]);
    expect(arch[0]!.key).not.toBe(arch[1]!.key);
    const tools = remote.meta!.steps.filter((s) => s.instruction.startsWith("RUN echo multi"));
    expect(tools[0]!.key).toBe(tools[1]!.key);
    expect(tools[1]!.status).not.toBe("executed");
  }, 300_000);

  test("one other platform alone: the worker builds it under QEMU, the same image as a local build", async () => {
    const dir = project("foreign");
    const out = join(work, "foreign-out");
    const remote = await remoteBuild(dir, "--platform", `linux/${otherArch}`, "-o", `type=local,dest=${out}`);
    expect(remote.exitCode).toBe(0);
    expect(readFileSync(join(out, "arch"), "utf8")).toBe(`${uname[otherArch]}\n`);
    expect(readFileSync(join(out, "built-for"), "utf8")).toBe(`${otherArch}\n`);
    const local = await localBuild(dir, "--platform", `linux/${otherArch}`);
    expect(local.exitCode).toBe(0);
    expect(remote.meta!["containerimage.digest"]).toBe(local.meta!["containerimage.digest"]);
    expect(keys(remote)).toEqual(keys(local));
  }, 300_000);

  test("a platform the worker cannot emulate fails the job with the error a local build gives", async () => {
    const dir = writeProject(join(work, "unemulated"), { Dockerfile: 'FROM scratch\nCOPY x /x\nRUN ["/x"]\n', x: "x\n" });
    const error = "RUN for linux/mips: MemoBuild knows no QEMU emulator for the architecture mips";
    const local = await localBuild(dir, "--platform", "linux/mips");
    expect(local.exitCode).toBe(1);
    expect(local.stderr).toContain(error);
    const remote = await remoteBuild(dir, "--platform", "linux/mips");
    expect(remote.exitCode).toBe(1);
    expect(remote.stderr).toContain("the build failed on worker emulating");
    expect(remote.stderr).toContain(error);
  }, 120_000);
});
