/**
 * What the benchmarks share: timing a command (wall and CPU), medians, Debian's dockerd on a
 * private socket for BuildKit, the example project rewritten for Docker 20.10, and a
 * MemoBuild binary compiled from another git ref (the baseline of `make bench`).
 */
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../test/support/binary.ts";

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export interface Timing {
  wallMs: number;
  /** user + system time of the process and the children it waited for */
  cpuMs: number;
}

/** Runs a command to its end; a failure throws with the end of its stderr. */
export function timed(command: string[], options: { env?: Record<string, string | undefined>; cwd?: string } = {}): Timing {
  const start = performance.now();
  const result = Bun.spawnSync(command, { env: options.env ?? process.env, cwd: options.cwd, stdout: "pipe", stderr: "pipe" });
  const wallMs = performance.now() - start;
  if (result.exitCode !== 0) throw new Error(`${command.join(" ")} failed:\n${result.stderr.toString().slice(-2000)}`);
  return { wallMs, cpuMs: Number(result.resourceUsage.cpuTime.total) / 1000 };
}

/** Installs Debian packages the benchmark needs (scripts/install-system-deps.sh knows their names). */
export function ensureTools(tools: string[]) {
  const missing = tools.filter((t) => !Bun.which(t) && !Bun.which(t, { PATH: "/usr/sbin:/usr/bin" }));
  if (missing.length) timed(["bash", join(REPO_ROOT, "scripts/install-system-deps.sh"), ...missing.map((m) => (m === "docker" ? "dockerd" : m))]);
}

// Debian's client matches its daemon (20.10); a newer client elsewhere on PATH may not.
export const DOCKER = existsSync("/usr/bin/docker") ? "/usr/bin/docker" : "docker";

export interface Dockerd {
  env: Record<string, string | undefined>;
  stop(): Promise<void>;
}

/** dockerd with its own socket and data under `work`, BuildKit on; no iptables, no bridge. */
export async function startDockerd(work: string): Promise<Dockerd> {
  const socket = join(work, "docker.sock");
  const env = { ...process.env, DOCKER_HOST: `unix://${socket}`, DOCKER_BUILDKIT: "1" };
  const daemon = Bun.spawn(
    ["dockerd", "--iptables=false", "--ip-masq=false", "--bridge=none", "--host", `unix://${socket}`, "--data-root", join(work, "docker-data"), "--exec-root", join(work, "docker-exec"), "--pidfile", join(work, "docker.pid")],
    { stdout: "ignore", stderr: Bun.file(join(work, "dockerd.log")) },
  );
  const stop = async () => {
    daemon.kill("SIGTERM");
    await daemon.exited;
  };
  for (let i = 0; i < 100; i++) {
    if (Bun.spawnSync([DOCKER, "info"], { env, stdout: "ignore", stderr: "ignore" }).exitCode === 0) return { env, stop };
    await Bun.sleep(200);
  }
  await stop();
  throw new Error(`dockerd did not start; see ${join(work, "dockerd.log")}`);
}

/**
 * examples/hello copied to `dest`, its heredoc written inline: Docker 20.10's built-in frontend
 * has no heredocs, and a syntax line would make BuildKit fetch a newer frontend (offline:
 * impossible). The same steps for both builders.
 */
export function helloProjectForDocker(dest: string) {
  cpSync(join(REPO_ROOT, "examples/hello"), dest, { recursive: true });
  const dockerfile = join(dest, "Dockerfile");
  const text = readFileSync(dockerfile, "utf8")
    .replace(/^# syntax=.*\n/m, "")
    .replace(
      /RUN --mount=type=cache,target=\/cache <<EOF\n[\s\S]*?\nEOF\n/,
      'RUN --mount=type=cache,target=/cache set -e; mkdir -p /out/bin; sed "s/@GREETING@/${GREETING}/" greet.sh.in > /out/bin/greet; chmod 0755 /out/bin/greet; date -u +%s > /cache/last-build\n',
    );
  if (text.includes("<<EOF")) throw new Error("could not rewrite the example's heredoc for Docker 20.10");
  writeFileSync(dockerfile, text);
}

/** The git ref `make bench` compares against by default: the last release tag, else HEAD~20. */
export function defaultBaseline(): string {
  const tag = Bun.spawnSync(["git", "describe", "--tags", "--abbrev=0", "--match", "v*"], { cwd: REPO_ROOT, stdout: "pipe", stderr: "ignore" });
  return tag.exitCode === 0 ? tag.stdout.toString().trim() : "HEAD~20";
}

/**
 * The MemoBuild binary of `ref`, compiled by that version's own `make build` in a scratch clone
 * under `scratch` (sharing this repository's objects; nothing here is touched). Kept per commit:
 * a second run reuses it.
 */
export function baselineBinary(ref: string, scratch: string): { binary: string; commit: string } {
  const parsed = Bun.spawnSync(["git", "rev-parse", "--verify", `${ref}^{commit}`], { cwd: REPO_ROOT, stdout: "pipe", stderr: "pipe" });
  if (parsed.exitCode !== 0) throw new Error(`BASELINE=${ref} is not a commit of this repository`);
  const commit = parsed.stdout.toString().trim();
  const dir = join(scratch, `memobuild-baseline-${commit.slice(0, 12)}`);
  const binary = join(dir, "dist/memobuild");
  if (existsSync(binary)) return { binary, commit };
  mkdirSync(scratch, { recursive: true });
  if (!existsSync(dir)) timed(["git", "clone", "--quiet", "--shared", "--no-checkout", REPO_ROOT, dir]);
  timed(["git", "checkout", "--quiet", "--detach", commit], { cwd: dir });
  // Its own lockfile's packages (from bun's cache), then its own build rule and flags.
  timed([process.execPath, "install", "--frozen-lockfile"], { cwd: dir });
  timed(["make", "build", `BUN=${process.execPath}`], { cwd: dir });
  return { binary, commit };
}

/** The busybox base image, built by `binary` offline and exported as an OCI layout under `work`. */
export function baseImageOci(binary: string, work: string): string {
  timed(["bash", join(REPO_ROOT, "scripts/prepare-base-rootfs.sh")]);
  const oci = join(work, "base-oci");
  timed([binary, "build", join(REPO_ROOT, "examples/base"), "--cache-dir", join(work, "base-cache"), "-t", "memobuild/busybox:latest", "--output", `type=oci,dest=${oci}`]);
  return oci;
}

/** The same base image in Docker, imported from its root filesystem. */
export function importBaseIntoDocker(docker: Dockerd, oci: string, work: string) {
  const bundle = join(work, "base-bundle");
  timed(["umoci", "unpack", "--image", `${oci}:memobuild/busybox:latest`, bundle]);
  timed(["sh", "-c", `tar -C ${join(bundle, "rootfs")} -c . | ${DOCKER} import - memobuild/busybox:latest`], { env: docker.env });
}
