/**
 * The build hub end to end: real builds (the compiled binary) report to a real `memobuild serve`,
 * and the history says what ran, what hit, why each miss happened, and what the cache saved.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { memobuildBinary, runMemobuildAsync } from "./support/binary.ts";
import { buildBaseImage, machineWithBase, writeProject } from "./support/base-image.ts";
import { startCacheServer } from "./support/server.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-hub-e2e-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const TOKEN = "hub-token-for-tests";
const baseOci = join(work, "base-oci");

beforeAll(() => buildBaseImage(work, baseOci), 120_000);

const machine = (name: string) => machineWithBase(join(work, `machine-${name}`), baseOci);
const project = (name: string, files: Record<string, string>) => writeProject(join(work, name), files);

interface Listed {
  id: string;
  result: string;
  executed: number;
  cached: number;
  savedMs: number;
  labels: Record<string, string>;
  ci?: { provider: string; branch?: string };
  image?: string;
  context?: string;
}
interface Detail extends Listed {
  steps: { id: string; state: string; durationMs?: number; savedMs?: number; reasons?: string[]; tail?: string[] }[];
}

const api = async <T>(url: string, path: string): Promise<T> => (await (await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as T;

test("builds report themselves: steps, the reason of every miss, and the time hits saved", async () => {
  const server = await startCacheServer(join(work, "data-a"), ["--token", TOKEN]);
  try {
    const dir = project("app", { Dockerfile: "FROM memobuild/busybox\nCOPY a.txt /a.txt\nRUN sleep 0.3 && cat /a.txt > /b.txt\n", "a.txt": "one\n" });
    const remote = ["--remote", server.url, "--remote-token", TOKEN, "--build-label", "team=web"];
    const env = { GITLAB_CI: "true", CI_COMMIT_REF_NAME: "feature-x", CI_COMMIT_SHA: "0123abcd" };
    const first = await runMemobuildAsync(["build", dir, "--cache-dir", machine("a"), ...remote], env);
    expect(first.exitCode).toBe(0);
    writeFileSync(join(dir, "a.txt"), "two\n");
    const second = await runMemobuildAsync(["build", dir, "--cache-dir", join(work, "machine-a"), ...remote], env);
    expect(second.exitCode).toBe(0);
    // Another machine: every step comes from the remote, and saves what it cost the first time.
    const third = await runMemobuildAsync(["build", dir, "--cache-dir", machine("b"), ...remote, "--remote-report", "on"]);
    expect(third.exitCode).toBe(0);
    expect(first.stderr + second.stderr + third.stderr).not.toContain("warning");

    const { builds, total } = await api<{ builds: Listed[]; total: number }>(server.url, "/v1/builds");
    expect(total).toBe(3);
    const [b3, b2, b1] = builds;
    expect(b1).toMatchObject({ result: "success", labels: { team: "web" }, ci: { provider: "gitlab", branch: "feature-x" } });
    expect(b1.image).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(b1.context).toMatch(/^[0-9a-f]{64}$/);
    expect(b2.context).not.toBe(b1.context);
    expect(b3).toMatchObject({ executed: 0, cached: 2 }); // COPY and RUN; the FROM does no work, so it counts neither way

    const detail2 = await api<Detail>(server.url, `/v1/builds/${b2.id}`);
    const copy = detail2.steps.find((s) => s.id.endsWith("/1"))!;
    expect(copy.state).toBe("executed");
    expect(copy.reasons!.join(" ")).toContain("a.txt (content)");
    const run = detail2.steps.find((s) => s.id.endsWith("/2"))!;
    expect(run.reasons!.join(" ")).toContain("its parent step changed");

    const detail3 = await api<Detail>(server.url, `/v1/builds/${b3.id}`);
    expect(detail3.steps.map((s) => s.state)).toEqual(["cached-remote", "cached-remote", "cached-remote"]);
    const runSaved = detail3.steps[2].savedMs!;
    expect(runSaved).toBeGreaterThanOrEqual(300); // the RUN's own duration on machine A, sleep included
    expect(b3.savedMs).toBeGreaterThanOrEqual(runSaved);
  } finally {
    await server.stop();
  }
}, 120_000);

test("a failed build is reported with the failed step's output; --remote-report=off reports nothing", async () => {
  const server = await startCacheServer(join(work, "data-b"), ["--token", TOKEN]);
  try {
    const dir = project("fails", { Dockerfile: "FROM memobuild/busybox\nRUN echo compiling && echo 'error: it broke' && exit 3\n" });
    const cache = machine("c");
    const failed = await runMemobuildAsync(["build", dir, "--cache-dir", cache, "--remote", server.url, "--remote-token", TOKEN]);
    expect(failed.exitCode).toBe(1); // a failed build exits 1, as buildx does; the RUN's code is in the message
    const off = await runMemobuildAsync(["build", dir, "--cache-dir", cache, "--remote", server.url, "--remote-token", TOKEN, "--remote-report", "off"]);
    expect(off.exitCode).toBe(1);
    const { builds } = await api<{ builds: Listed[] }>(server.url, "/v1/builds");
    expect(builds.length).toBe(1);
    const detail = await api<Detail & { error: string }>(server.url, `/v1/builds/${builds[0].id}`);
    expect(detail.result).toBe("failed");
    expect(detail.error).toContain("exit code 3");
    const step = detail.steps.find((s) => s.state === "failed")!;
    expect(step.tail).toContain("error: it broke");
  } finally {
    await server.stop();
  }
}, 60_000);

test("a build whose cache server stops mid-build finishes, with one warning", async () => {
  const server = await startCacheServer(join(work, "data-c"), ["--token", TOKEN]);
  const dir = project("slow", { Dockerfile: "FROM memobuild/busybox\nRUN sleep 2 && echo one > /1\nRUN echo two > /2\nRUN sleep 1 && echo three > /3\n" });
  const child = Bun.spawn([memobuildBinary(), "build", dir, "--cache-dir", machine("d"), "--remote", server.url, "--remote-token", TOKEN], { stdout: "pipe", stderr: "pipe" });
  const stderr = new Response(child.stderr).text();
  // Stop the server once the build is visibly under way there.
  const deadline = Date.now() + 30_000;
  while ((await api<{ total: number }>(server.url, "/v1/builds")).total === 0) {
    if (Date.now() > deadline) throw new Error("the build never reported");
    await Bun.sleep(50);
  }
  await server.stop("SIGKILL");
  expect(await child.exited).toBe(0);
  const warnings = (await stderr).split("\n").filter((line) => line.startsWith("warning"));
  expect(warnings.length).toBe(1);
  expect(warnings[0]).toContain("not answering");
}, 60_000);
