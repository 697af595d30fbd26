/**
 * The build hub end to end: real builds (the compiled binary) report to a real `memobuild serve`,
 * and the history says what ran, what hit, why each miss happened, and what the cache saved.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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

/** Runs git in `dir` as a test's own tool (the builds under test never run git). */
function git(dir: string, ...args: string[]): string {
  const run = Bun.spawnSync(["git", "-C", dir, "-c", "user.email=t@example.com", "-c", "user.name=t", ...args], { env: { ...process.env, GIT_CONFIG_GLOBAL: "/dev/null" } });
  if (run.exitCode !== 0) throw new Error(`git ${args.join(" ")}: ${run.stderr.toString()}`);
  return run.stdout.toString().trim();
}

interface Who extends Detail {
  project?: string;
  git?: { repository?: string; branch?: string; commit?: string; dirty?: boolean };
  user?: string;
  tags?: string[];
  target?: string;
  command?: string[];
  tokenName?: string;
  hitRate?: number;
  failedStep?: { number: number; name: string; output?: string[] };
  ci?: { provider: string; branch?: string; url?: string };
}

test("who built what: the project and its git checkout (branch, commit, dirty), the user, tags, target, a masked command line, the token's name; CI runs link their page", async () => {
  const tokens = join(work, "tokens");
  writeFileSync(tokens, `${TOKEN} rw name=ci-bot\n`);
  const server = await startCacheServer(join(work, "data-who"), ["--token-file", tokens]);
  try {
    const dir = project("who", {
      Dockerfile: "FROM memobuild/busybox AS app\nCOPY a.txt /a.txt\nRUN --mount=type=secret,id=npm cat /run/secrets/npm > /dev/null\nFROM app AS test\nRUN true\n",
      "a.txt": "one\n",
    });
    git(dir, "init", "-q", "-b", "feature/login");
    git(dir, "add", ".");
    git(dir, "commit", "-qm", "first");
    git(dir, "remote", "add", "origin", "https://bot:ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/acme/widget.git");
    const commit = git(dir, "rev-parse", "HEAD");
    writeFileSync(join(dir, "a.txt"), "two\n"); // dirty
    const secret = join(work, "npm-secret");
    writeFileSync(secret, "npm-secret-value-123\n");
    const args = ["build", dir, "--cache-dir", machine("who"), "--remote", server.url, "--remote-token", TOKEN, "-t", "widget:dev", "--target", "app", "--build-arg", "NPM_TOKEN=abc-build-arg-secret", "--secret", `id=npm,src=${secret}`];
    const built = await runMemobuildAsync(args, { USER: "root", SUDO_USER: "ana" });
    expect(built.exitCode).toBe(0);
    const { builds } = await api<{ builds: Who[] }>(server.url, "/v1/builds");
    const build = await api<Who>(server.url, `/v1/builds/${builds[0].id}`);
    expect(build).toMatchObject({ project: "widget", git: { repository: "https://github.com/acme/widget.git", branch: "feature/login", commit, dirty: true }, user: "ana", target: "app", tokenName: "ci-bot" });
    expect(build.tags!.join()).toContain("widget:dev");
    expect(build.command).toContain("NPM_TOKEN=***");
    expect(build.command).toContain("--target");
    const everything = JSON.stringify(build);
    for (const secretText of [TOKEN, "abc-build-arg-secret", "npm-secret-value-123", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"]) expect(everything).not.toContain(secretText);

    // Committed: clean. In GitHub Actions: the run's page and the actor.
    git(dir, "commit", "-qam", "second");
    const ci = { GITHUB_ACTIONS: "true", GITHUB_REPOSITORY: "acme/widget", GITHUB_REF_NAME: "main", GITHUB_SHA: "f".repeat(40), GITHUB_SERVER_URL: "https://github.com", GITHUB_RUN_ID: "4242", GITHUB_ACTOR: "octocat" };
    expect((await runMemobuildAsync(["build", dir, "--cache-dir", machine("who"), "--remote", server.url, "--remote-token", TOKEN], ci)).exitCode).toBe(0);
    const ciBuild = (await api<{ builds: Who[] }>(server.url, "/v1/builds?user=octocat")).builds[0];
    expect(ciBuild).toMatchObject({ project: "widget", git: { branch: "feature/login", dirty: false }, user: "octocat", ci: { provider: "github-actions", branch: "main", url: "https://github.com/acme/widget/actions/runs/4242" } });
    expect(ciBuild.target).toBe("test"); // by its name
    expect((await api<{ builds: Who[] }>(server.url, "/v1/builds?branch=feature/login")).builds.map((b) => b.id)).toEqual([builds[0].id]);
    expect((await api<{ builds: Who[] }>(server.url, "/v1/builds?project=widget")).builds.length).toBe(2);
  } finally {
    await server.stop();
  }
}, 120_000);

test("a build whose COPY fails ends with every step final: the COPY failed (with why), the rest skipped; its hit rate counts the failure as a miss", async () => {
  const server = await startCacheServer(join(work, "data-copy"), ["--token", TOKEN]);
  try {
    const dir = project("copy-fails", { Dockerfile: "FROM memobuild/busybox\nRUN echo one > /1\nCOPY missing.txt /m\nRUN echo never\n" });
    const cache = machine("copy");
    const remote = ["--remote", server.url, "--remote-token", TOKEN];
    // The first RUN is cached the second time: a failed build is then 1 hit and 1 miss, not "100%".
    writeFileSync(join(dir, "missing.txt"), "x");
    expect((await runMemobuildAsync(["build", dir, "--cache-dir", cache, ...remote])).exitCode).toBe(0);
    rmSync(join(dir, "missing.txt"));
    expect((await runMemobuildAsync(["build", dir, "--cache-dir", cache, ...remote])).exitCode).toBe(1);
    const { builds } = await api<{ builds: Who[] }>(server.url, "/v1/builds?result=failed");
    const detail = await api<Who>(server.url, `/v1/builds/${builds[0].id}`);
    expect(detail.steps.map((s) => s.state)).toEqual(["cached-local", "cached-local", "failed", "skipped"]);
    expect(detail.hitRate).toBe(0.5);
    expect(detail.failedStep).toMatchObject({ number: 3, name: expect.stringContaining("COPY missing.txt /m") });
    expect(detail.failedStep!.output!.join("\n")).toContain("missing.txt");
  } finally {
    await server.stop();
  }
}, 120_000);

test("a build interrupted (Ctrl-C, a CI's SIGTERM) is reported as it ends: failed, the running step cancelled, the rest skipped; not running until the stale sweep", async () => {
  const server = await startCacheServer(join(work, "data-interrupted"), ["--token", TOKEN]);
  try {
    const dir = project("interrupted", { Dockerfile: "FROM memobuild/busybox\nRUN echo started && sleep 30\nRUN echo never\n" });
    for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
      const cacheDir = machine(`interrupted-${signal}`);
      const child = Bun.spawn([memobuildBinary(), "build", dir, "--no-cache", "--cache-dir", cacheDir, "--remote", server.url, "--remote-token", TOKEN, "--progress", "plain"], { stdout: "ignore", stderr: "pipe" });
      // Interrupted once its RUN is running (the hub has heard so).
      let id: string | undefined;
      for (let i = 0; i < 200 && !id; i++) {
        await Bun.sleep(100);
        const { builds } = await api<{ builds: { id: string; result: string }[] }>(server.url, "/v1/builds?result=running");
        const running = builds[0] && (await api<Who>(server.url, `/v1/builds/${builds[0].id}`));
        if (running?.steps.some((s) => s.state === "running")) id = running.id;
      }
      expect(id).toBeDefined();
      child.kill(signal);
      expect(await child.exited).toBe(code);
      const detail = await api<Who & { error?: string }>(server.url, `/v1/builds/${id}`);
      expect(detail.result).toBe("failed");
      expect(detail.error).toBe(`interrupted (${signal}) before the build finished`);
      expect(detail.steps.map((s) => s.state)).toEqual(["executed", "cancelled", "skipped"]);
      // Its step's overlay is unmounted as it exits, not left for the next build to sweep.
      expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(cacheDir);
    }
  } finally {
    await server.stop();
  }
}, 120_000);
