/**
 * RUN's network end to end: by default a namespace of its own reaching out through slirp4netns,
 * the host's loopback reached only through `--add-host NAME:host-gateway`, `--network none` and
 * `RUN --network=none` with nothing but lo, each mode keyed apart, and nothing left running
 * after a build, also one killed with -9.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { memobuildBinary, REPO_ROOT, runMemobuild, runMemobuildAsync } from "./support/binary.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-network-"));
const cacheDir = join(work, "cache");
let server: ReturnType<typeof Bun.serve>;

beforeAll(() => {
  const prepare = Bun.spawnSync(["bash", join(REPO_ROOT, "scripts/prepare-base-rootfs.sh")], { stderr: "pipe" });
  if (prepare.exitCode !== 0) throw new Error(prepare.stderr.toString());
  const base = runMemobuild(["build", join(REPO_ROOT, "examples/base"), "--cache-dir", cacheDir, "-t", "memobuild/busybox:latest", "--progress", "quiet"]);
  if (base.exitCode !== 0) throw new Error(base.stderr);
  // A service only the host's loopback offers, as a developer's local registry or proxy.
  server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("from the host's loopback\n") });
}, 120_000);

afterAll(() => {
  server?.stop(true);
  rmSync(work, { recursive: true, force: true });
});

let count = 0;
function project(dockerfile: string): string {
  const dir = join(work, `p${++count}`);
  mkdirSync(dir);
  writeFileSync(join(dir, "Dockerfile"), dockerfile);
  return dir;
}

/** Builds (without blocking: the test's server must answer meanwhile) and returns the metadata. */
async function build(dir: string, ...flags: string[]) {
  const metadataFile = join(dir, "metadata.json");
  const result = await runMemobuildAsync(["build", dir, "--cache-dir", cacheDir, "--progress", "plain", "--metadata-file", metadataFile, ...flags]);
  const steps = existsSync(metadataFile) ? (JSON.parse(readFileSync(metadataFile, "utf8")).steps as { id: string; status: string }[]) : [];
  return { ...result, status: Object.fromEntries(steps.map((s) => [s.id, s.status])) };
}

/** A file of the built image, read through `memobuild run`. */
function readFromImage(tag: string, path: string): string {
  return runMemobuild(["run", tag, "--cache-dir", cacheDir, "--", "cat", path]).stdout;
}

const fetchHost = (name: string) => `wget -q -O - http://${name}:${server.port}/ > /got 2>&1 || echo unreachable > /got`;

describe("RUN's default network", () => {
  test("reaches a server on the host's loopback through --add-host NAME:host-gateway", async () => {
    const dir = project(`FROM memobuild/busybox\nRUN ${fetchHost("hostbox")}\nRUN cat /etc/hosts > /hosts\n`);
    const result = await build(dir, "-t", "net:gateway", "--add-host", "hostbox:host-gateway");
    expect(result.stderr).toContain("(2 step(s) run");
    expect(readFromImage("net:gateway", "/got")).toBe("from the host's loopback\n");
    expect(readFromImage("net:gateway", "/hosts")).toContain("10.0.2.2\thostbox\n");
  }, 60_000);

  test("has an interface besides lo and the host's resolver behind slirp4netns, but not the host's loopback unless asked", async () => {
    const dir = project(`FROM memobuild/busybox\nRUN ls /sys/class/net > /nets && cp /etc/resolv.conf /resolv\nRUN ${fetchHost("10.0.2.2")}\n`);
    const result = await build(dir, "-t", "net:default");
    expect(result.exitCode).toBe(0);
    expect(readFromImage("net:default", "/nets")).toBe("lo\ntap0\n");
    const resolv = readFromImage("net:default", "/resolv");
    expect(resolv.split("\n")[0]).toBe("nameserver 10.0.2.3");
    expect(resolv).not.toMatch(/nameserver (?!10\.0\.2\.3)/);
    expect(readFromImage("net:default", "/got")).toBe("unreachable\n");
  }, 60_000);

  test("--network none and RUN --network=none have lo only, and key apart from the default", async () => {
    const dockerfile = `FROM memobuild/busybox\nRUN ls /sys/class/net > /a && ${fetchHost("hostbox")}\nRUN --network=none ls /sys/class/net > /b\n`;
    const dir = project(dockerfile);
    const first = await build(dir, "-t", "net:mixed", "--add-host", "hostbox:host-gateway");
    expect([first.status["0/1"], first.status["0/2"]]).toEqual(["executed", "executed"]);
    expect(readFromImage("net:mixed", "/a")).toBe("lo\ntap0\n");
    expect(readFromImage("net:mixed", "/got")).toBe("from the host's loopback\n");
    expect(readFromImage("net:mixed", "/b")).toBe("lo\n");
    const explained = runMemobuild(["explain", dir, "--cache-dir", cacheDir, "--network", "none", "--add-host", "hostbox:host-gateway"]);
    expect(explained.stdout).toContain("the network changed: default → none");
    // The same Dockerfile without a network: the first RUN runs again, offline.
    const none = await build(dir, "-t", "net:none", "--network", "none", "--add-host", "hostbox:host-gateway");
    expect(none.status["0/1"]).toBe("executed");
    expect(readFromImage("net:none", "/a")).toBe("lo\n");
    expect(readFromImage("net:none", "/got")).toBe("unreachable\n");
    // Each mode keeps its own cached result.
    expect((await build(dir, "--add-host", "hostbox:host-gateway")).status["0/1"]).toBe("cached-local");
  }, 90_000);

  test("--network host needs --allow network.host; unknown modes are usage errors", async () => {
    const dir = project("FROM memobuild/busybox\nRUN true\n");
    const refused = await build(dir, "--network", "host");
    expect({ exitCode: refused.exitCode, stderr: refused.stderr }).toEqual({ exitCode: 2, stderr: expect.stringContaining("--network host uses the host's network: add --allow network.host") });
    const unknown = await build(dir, "--network", "bridge");
    expect({ exitCode: unknown.exitCode, stderr: unknown.stderr }).toEqual({ exitCode: 2, stderr: expect.stringContaining("--network bridge: use default, none, host") });
  });
});

describe("nothing of a RUN's network outlives its build", () => {
  const slirpsOf = (pid: number) =>
    readdirSync("/proc")
      .filter((entry) => /^\d+$/.test(entry))
      .filter((entry) => {
        try {
          return readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(`/run/memobuild-net/${pid}-`);
        } catch {
          return false;
        }
      });
  const namespacesOf = (pid: number) => readFileSync("/proc/self/mountinfo", "utf8").split("\n").filter((line) => line.includes(`/run/memobuild-net/${pid}-`));

  test("a finished build leaves no slirp4netns and no namespace", async () => {
    const dir = project("FROM memobuild/busybox\nRUN true\n");
    const child = Bun.spawn([memobuildBinary(), "build", dir, "--cache-dir", cacheDir, "--progress", "quiet"], { stdout: "ignore", stderr: "pipe" });
    expect(await child.exited).toBe(0);
    expect(slirpsOf(child.pid)).toEqual([]);
    expect(namespacesOf(child.pid)).toEqual([]);
  }, 60_000);

  test("a build killed with -9 mid-RUN leaves no slirp4netns, and the next command removes its namespace", async () => {
    const dir = project("FROM memobuild/busybox\nRUN sleep 30\n");
    const child = Bun.spawn([memobuildBinary(), "build", dir, "--cache-dir", cacheDir, "--progress", "plain"], { stdout: "ignore", stderr: "pipe" });
    const reader = child.stderr.getReader();
    let seen = "";
    while (!seen.includes("RUN sleep 30")) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += new TextDecoder().decode(value);
    }
    for (let i = 0; i < 50 && slirpsOf(child.pid).length === 0; i++) await Bun.sleep(100);
    expect(slirpsOf(child.pid).length).toBe(1); // the RUN had its network
    child.kill("SIGKILL");
    await child.exited;
    // slirp4netns notices its build is gone by itself.
    for (let i = 0; i < 50 && slirpsOf(child.pid).length > 0; i++) await Bun.sleep(100);
    expect(slirpsOf(child.pid)).toEqual([]);
    expect(namespacesOf(child.pid).length).toBe(1);
    // Any command that opens the cache clears what the dead build left.
    expect(runMemobuild(["image", "ls", "--cache-dir", cacheDir]).exitCode).toBe(0);
    expect(namespacesOf(child.pid)).toEqual([]);
    expect(readdirSync("/run/memobuild-net").filter((name) => name.startsWith(`${child.pid}-`))).toEqual([]);
  }, 60_000);
});
