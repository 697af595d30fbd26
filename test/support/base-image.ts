/**
 * The busybox base image end-to-end tests build on (made offline by MemoBuild itself), and the
 * small projects and "machines" (cache directories that have it) they build with.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT, runMemobuild } from "./binary.ts";

/** Builds memobuild/busybox:latest into an OCI layout at `dest` (for beforeAll). */
export function buildBaseImage(work: string, dest: string) {
  const prepare = Bun.spawnSync(["bash", join(REPO_ROOT, "scripts/prepare-base-rootfs.sh")], { stderr: "pipe" });
  if (prepare.exitCode !== 0) throw new Error(prepare.stderr.toString());
  const base = runMemobuild(["build", join(REPO_ROOT, "examples/base"), "--cache-dir", join(work, "base-cache"), "-t", "memobuild/busybox:latest", "--output", `type=oci,dest=${dest}`]);
  if (base.exitCode !== 0) throw new Error(base.stderr);
}

/** A cache directory with the base image imported: one build machine. */
export function machineWithBase(cache: string, baseOci: string): string {
  const result = runMemobuild(["image", "import", `oci:${baseOci}:memobuild/busybox:latest`, "--cache-dir", cache]);
  if (result.exitCode !== 0) throw new Error(result.stderr);
  return cache;
}

/** Writes a project's files (paths may have directories) under `dir`; returns `dir`. */
export function writeProject(dir: string, files: Record<string, string>): string {
  for (const [file, content] of Object.entries(files)) {
    mkdirSync(join(dir, file, ".."), { recursive: true });
    writeFileSync(join(dir, file), content);
  }
  return dir;
}
