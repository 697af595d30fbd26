/**
 * The reference builder for side-by-side tests: Debian's dockerd (BuildKit inside), started on
 * a private socket with its own data root and fed MemoBuild's own busybox base (no network).
 */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";

const DOCKER = existsSync("/usr/bin/docker") ? "/usr/bin/docker" : "docker";

export class BuildKit {
  private constructor(
    private readonly work: string,
    private readonly daemon: ReturnType<typeof Bun.spawn>,
    readonly env: Record<string, string>,
  ) {}

  /** Starts dockerd under `work` and waits until it answers. */
  static async start(work: string): Promise<BuildKit> {
    mkdirSync(work, { recursive: true });
    const socket = join(work, "docker.sock");
    const daemon = Bun.spawn(
      ["dockerd", "--iptables=false", "--ip-masq=false", "--bridge=none", "--host", `unix://${socket}`, "--data-root", join(work, "data"), "--exec-root", join(work, "exec"), "--pidfile", join(work, "docker.pid")],
      { stdout: "ignore", stderr: "ignore" },
    );
    const env = { ...(process.env as Record<string, string>), DOCKER_HOST: `unix://${socket}`, DOCKER_BUILDKIT: "1" };
    const kit = new BuildKit(work, daemon, env);
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
   * the image as a docker archive.
   */
  build(dir: string, tag: string, flags: string[] = []): { archive?: string; error?: string } {
    const result = this.docker("build", "-q", "--network", "host", ...flags, "-t", tag, dir);
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
  }
}
