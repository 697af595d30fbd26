/**
 * MemoBuild against Docker BuildKit (Debian's docker.io, started here on a private socket) in
 * one run, on the same inputs: the example project, and a generated 20,000-file / 500 MB
 * context copied by COPY. For each: a cold build (empty caches), a no-op rebuild and a rebuild
 * after editing one file. Prints the times and the ratios.
 * Goals: no-op under a fifth of BuildKit's time; one-file edit and cold under half.
 *
 *   sudo bun run bench/build-vs-buildkit.ts [--files N] [--mb M] [--runs R]
 */
import { appendFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { memobuildBinary, REPO_ROOT } from "../test/support/binary.ts";
import { generateContext } from "./generate-context.ts";

const { values } = parseArgs({
  options: { files: { type: "string", default: "20000" }, mb: { type: "string", default: "500" }, runs: { type: "string", default: "3" } },
});
const runs = Number(values.runs);
const work = mkdtempSync(join(tmpdir(), "memobuild-vs-buildkit-"));
const socket = join(work, "docker.sock");
const dockerEnv = { ...process.env, DOCKER_HOST: `unix://${socket}`, DOCKER_BUILDKIT: "1" };
const binary = memobuildBinary();
// Debian's client matches its daemon (20.10); a newer client elsewhere on PATH may not.
const DOCKER = existsSync("/usr/bin/docker") ? "/usr/bin/docker" : "docker";

function sh(command: string[], options: { env?: Record<string, string | undefined>; cwd?: string; quiet?: boolean } = {}): number {
  const start = performance.now();
  const result = Bun.spawnSync(command, { env: options.env ?? process.env, cwd: options.cwd, stdout: "pipe", stderr: "pipe" });
  const ms = performance.now() - start;
  if (result.exitCode !== 0) throw new Error(`${command.join(" ")} failed:\n${result.stderr.toString().slice(-2000)}`);
  return ms;
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function ensureTools() {
  const missing = ["dockerd", "docker", "umoci"].filter((t) => !Bun.which(t));
  if (missing.length) sh(["bash", join(REPO_ROOT, "scripts/install-system-deps.sh"), ...missing.map((m) => (m === "dockerd" || m === "docker" ? "dockerd" : m))]);
}

async function startDockerd(): Promise<ReturnType<typeof Bun.spawn>> {
  const daemon = Bun.spawn(
    ["dockerd", "--iptables=false", "--ip-masq=false", "--bridge=none", "--host", `unix://${socket}`, "--data-root", join(work, "docker-data"), "--exec-root", join(work, "docker-exec"), "--pidfile", join(work, "docker.pid")],
    { stdout: "ignore", stderr: Bun.file(join(work, "dockerd.log")) },
  );
  for (let i = 0; i < 100; i++) {
    if (Bun.spawnSync([DOCKER, "info"], { env: dockerEnv, stdout: "ignore", stderr: "ignore" }).exitCode === 0) return daemon;
    await Bun.sleep(200);
  }
  throw new Error(`dockerd did not start; see ${join(work, "dockerd.log")}`);
}

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

let daemon: ReturnType<typeof Bun.spawn> | undefined;
try {
  if (process.getuid?.() !== 0) throw new Error("run as root: both builders need it");
  ensureTools();
  sh(["bash", join(REPO_ROOT, "scripts/prepare-base-rootfs.sh")]);

  // The base image, built by MemoBuild, exported as OCI, and imported into Docker from its rootfs.
  const baseCache = join(work, "base-cache");
  const baseOci = join(work, "base-oci");
  sh([binary, "build", join(REPO_ROOT, "examples/base"), "--cache-dir", baseCache, "-t", "memobuild/busybox:latest", "--output", `type=oci,dest=${baseOci}`]);
  sh(["umoci", "unpack", "--image", `${baseOci}:memobuild/busybox:latest`, join(work, "base-bundle")]);
  daemon = await startDockerd();
  sh(["sh", "-c", `tar -C ${join(work, "base-bundle/rootfs")} -c . | ${DOCKER} import - memobuild/busybox:latest`], { env: dockerEnv });

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
  cpSync(join(REPO_ROOT, "examples/hello"), small, { recursive: true });
  // Docker 20.10's built-in frontend has no heredocs, and a syntax line would make BuildKit
  // fetch a newer frontend image (offline: impossible). The same steps, heredoc written inline:
  const dockerfile = join(small, "Dockerfile");
  const text = (await Bun.file(dockerfile).text())
    .replace(/^# syntax=.*\n/m, "")
    .replace(
      /RUN --mount=type=cache,target=\/cache <<EOF\n[\s\S]*?\nEOF\n/,
      'RUN --mount=type=cache,target=/cache set -e; mkdir -p /out/bin; sed "s/@GREETING@/${GREETING}/" greet.sh.in > /out/bin/greet; chmod 0755 /out/bin/greet; date -u +%s > /cache/last-build\n',
    );
  if (text.includes("<<EOF")) throw new Error("could not rewrite the example's heredoc for Docker 20.10");
  writeFileSync(dockerfile, text);
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
  if (daemon) {
    daemon.kill("SIGTERM");
    await daemon.exited;
  }
  Bun.spawnSync(["sh", "-c", `grep ' ${work}' /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r -n1 umount -l`]);
  rmSync(work, { recursive: true, force: true });
}
