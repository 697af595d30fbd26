/** What the multi-platform tests share: this machine's architecture, the other one, and a base of both. */
import { cpSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "./binary.ts";
import { writeProject } from "./base-image.ts";

export const hostArch = Bun.spawnSync(["dpkg", "--print-architecture"]).stdout.toString().trim();
export const otherArch = hostArch === "arm64" ? "amd64" : "arm64";
/** `uname -m` of each architecture. */
export const uname: Record<string, string> = { amd64: "x86_64", arm64: "aarch64" };
export const bothPlatforms = `linux/${hostArch},linux/${otherArch}`;

/**
 * A project at `dir` building the busybox base for both architectures (each platform copies its
 * own architecture's busybox), after both root file systems are prepared (the other one from
 * Debian's busybox-static for that architecture).
 */
export function multiArchBaseProject(dir: string): string {
  for (const arch of [undefined, otherArch]) {
    const result = Bun.spawnSync(["bash", join(REPO_ROOT, "scripts/prepare-base-rootfs.sh"), ...(arch ? [arch] : [])], { stderr: "pipe" });
    if (result.exitCode !== 0) throw new Error(result.stderr.toString());
  }
  const base = writeProject(dir, {
    Dockerfile: 'FROM scratch\nARG TARGETARCH\nCOPY rootfs-${TARGETARCH}/ /\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\nENV PATH=/usr/sbin:/usr/bin:/sbin:/bin\nCMD ["/bin/sh"]\n',
  });
  cpSync(join(REPO_ROOT, "examples/base/rootfs"), join(base, `rootfs-${hostArch}`), { recursive: true });
  cpSync(join(REPO_ROOT, `examples/base/rootfs-${otherArch}`), join(base, `rootfs-${otherArch}`), { recursive: true });
  return base;
}
