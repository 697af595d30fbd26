/**
 * A build cache without a server, as buildx's `--cache-to`/`--cache-from`: machine A writes its
 * results to Debian's docker-registry (on 127.0.0.1) or to a directory, machine B (an empty local
 * cache) builds from them alone and runs nothing. Signed results honour --remote-trust; a cache
 * that cannot be read costs a warning, never the build.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT, runMemobuild } from "./support/binary.ts";
import { buildBaseImage, machineWithBase, writeProject } from "./support/base-image.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-build-cache-"));
const baseOci = join(work, "base-oci");
const port = 21000 + (process.pid % 1000) * 7;
const registry = `127.0.0.1:${port}`;
let server: ReturnType<typeof Bun.spawn>;

beforeAll(async () => {
  buildBaseImage(work, baseOci);
  const config = join(work, "registry.yml");
  writeFileSync(config, `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${join(work, "registry")}\nhttp:\n  addr: ${registry}\n`);
  server = Bun.spawn(["docker-registry", "serve", config], { stdout: "ignore", stderr: "ignore" });
  for (let i = 0; i < 100 && !(await fetch(`http://${registry}/v2/`).then(() => true, () => false)); i++) await Bun.sleep(50);
}, 120_000);

afterAll(async () => {
  server?.kill();
  await server?.exited;
  rmSync(work, { recursive: true, force: true });
});

interface Step {
  id: string;
  status: string;
  config_only?: true;
  remote_refused?: string;
}

let machines = 0;
function build(project: string, ...args: string[]) {
  const metadata = join(work, `meta-${++machines}.json`);
  const result = runMemobuild(["build", project, "--metadata-file", metadata, "--progress", "plain", ...args], { env: { SOURCE_DATE_EPOCH: "1700000000" } });
  const meta = result.exitCode === 0 ? (JSON.parse(require("node:fs").readFileSync(metadata, "utf8")) as { "containerimage.digest": string; steps: Step[] }) : undefined;
  return { ...result, meta };
}
const machine = () => machineWithBase(join(work, `machine-${++machines}`), baseOci);
const ran = (steps: Step[]) => steps.filter((s) => s.status === "executed" && !s.config_only).map((s) => s.id);

describe("--cache-to and --cache-from", () => {
  const hello = join(REPO_ROOT, "examples/hello");

  test("a registry as the only cache: machine B runs nothing and makes the same image", () => {
    const a = build(hello, "--cache-dir", machine(), "--cache-to", `type=registry,ref=${registry}/hello:cache,mode=max`);
    expect(a.exitCode).toBe(0);
    expect(a.stderr).toContain(`written to ${registry}/hello:cache`);
    const b = build(hello, "--cache-dir", machine(), "--cache-from", `type=registry,ref=${registry}/hello:cache`);
    expect(b.exitCode).toBe(0);
    expect(ran(b.meta!.steps)).toEqual([]);
    expect(b.meta!.steps.filter((s) => !s.config_only && s.status !== "skipped").map((s) => s.status)).toEqual(["cached-remote", "cached-remote", "cached-remote", "cached-remote", "cached-remote"]);
    expect(b.meta!["containerimage.digest"]).toBe(a.meta!["containerimage.digest"]);
  }, 120_000);

  test("mode=min keeps the target stage's steps: B runs the build stage, then takes the rest", () => {
    const a = build(hello, "--cache-dir", machine(), "--cache-to", `type=registry,ref=${registry}/hello:min`);
    expect(a.exitCode).toBe(0);
    const b = build(hello, "--cache-dir", machine(), "--cache-from", `${registry}/hello:min`);
    expect(b.exitCode).toBe(0);
    expect(ran(b.meta!.steps).every((id) => id.startsWith("build/"))).toBe(true);
    expect(b.meta!.steps.filter((s) => s.id.startsWith("2/") && !s.config_only).every((s) => s.status === "cached-remote")).toBe(true);
  }, 120_000);

  test("a directory as the cache (type=local), and signed results only from a trusted key", () => {
    const dir = join(work, "local-cache");
    const project = writeProject(join(work, "signed"), { Dockerfile: "FROM memobuild/busybox\nCOPY a.txt /a\nRUN cat /a > /b\n", "a.txt": "a\n" });
    const key = join(work, "ci.key");
    const ci = runMemobuild(["key", "generate", "--out", key]).stdout.trim();
    const other = runMemobuild(["key", "generate", "--out", join(work, "other.key")]).stdout.trim();
    expect(build(project, "--cache-dir", machine(), "--cache-to", `type=local,dest=${dir},mode=max`, "--remote-sign-key", key).exitCode).toBe(0);
    const trusting = build(project, "--cache-dir", machine(), "--cache-from", `type=local,src=${dir}`, "--remote-trust", ci);
    expect(ran(trusting.meta!.steps)).toEqual([]);
    const distrusting = build(project, "--cache-dir", machine(), "--cache-from", `type=local,src=${dir}`, "--remote-trust", other);
    expect(ran(distrusting.meta!.steps)).toEqual(["0/1", "0/2"]);
    expect(distrusting.meta!.steps[1].remote_refused).toContain("from an untrusted signer");
  }, 120_000);

  test("a cache that cannot be read costs one warning and the build goes on; --cache-to failing stops it unless ignore-error=true", () => {
    const project = writeProject(join(work, "unreachable"), { Dockerfile: "FROM memobuild/busybox\nRUN echo x > /x\n" });
    const from = build(project, "--cache-dir", machine(), "--cache-from", "type=registry,ref=127.0.0.1:1/nothing:here");
    expect(from.exitCode).toBe(0);
    expect(from.stderr).toContain("--cache-from 127.0.0.1:1/nothing:here: not used");
    const to = build(project, "--cache-dir", machine(), "--cache-to", "type=registry,ref=127.0.0.1:1/nothing:here");
    expect(to.exitCode).toBe(1);
    expect(to.stderr).toContain("--cache-to 127.0.0.1:1/nothing:here:");
    expect(to.stderr).toContain("ignore-error=true");
    const ignored = build(project, "--cache-dir", machine(), "--cache-to", "type=registry,ref=127.0.0.1:1/nothing:here,ignore-error=true");
    expect(ignored.exitCode).toBe(0);
    expect(ignored.stderr).toContain("--cache-to 127.0.0.1:1/nothing:here: not written");
  }, 120_000);

  test("what is not a cache spec is an error naming what is supported", () => {
    const project = writeProject(join(work, "bad-spec"), { Dockerfile: "FROM memobuild/busybox\n" });
    const result = build(project, "--cache-dir", machine(), "--cache-to", "type=gha,scope=x");
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain('--cache-to type=gha,scope=x: unknown key "scope" (use type, ref, dest, mode, ignore-error)');
    expect(build(project, "--cache-dir", machine(), "--cache-to", "type=s3").stderr).toContain("type s3 is not supported (use registry or local)");
  });
});
