/**
 * The reference builder for side-by-side tests: Debian's dockerd (BuildKit inside), started on
 * a private socket with its own data root and bridge, and fed MemoBuild's own busybox base (no network).
 */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";

const DOCKER = existsSync("/usr/bin/docker") ? "/usr/bin/docker" : "docker";

export class BuildKit {
  private constructor(
    private readonly work: string,
    private readonly daemon: ReturnType<typeof Bun.spawn>,
    readonly env: Record<string, string>,
    private readonly bridge: string,
  ) {}

  /** Starts dockerd under `work` and waits until it answers. */
  static async start(work: string): Promise<BuildKit> {
    mkdirSync(work, { recursive: true });
    const socket = join(work, "docker.sock");
    const bridge = makeBridge();
    const daemon = Bun.spawn(
      ["dockerd", "--iptables=false", "--ip-masq=false", `--bridge=${bridge}`, "--host", `unix://${socket}`, "--data-root", join(work, "data"), "--exec-root", join(work, "exec"), "--pidfile", join(work, "docker.pid")],
      { stdout: "ignore", stderr: "ignore" },
    );
    const env = { ...(process.env as Record<string, string>), DOCKER_HOST: `unix://${socket}`, DOCKER_BUILDKIT: "1" };
    const kit = new BuildKit(work, daemon, env, bridge);
    for (let i = 0; i < 150; i++) {
      if (Bun.spawnSync([DOCKER, "info"], { env, stdout: "ignore", stderr: "ignore" }).exitCode === 0) return kit;
      await Bun.sleep(200);
    }
    await kit.stop();
    throw new Error("dockerd did not start");
  }

  docker(...args: string[]): { exitCode: number; stdout: string; stderr: string } {
    const result = Bun.spawnSync([DOCKER, ...args], { env: this.env, stdout: "pipe", stderr: "pipe" });
    return { exitCode: result.exitCode ?? -1, stdout: result.stdout.toString(), stderr: result.stderr.toString() };
  }

  /** `docker load` of an archive (MemoBuild's base image, exported as a docker archive). */
  load(archive: string) {
    const result = this.docker("load", "-i", archive);
    if (result.exitCode !== 0) throw new Error(`docker load: ${result.stderr}`);
  }

  /**
   * Builds `dir` with BuildKit (extra `docker build` flags: --build-arg, --target, ...) and saves
   * the image as a docker archive. RUN has the host's network unless `hostNetwork` is false.
   */
  build(dir: string, tag: string, flags: string[] = [], options: { hostNetwork: boolean } = { hostNetwork: true }): { archive?: string; error?: string } {
    const result = this.docker("build", "-q", ...(options.hostNetwork ? ["--network", "host"] : []), ...flags, "-t", tag, dir);
    if (result.exitCode !== 0) return { error: result.stderr };
    const archive = join(this.work, `${tag.replace(/[^a-z0-9]/g, "_")}.tar`);
    const save = this.docker("save", "-o", archive, tag);
    if (save.exitCode !== 0) throw new Error(`docker save: ${save.stderr}`);
    this.docker("rmi", tag);
    return { archive };
  }

  async stop() {
    this.daemon.kill("SIGTERM");
    await this.daemon.exited;
    Bun.spawnSync(["sh", "-c", `grep ' ${this.work}/' /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r -n1 umount -l`]);
    Bun.spawnSync(["ip", "link", "del", this.bridge], { stderr: "ignore" });
  }
}

/**
 * A bridge of this suite's own for BuildKit's default network (RUN without --network host): a
 * link-local subnet with no route out (no iptables, no masquerading), so RUN sees an interface
 * besides lo and nothing on the host changes beyond the bridge, removed by stop().
 */
function makeBridge(): string {
  const name = `mbpar${process.pid % 100000}`;
  const third = process.pid % 250;
  for (const command of [
    ["ip", "link", "add", name, "type", "bridge"],
    ["ip", "addr", "add", `169.254.${third}.1/24`, "dev", name],
    ["ip", "link", "set", name, "up"],
  ]) {
    const result = Bun.spawnSync(command, { stderr: "pipe" });
    if (result.exitCode !== 0) throw new Error(`${command.join(" ")}: ${result.stderr.toString()}`);
  }
  return name;
}
