/**
 * Per-RUN overhead: what MemoBuild spends on one `RUN` step beyond the OCI runtime itself
 * (snapshot, overlay mount, config, crun, the layer packed and recorded), beside `crun run` of
 * the same image unpacked as a bundle by umoci, in one interleaved run.
 *
 * MemoBuild's share is measured as a difference, so start-up and the rest of a build cancel
 * out: `build --no-cache` of FROM + N × `RUN ["/bin/true"]` minus the same Dockerfile with no
 * RUN, divided by N. Both sides run `/bin/true` directly (exec form: no shell) in a container
 * without network (as `--network=none`). On hosts with hybrid cgroups crun needs a private mount
 * namespace without the v2 hierarchy: crun's side gets it from `unshare`, `sh` and `umount`
 * (what a shell needs), MemoBuild makes it by system calls (src/sys/namespace.ts). Times are CPU (user + system of the process and the children it waited for),
 * medians; wall time in brackets (the machine may be shared). Goal: ≤ 25 ms over crun.
 * `--network default` runs the RUN steps with the build's default network instead (their own
 * namespace behind slirp4netns), which crun's side does not have: the difference is that cost.
 *
 *   bun run bench/run-overhead.ts [--runs 7] [--steps 10] [--network none|default]
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { memobuildBinary } from "../test/support/binary.ts";
import { baseImageOci, ensureTools, median, timed, type Timing } from "./support.ts";

const { values } = parseArgs({ options: { runs: { type: "string", default: "7" }, steps: { type: "string", default: "10" }, network: { type: "string", default: "none" } } });
if (values.network !== "none" && values.network !== "default") throw new Error(`--network ${values.network}: use none or default`);
const runFlag = values.network === "none" ? "RUN --network=none" : "RUN";
const runs = Number(values.runs);
const steps = Number(values.steps);
const work = mkdtempSync(join(tmpdir(), "memobuild-bench-run-"));

/** A project of FROM + `count` RUN steps (each one distinct by its own ENV before it, so none is a repeat of another). */
function project(name: string, count: number): string {
  const dir = join(work, name);
  mkdirSync(dir);
  const lines = ["FROM memobuild/busybox:latest"];
  for (let i = 0; i < count; i++) lines.push(`ENV STEP=${i}`, `${runFlag} ["/bin/true"]`);
  if (count === 0) for (let i = 0; i < steps; i++) lines.push(`ENV STEP=${i}`);
  writeFileSync(join(dir, "Dockerfile"), lines.join("\n") + "\n");
  return dir;
}

/** The same image unpacked by umoci, its config made to run /bin/true as MemoBuild's RUN does. */
function crunBundle(oci: string): string {
  const bundle = join(work, "bundle");
  timed(["umoci", "unpack", "--image", `${oci}:memobuild/busybox:latest`, bundle]);
  const configFile = join(bundle, "config.json");
  const config = JSON.parse(readFileSync(configFile, "utf8"));
  config.process.args = ["/bin/true"];
  config.process.terminal = false;
  writeFileSync(configFile, JSON.stringify(config));
  return bundle;
}

/** `crun run`, in a private mount namespace without the v2 hierarchy when cgroups are hybrid. */
function crunRun(bundle: string, id: string): Timing {
  const hybrid = readFileSync("/proc/self/mountinfo", "utf8").includes(" /sys/fs/cgroup/unified ");
  const command = hybrid
    ? ["unshare", "--mount", "--propagation", "private", "sh", "-c", 'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"', "sh", "crun", "run", "--bundle", bundle, id]
    : ["crun", "run", "--bundle", bundle, id];
  return timed(command);
}

const stat = (xs: Timing[]) => ({ cpu: median(xs.map((x) => x.cpuMs)), wall: median(xs.map((x) => x.wallMs)) });
const ms = (n: number) => n.toFixed(1).padStart(7);

try {
  if (process.getuid?.() !== 0) throw new Error("run as root: builds need overlayfs and the OCI runtime");
  ensureTools(["crun", "umoci"]);
  const binary = memobuildBinary();
  const oci = baseImageOci(binary, work);
  const cache = join(work, "cache");
  timed([binary, "image", "import", `oci:${oci}:memobuild/busybox:latest`, "--cache-dir", cache]);
  const withRuns = project("with-runs", steps);
  const without = project("without", 0);
  const bundle = crunBundle(oci);
  const build = (dir: string) => timed([binary, "build", dir, "--no-cache", "--cache-dir", cache, "--progress", "plain"]);
  build(withRuns); // the first build of a cache pays for things a later one does not

  const samples = { runs: [] as Timing[], none: [] as Timing[], crun: [] as Timing[] };
  for (let run = 0; run < runs; run++) {
    samples.runs.push(build(withRuns));
    samples.none.push(build(without));
    for (let i = 0; i < steps; i++) samples.crun.push(crunRun(bundle, `memobuild-bench-${process.pid}-${run}-${i}`));
  }
  const withStat = stat(samples.runs);
  const noneStat = stat(samples.none);
  const crun = stat(samples.crun);
  const perRun = { cpu: (withStat.cpu - noneStat.cpu) / steps, wall: (withStat.wall - noneStat.wall) / steps };
  console.log(`\nper ${runFlag} ["/bin/true"], medians of ${runs} builds of ${steps} RUN steps and ${runs * steps} crun runs: CPU ms (wall ms)`);
  console.log(`  memobuild build --no-cache, ${steps} RUN      ${ms(withStat.cpu)} (${ms(withStat.wall)})`);
  console.log(`  memobuild build --no-cache, no RUN      ${ms(noneStat.cpu)} (${ms(noneStat.wall)})`);
  console.log(`  memobuild, one RUN (the difference / ${steps}) ${ms(perRun.cpu)} (${ms(perRun.wall)})`);
  console.log(`  crun run of the same bundle             ${ms(crun.cpu)} (${ms(crun.wall)})`);
  console.log(`  overhead over crun: ${(perRun.cpu - crun.cpu).toFixed(1)} ms CPU (${(perRun.wall - crun.wall).toFixed(1)} ms wall), ${(perRun.cpu / crun.cpu).toFixed(2)}x crun's CPU; goal <= 25 ms`);
  console.log(`  load average ${(await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ")}`);
} finally {
  Bun.spawnSync(["sh", "-c", `grep ' ${work}' /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r -n1 umount -l`]);
  rmSync(work, { recursive: true, force: true });
}
