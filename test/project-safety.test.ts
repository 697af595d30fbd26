/**
 * What a repository (a pull request) can do with what it commits, end to end from the binary:
 * a memobuild.json that reaches out of the project or retags a base image, and the outputs,
 * named contexts and secrets a build is given around it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runMemobuild } from "./support/binary.ts";
import { buildBaseImage, machineWithBase, writeProject } from "./support/base-image.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-project-safety-"));
const baseOci = join(work, "base-oci");
afterAll(() => rmSync(work, { recursive: true, force: true }));
let cache = "";
beforeAll(() => {
  buildBaseImage(work, baseOci);
  cache = machineWithBase(join(work, "cache"), baseOci);
}, 120_000);

const env = { XDG_CONFIG_HOME: join(work, "no-user-config") };
/** A repository (with .git, so the project file search stops there) holding `files`. */
function repo(name: string, files: Record<string, string>): string {
  const dir = writeProject(join(work, name), files);
  mkdirSync(join(dir, ".git"), { recursive: true });
  return dir;
}
const build = (cwd: string, ...args: string[]) => runMemobuild(["build", "--cache-dir", cache, "--progress", "plain", ...args], { cwd, env });
const imageDigest = (ref: string) => runMemobuild(["image", "ls", "--cache-dir", cache]).stdout.split("\n").find((line) => line.startsWith(`${ref} `))?.split(/\s+/).slice(1, 3).join(" ");

describe("memobuild.json", () => {
  test("a context or Dockerfile outside the project is refused, naming the file and key; nothing of the host is read", () => {
    const outside = writeProject(join(work, "host-secrets"), { "token.txt": "ghp_hostsecret\n", Dockerfile: "FROM memobuild/busybox\nCOPY . /stolen\n" });
    const dir = repo("reach-out", { "memobuild.json": JSON.stringify({ context: outside }), Dockerfile: "FROM memobuild/busybox\n" });
    const result = build(dir);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toBe(`memobuild: ${join(dir, "memobuild.json")}: context: ${outside} is outside the project's directory ${dir}; a project file comes with the repository and may only name paths inside it. Give a path outside on the command line instead (memobuild build DIR)\n`);
    symlinkSync("/etc", join(dir, "etc"));
    writeFileSync(join(dir, "memobuild.json"), JSON.stringify({ dockerfile: "etc/shadow" }));
    const shadow = build(dir);
    expect(shadow.stderr).toContain(`dockerfile: etc/shadow is outside the project's directory ${dir} (it resolves to /etc/shadow)`);
    expect(shadow.stderr).not.toContain("root:");
  });

  test("tags may not retag an image the project did not build (a base image other builds use); -t may; the project's own names may be rebuilt", () => {
    const before = imageDigest("memobuild/busybox:latest");
    expect(before).toMatch(/^[0-9a-f]{12} sha256:[0-9a-f]{12}$/);
    const dir = repo("retag", { "memobuild.json": JSON.stringify({ tags: ["memobuild/busybox:latest"] }), Dockerfile: "FROM memobuild/busybox\nRUN echo owned > /owned\n" });
    const refused = build(dir);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain(`${join(dir, "memobuild.json")}: tags: "memobuild/busybox:latest" names an image already in the local store that this project did not build`);
    expect(refused.stderr).toContain("To replace it, tag on the command line: -t memobuild/busybox:latest");
    expect(imageDigest("memobuild/busybox:latest")).toBe(before);

    writeFileSync(join(dir, "memobuild.json"), JSON.stringify({ tags: ["retag/app:1"] }));
    expect(build(dir).exitCode).toBe(0);
    writeFileSync(join(dir, "Dockerfile"), "FROM memobuild/busybox\nRUN echo changed > /owned\n");
    expect(build(dir).exitCode).toBe(0); // its own name, again
    const other = repo("retag-other", { "memobuild.json": JSON.stringify({ tags: ["retag/app:1"] }), Dockerfile: "FROM memobuild/busybox\n" });
    expect(build(other).stderr).toContain('tags: "retag/app:1" names an image already in the local store that this project did not build');
    expect(build(other, "-t", "retag/app:1").exitCode).toBe(0); // the user's choice
  });
});

describe("outputs, named contexts and secrets", () => {
  test("-o type=local,dest= a symbolic link (dangling or not) is a clear error, not a stack trace", () => {
    const dir = repo("local-link", { Dockerfile: "FROM memobuild/busybox\n" });
    symlinkSync(join(work, "nowhere"), join(work, "dangling"));
    const dangling = build(dir, "-o", `type=local,dest=${join(work, "dangling")}`);
    expect(dangling.exitCode).toBe(1);
    expect(dangling.stderr).toContain(`memobuild: --output type=local,dest=${join(work, "dangling")}: a symbolic link (to ${join(work, "nowhere")}), not followed: name the directory itself\n`);
    mkdirSync(join(work, "empty-dir"));
    symlinkSync(join(work, "empty-dir"), join(work, "to-empty"));
    expect(build(dir, "-o", `type=local,dest=${join(work, "to-empty")}`).stderr).toContain("a symbolic link (to");
    expect(readdirSync(join(work, "empty-dir"))).toEqual([]);
  });

  test("--build-context x=oci-layout://DIR into a fresh cache unpacks the layers it imports", () => {
    const dir = repo("layout-context", { Dockerfile: "FROM base\nRUN echo ran > /ran\n" });
    const out = join(work, "layout-context-out");
    const result = runMemobuild(["build", dir, "--cache-dir", join(work, "fresh-cache"), "--progress", "plain", "--build-context", `base=oci-layout://${baseOci}:memobuild/busybox:latest`, "-o", `type=local,dest=${out}`], { env });
    expect(result.stderr).not.toContain("is not in the cache");
    expect(result.exitCode).toBe(0);
    expect(readFileSync(join(out, "ran"), "utf8")).toBe("ran\n");
  });

  test("secrets that do not fit in the RUN's 64 MiB in-memory file system say so (not: free disk space)", () => {
    const dir = repo("big-secrets", { Dockerfile: "FROM memobuild/busybox\nRUN --mount=type=secret,id=a --mount=type=secret,id=b true\n" });
    for (const name of ["a", "b"]) {
      writeFileSync(join(work, `secret-${name}`), "");
      expect(Bun.spawnSync(["truncate", "-s", "40M", join(work, `secret-${name}`)]).exitCode).toBe(0);
    }
    const result = build(dir, "--secret", `id=a,src=${join(work, "secret-a")}`, "--secret", `id=b,src=${join(work, "secret-b")}`);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain('secret "b" (40.0 MiB) does not fit, with this RUN\'s other secrets, in the 64.0 MiB in-memory file system secrets are mounted from');
    expect(result.stderr).not.toContain("cache gc");
  });
});
