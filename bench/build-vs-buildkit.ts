/**
 * MemoBuild against Docker BuildKit (Debian's docker.io, started here on a private socket) in
 * one run, on the same inputs: the example project, and a generated 20,000-file / 500 MB
 * context copied by COPY. For each: a cold build (empty caches), a no-op rebuild and a rebuild
 * after editing one file. Prints the times and the ratios.
 * Goals: no-op under a fifth of BuildKit's time; one-file edit and cold under half.
 *
 *   sudo bun run bench/build-vs-buildkit.ts [--files N] [--mb M] [--runs R]
 */
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { memobuildBinary } from "../test/support/binary.ts";
import { generateContext } from "./generate-context.ts";
import { baseImageOci, DOCKER, type Dockerd, ensureTools, helloProjectForDocker, importBaseIntoDocker, median, startDockerd, timed } from "./support.ts";

const { values } = parseArgs({
  options: { files: { type: "string", default: "20000" }, mb: { type: "string", default: "500" }, runs: { type: "string", default: "3" } },
});
const runs = Number(values.runs);
const work = mkdtempSync(join(tmpdir(), "memobuild-vs-buildkit-"));
const binary = memobuildBinary();
const sh = (command: string[], options: { env?: Record<string, string | undefined> } = {}) => timed(command, options).wallMs;

interface Timings {
  cold: number;
  noop: number;
  edit: number;
}

function measure(label: string, build: (fresh: boolean) => number, edit: () => void): Timings {
  const cold = build(true);
  const noop = median(Array.from({ length: runs }, () => build(false)));
  const editTimes = Array.from({ length: runs }, () => {
    edit();
    return build(false);
  });
  const result = { cold, noop, edit: median(editTimes) };
  console.log(`  ${label.padEnd(10)} cold ${cold.toFixed(0).padStart(7)} ms   no-op ${result.noop.toFixed(0).padStart(6)} ms   one file edited ${result.edit.toFixed(0).padStart(7)} ms`);
  return result;
}

function compare(mb: Timings, bk: Timings) {
  const r = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
  console.log(`  ratio (memobuild / buildkit): cold ${r(mb.cold, bk.cold)} (goal < 0.5)   no-op ${r(mb.noop, bk.noop)} (goal < 0.2)   edit ${r(mb.edit, bk.edit)} (goal < 0.5)`);
}

let docker: Dockerd | undefined;
try {
  if (process.getuid?.() !== 0) throw new Error("run as root: both builders need it");
  ensureTools(["dockerd", "docker", "umoci"]);
  // The base image, built by MemoBuild, exported as OCI, and imported into Docker from its rootfs.
  const baseOci = baseImageOci(binary, work);
  docker = await startDockerd(work);
  const dockerEnv = docker.env;
  importBaseIntoDocker(docker, baseOci, work);

  const memobuild = (project: string) => {
    const cache = join(work, `mb-cache-${project.split("/").pop()}`);
    return (fresh: boolean) => {
      if (fresh) {
        rmSync(cache, { recursive: true, force: true });
        sh([binary, "image", "import", `oci:${baseOci}:memobuild/busybox:latest`, "--cache-dir", cache]);
      }
      return sh([binary, "build", project, "--cache-dir", cache, "--progress", "plain"]);
    };
  };
  const buildkit = (project: string) => (fresh: boolean) => {
    if (fresh) sh([DOCKER, "builder", "prune", "-af"], { env: dockerEnv });
    return sh([DOCKER, "build", "--network", "host", "-q", "-t", "bench:latest", project], { env: dockerEnv });
  };

  // 1. The example project.
  const small = join(work, "hello");
  helloProjectForDocker(small);
  let edits = 0;
  const editSmall = () => appendFileSync(join(small, "src/greet.sh.in"), `# edit ${++edits}\n`);
  console.log("\nexample project (examples/hello: 2 stages, RUN with a cache mount, COPY --from)");
  const smallMb = measure("memobuild", memobuild(small), editSmall);
  const smallBk = measure("buildkit", buildkit(small), editSmall);
  compare(smallMb, smallBk);

  // 2. A large context copied by COPY.
  const large = join(work, "large");
  mkdirSync(large);
  console.log(`\ngenerating ${values.files} files / ${values.mb} MB ...`);
  generateContext(join(large, "data"), Number(values.files), Number(values.mb));
  writeFileSync(join(large, "Dockerfile"), "FROM memobuild/busybox\nCOPY data/ /data/\nRUN find /data -type f | wc -l > /count\n");
  Bun.sleepSync(300);
  const editLarge = () => writeFileSync(join(large, "data/pkg1/mod0/file1.dat"), `edited ${++edits}`);
  console.log(`large context (${values.files} files, ${values.mb} MB, COPY then RUN)`);
  const largeMb = measure("memobuild", memobuild(large), editLarge);
  const largeBk = measure("buildkit", buildkit(large), editLarge);
  compare(largeMb, largeBk);
} finally {
  await docker?.stop();
  Bun.spawnSync(["sh", "-c", `grep ' ${work}' /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r -n1 umount -l`]);
  rmSync(work, { recursive: true, force: true });
}
