/**
 * Pull and push throughput of a ~200 MB image over loopback (Debian's docker-registry on
 * 127.0.0.1), MemoBuild beside `skopeo copy` of the same image, in one run. The pull is also
 * compared with what gives the same result, a root filesystem ready to use: `skopeo copy` to
 * an OCI layout then `umoci unpack` (goal: MemoBuild <= 1.5x), interleaved over --runs runs,
 * CPU time (user + system, children included) and wall time, medians.
 *
 *   bun run bench/registry.ts [--mb 200] [--runs 3]
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { memobuildBinary, REPO_ROOT } from "../test/support/binary.ts";
import { median, timed, type Timing } from "./support.ts";

const { values } = parseArgs({ options: { mb: { type: "string", default: "200" }, runs: { type: "string", default: "3" } } });
const mb = Number(values.mb);
const runs = Number(values.runs);
const work = mkdtempSync(join(tmpdir(), "memobuild-bench-registry-"));
const binary = memobuildBinary();
let registry: ReturnType<typeof Bun.spawn> | undefined;

function run(command: string[]): number {
  const start = performance.now();
  const result = Bun.spawnSync(command, { stdout: "pipe", stderr: "pipe" });
  if (result.exitCode !== 0) throw new Error(`${command.join(" ")}: ${result.stderr.toString().slice(-1500)}`);
  return performance.now() - start;
}

try {
  for (const tool of ["docker-registry", "skopeo", "umoci"]) {
    if (!Bun.which(tool)) run(["bash", join(REPO_ROOT, "scripts/install-system-deps.sh"), tool]);
  }
  run(["bash", join(REPO_ROOT, "scripts/prepare-base-rootfs.sh")]);
  const port = 15900 + (process.pid % 90);
  const host = `127.0.0.1:${port}`;
  writeFileSync(join(work, "registry.yml"), `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${join(work, "storage")}\nhttp:\n  addr: ${host}\n`);
  registry = Bun.spawn(["docker-registry", "serve", join(work, "registry.yml")], { stdout: "ignore", stderr: "ignore" });
  for (let i = 0; i < 100 && !(await fetch(`http://${host}/v2/`).then(() => true, () => false)); i++) await Bun.sleep(50);

  // The image: busybox plus ~200 MB of incompressible data in a few layers.
  const cache = join(work, "cache");
  run([binary, "build", join(REPO_ROOT, "examples/base"), "--cache-dir", cache, "-t", "memobuild/busybox:latest"]);
  const project = join(work, "project");
  mkdirSync(project);
  const per = Math.ceil(mb / 4);
  writeFileSync(
    join(project, "Dockerfile"),
    ["FROM memobuild/busybox", ...[1, 2, 3, 4].map((i) => `RUN head -c ${per * 1024 * 1024} /dev/urandom > /data${i}`)].join("\n") + "\n",
  );
  const oci = join(work, "image-oci");
  run([binary, "build", project, "--cache-dir", cache, "-t", "bench/big:1", "--output", `type=oci,dest=${oci}`]);
  const size = Number(Bun.spawnSync(["du", "-sb", oci], { stdout: "pipe" }).stdout.toString().split("\t")[0]) / 1024 / 1024;

  const rate = (ms: number) => `${(size / (ms / 1000)).toFixed(0)} MB/s`;
  const line = (label: string, ms: number) => console.log(`  ${label.padEnd(42)} ${(ms / 1000).toFixed(2).padStart(6)} s   ${rate(ms)}`);
  console.log(`image: ${size.toFixed(0)} MB (gzip layers of random data), registry ${host}`);

  // Push: MemoBuild from its store; skopeo from the exported OCI layout. Fresh repositories.
  run([binary, "image", "import", `oci:${oci}:bench/big:1`, "-t", `${host}/mb/big:1`, "--cache-dir", cache]);
  const mbPush = run([binary, "image", "push", `${host}/mb/big:1`, "--cache-dir", cache]);
  const skPush = run(["skopeo", "copy", "--dest-tls-verify=false", `oci:${oci}:bench/big:1`, `docker://${host}/sk/big:1`]);
  console.log("push");
  line("memobuild image push", mbPush);
  line("skopeo copy oci: -> docker://", skPush);
  console.log(`  ratio (memobuild / skopeo): ${(mbPush / skPush).toFixed(2)}x`);

  // Pull: MemoBuild into an empty store (verified and unpacked, ready to build on);
  // skopeo into an OCI layout (verified, not unpacked), then umoci unpack (the same result).
  const mbPulls: Timing[] = [];
  const skPulls: Timing[] = [];
  const skUnpacks: Timing[] = [];
  for (let i = 0; i < runs; i++) {
    const pullCache = join(work, "pull-cache");
    const layout = join(work, "skopeo-pull");
    const bundle = join(work, "umoci-bundle");
    for (const dir of [pullCache, layout, bundle]) rmSync(dir, { recursive: true, force: true });
    mbPulls.push(timed([binary, "image", "pull", `${host}/sk/big:1`, "--cache-dir", pullCache]));
    skPulls.push(timed(["skopeo", "copy", "--src-tls-verify=false", `docker://${host}/sk/big:1`, `oci:${layout}:big`]));
    skUnpacks.push(timed(["umoci", "unpack", "--image", `${layout}:big`, bundle]));
  }
  const both = skPulls.map((t, i) => ({ cpuMs: t.cpuMs + skUnpacks[i].cpuMs, wallMs: t.wallMs + skUnpacks[i].wallMs }));
  const cell = (xs: Timing[]) => `${median(xs.map((x) => x.cpuMs)).toFixed(0).padStart(6)} ms CPU ${(median(xs.map((x) => x.wallMs)) / 1000).toFixed(2).padStart(6)} s wall   ${rate(median(xs.map((x) => x.wallMs)))}`;
  console.log(`pull (medians of ${runs})`);
  console.log(`  ${"memobuild image pull (verified + unpacked)".padEnd(42)} ${cell(mbPulls)}`);
  console.log(`  ${"skopeo copy docker:// -> oci:".padEnd(42)} ${cell(skPulls)}`);
  console.log(`  ${"umoci unpack of that layout".padEnd(42)} ${cell(skUnpacks)}`);
  console.log(`  ${"skopeo copy + umoci unpack".padEnd(42)} ${cell(both)}`);
  const ratio = (of: keyof Timing) => (median(mbPulls.map((x) => x[of])) / median(both.map((x) => x[of]))).toFixed(2);
  console.log(`  ratio (memobuild / skopeo + umoci): ${ratio("cpuMs")}x CPU, ${ratio("wallMs")}x wall (goal <= 1.5x)`);
  console.log(`  load average ${(await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ")}`);
} finally {
  if (registry) {
    registry.kill("SIGTERM");
    await registry.exited;
  }
  rmSync(work, { recursive: true, force: true });
}
