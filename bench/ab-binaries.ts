/**
 * `make bench`: this build against a baseline MemoBuild binary (compiled from a git ref) and,
 * where dockerd is installed, against Docker BuildKit, interleaved in one run on the same inputs.
 * Prints one Markdown table of medians and ratios; it never fails on timing (it is not a test).
 *
 *   sudo bun run bench/ab-binaries.ts [--baseline REF | --before BINARY] [--runs R] [--files N] [--mb M] [--buildkit auto|off]
 *
 * Paths: start-up (`--version`), the example project (examples/hello: 2 stages, RUN with a
 * cache mount, COPY --from) and a generated context copied by COPY (N files, M MB): a cold build
 * (empty cache, base image imported untimed), a no-op rebuild, a rebuild after editing one file;
 * and `context digest` of that context, cold and warm, beside b3sum.
 * MemoBuild figures are CPU time (user + system, children included), compared with the
 * baseline's; BuildKit does its work in the daemon, so it is compared by wall time.
 */
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { memobuildBinary } from "../test/support/binary.ts";
import { generateContext } from "./generate-context.ts";
import { baseImageOci, baselineBinary, defaultBaseline, DOCKER, type Dockerd, ensureTools, helloProjectForDocker, importBaseIntoDocker, median, startDockerd, timed, type Timing } from "./support.ts";

const { values } = parseArgs({
  options: {
    baseline: { type: "string" },
    before: { type: "string" },
    runs: { type: "string", default: "3" },
    files: { type: "string", default: "5000" },
    mb: { type: "string", default: "100" },
    buildkit: { type: "string", default: "auto" },
  },
});
const runs = Number(values.runs);
const work = mkdtempSync(join(tmpdir(), "memobuild-bench-"));
const samples = new Map<string, Timing[]>(); // "row\tcontender" -> timings
const record = (row: string, contender: string, timing: Timing) => {
  const key = `${row}\t${contender}`;
  samples.set(key, [...(samples.get(key) ?? []), timing]);
};

interface Builder {
  name: string;
  /** Empties its cache (the base image stays available); untimed. */
  reset(project: string): void;
  build(project: string): Timing;
}

function memobuild(name: string, binary: string, baseOci: string): Builder {
  const cache = (project: string) => join(work, `cache-${name}-${project.split("/").pop()}`);
  return {
    name,
    reset(project) {
      rmSync(cache(project), { recursive: true, force: true });
      timed([binary, "image", "import", `oci:${baseOci}:memobuild/busybox:latest`, "--cache-dir", cache(project)]);
    },
    build: (project) => timed([binary, "build", project, "--cache-dir", cache(project), "--progress", "plain"]),
  };
}

function buildkit(docker: Dockerd): Builder {
  return {
    name: "buildkit",
    reset: () => void timed([DOCKER, "builder", "prune", "-af"], { env: docker.env }),
    build: (project) => timed([DOCKER, "build", "--network", "host", "-q", "-t", "bench:latest", project], { env: docker.env }),
  };
}

/** cold, no-op, one file edited: each builder in turn, the order rotating from run to run. */
function buildPaths(label: string, project: string, edit: () => void, builders: Builder[]) {
  for (let run = 0; run < runs; run++) {
    for (const builder of [...builders.slice(run % builders.length), ...builders.slice(0, run % builders.length)]) {
      builder.reset(project);
      record(`${label}: cold`, builder.name, builder.build(project));
      record(`${label}: no-op`, builder.name, builder.build(project));
      edit();
      record(`${label}: one file edited`, builder.name, builder.build(project));
    }
  }
}

function startUp(binaries: Record<string, string>) {
  for (let i = 0; i < 21; i++) for (const [name, binary] of Object.entries(binaries)) record("start-up (--version)", name, timed([binary, "--version"]));
}

function contextDigest(context: string, binaries: Record<string, string>) {
  // Read everything once so every contender starts from the same page cache.
  timed(["sh", "-c", "find . -type f -print0 | xargs -0 cat > /dev/null"], { cwd: context });
  Bun.sleepSync(300); // past the stat cache's racy window for the files just written
  for (let run = 0; run < runs; run++) {
    record("context digest: cold", "b3sum", timed(["sh", "-c", "find . -type f -print0 | xargs -0 b3sum > /dev/null"], { cwd: context }));
    for (const [name, binary] of Object.entries(binaries)) {
      const cache = join(work, `digest-${name}`);
      rmSync(cache, { recursive: true, force: true });
      const digest = () => timed([binary, "context", "digest", context, "--cache-dir", cache]);
      record("context digest: cold", name, digest());
      record("context digest: warm", name, digest());
    }
  }
}

async function table(baselineLabel: string, peers: boolean) {
  const rows = [...new Set([...samples.keys()].map((k) => k.split("\t")[0]))];
  const get = (row: string, contender: string) => samples.get(`${row}\t${contender}`);
  const ms = (n: number) => `${n.toFixed(n < 20 ? 1 : 0)}`;
  const cell = (t?: Timing[]) => (t ? `${ms(median(t.map((x) => x.cpuMs)))} (${ms(median(t.map((x) => x.wallMs)))})` : "–");
  const ratio = (a?: Timing[], b?: Timing[], of: keyof Timing = "cpuMs") => (a && b ? `${(median(a.map((x) => x[of])) / median(b.map((x) => x[of]))).toFixed(2)}×` : "–");
  console.log(`\n| path | this build: CPU (wall) ms | ${baselineLabel}: CPU (wall) ms | this / baseline (CPU) |${peers ? " peer: wall ms | this / peer (wall) |" : ""}`);
  console.log(`|---|---|---|---|${peers ? "---|---|" : ""}`);
  for (const row of rows) {
    const peerName = row.startsWith("context digest") ? "b3sum" : "buildkit";
    const peer = get(row, peerName);
    const peerCells = peers ? ` ${peer ? `${peerName} ${ms(median(peer.map((x) => x.wallMs)))}` : "–"} | ${ratio(get(row, "this"), peer, "wallMs")} |` : "";
    console.log(`| ${row} | ${cell(get(row, "this"))} | ${cell(get(row, "baseline"))} | ${ratio(get(row, "this"), get(row, "baseline"))} |${peerCells}`);
  }
  console.log(`\nmedians of ${runs} runs (start-up: 21); ${new Date().toISOString()}; load average ${(await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ")}`);
}

let docker: Dockerd | undefined;
try {
  if (process.getuid?.() !== 0) throw new Error("run as root: builds need overlayfs and the OCI runtime");
  const wantBuildkit = values.buildkit !== "off" && !!Bun.which("dockerd", { PATH: `${process.env.PATH}:/usr/sbin` });
  ensureTools(["umoci", "b3sum"]);
  const ref = values.baseline ?? defaultBaseline();
  let baselineLabel = `baseline ${values.before ?? ref}`;
  let before = values.before;
  if (!before) {
    console.log(`compiling the baseline (${ref}) ...`);
    const built = baselineBinary(ref, join(tmpdir(), "memobuild-bench-baselines"));
    before = built.binary;
    baselineLabel = `baseline ${ref} (${built.commit.slice(0, 7)})`;
  }
  const binaries = { this: memobuildBinary(), baseline: before };

  // The base image: built by this MemoBuild, exported as OCI; each cache imports it, Docker too.
  const baseOci = baseImageOci(binaries.this, work);
  const builders = Object.entries(binaries).map(([name, binary]) => memobuild(name, binary, baseOci));
  if (wantBuildkit) {
    docker = await startDockerd(work);
    importBaseIntoDocker(docker, baseOci, work);
    builders.push(buildkit(docker));
  }

  console.log("start-up ...");
  startUp(binaries);
  console.log("example project ...");
  const hello = join(work, "hello");
  helloProjectForDocker(hello);
  let edits = 0;
  buildPaths("example project", hello, () => appendFileSync(join(hello, "src/greet.sh.in"), `# edit ${++edits}\n`), builders);
  console.log(`${values.files} files / ${values.mb} MB copied by COPY ...`);
  const large = join(work, "large");
  mkdirSync(large);
  generateContext(join(large, "data"), Number(values.files), Number(values.mb));
  writeFileSync(join(large, "Dockerfile"), "FROM memobuild/busybox\nCOPY data/ /data/\nRUN find /data -type f | wc -l > /count\n");
  Bun.sleepSync(300);
  buildPaths(`COPY of ${values.files} files / ${values.mb} MB`, large, () => writeFileSync(join(large, "data/pkg1/mod0/file1.dat"), `edited ${++edits}`), builders);
  console.log("context digest ...");
  contextDigest(join(large, "data"), binaries);
  await table(baselineLabel, true);
  if (!wantBuildkit) console.log("(no BuildKit: --buildkit off, or no dockerd installed)");
} finally {
  await docker?.stop();
  Bun.spawnSync(["sh", "-c", `grep ' ${work}' /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r -n1 umount -l`]);
  rmSync(work, { recursive: true, force: true });
}
