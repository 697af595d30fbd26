/** Namespaces made on this thread by system calls: the child gets them, this thread comes back unchanged. */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mount, umount } from "./libc.ts";
import { createNetworkNamespace, spawnInNewMountNamespace } from "./namespace.ts";

const mounted = (path: string) => readFileSync("/proc/thread-self/mountinfo", "utf8").split("\n").some((line) => line.split(" ")[4] === path);

describe("spawnInNewMountNamespace", () => {
  test("the child starts in the changed copy; this thread, its working directory and the host keep theirs", async () => {
    const dir = mkdtempSync(join(tmpdir(), "memobuild-ns-"));
    const ours = readlinkSync("/proc/thread-self/ns/mnt");
    const cwd = process.cwd();
    mount("tmpfs", dir, "tmpfs", 0, "size=64k");
    try {
      writeFileSync(join(dir, "marker"), "");
      const child = spawnInNewMountNamespace(
        () => expect(umount(dir)).toBe(true),
        () => Bun.spawn(["sh", "-c", 'readlink /proc/self/ns/mnt; grep -c " $0 " /proc/self/mountinfo; pwd', dir], { stdout: "pipe" }),
      );
      const [namespace, count, childCwd] = (await new Response(child.stdout).text()).trim().split("\n");
      expect(namespace).not.toBe(ours);
      expect(count).toBe("0"); // unmounted there
      expect(childCwd).toBe(cwd);
      expect(readlinkSync("/proc/thread-self/ns/mnt")).toBe(ours);
      expect(mounted(dir)).toBe(true); // not on the host
      expect(readlinkSync("/proc/thread-self/cwd")).toBe(cwd);
    } finally {
      umount(dir, true);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a failing spawn still brings the thread back", () => {
    const ours = readlinkSync("/proc/thread-self/ns/mnt");
    expect(() =>
      spawnInNewMountNamespace(
        () => {},
        () => {
          throw new Error("no runtime");
        },
      ),
    ).toThrow("no runtime");
    expect(readlinkSync("/proc/thread-self/ns/mnt")).toBe(ours);
  });
});

test("createNetworkNamespace binds a new network namespace to the file, and this thread keeps its own", () => {
  const dir = mkdtempSync(join(tmpdir(), "memobuild-netns-"));
  const file = join(dir, "ns");
  writeFileSync(file, "");
  const ours = readlinkSync("/proc/thread-self/ns/net");
  try {
    createNetworkNamespace(file);
    expect(readlinkSync("/proc/thread-self/ns/net")).toBe(ours);
    expect(mounted(file)).toBe(true);
    const inside = Bun.spawnSync(["nsenter", `--net=${file}`, "readlink", "/proc/self/ns/net"], { stdout: "pipe" });
    expect(inside.exitCode).toBe(0);
    const theirs = inside.stdout.toString().trim();
    expect(theirs).toMatch(/^net:\[\d+\]$/);
    expect(theirs).not.toBe(ours);
  } finally {
    umount(file, true);
    rmSync(dir, { recursive: true, force: true });
  }
});

test("createNetworkNamespace with a tap name makes that tap device in it, persistent (so the process that attaches to it does not unregister it when it exits)", () => {
  const dir = mkdtempSync(join(tmpdir(), "memobuild-netns-"));
  const file = join(dir, "ns");
  writeFileSync(file, "");
  try {
    createNetworkNamespace(file, "tap0");
    const link = Bun.spawnSync(["nsenter", `--net=${file}`, "ip", "-d", "link", "show", "tap0"], { stdout: "pipe", stderr: "pipe" });
    expect(link.stderr.toString()).toBe("");
    expect(link.stdout.toString()).toMatch(/tun type tap pi off .*persist on/);
    // The host has no such device from it.
    expect(Bun.spawnSync(["ip", "link", "show", "tap0"], { stderr: "pipe" }).exitCode).not.toBe(0);
  } finally {
    umount(file, true);
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a thread the runtime starts inside the mount-namespace window (here a Worker) does not stop the process: this thread still comes home", () => {
  // In a process of its own: without the fix, comeHome ends the process (exit 70).
  const dir = mkdtempSync(join(tmpdir(), "memobuild-ns-thread-"));
  try {
    const script = join(dir, "window.ts");
    writeFileSync(
      script,
      `import { readlinkSync } from "node:fs";
import { spawnInNewMountNamespace } from ${JSON.stringify(join(import.meta.dir, "namespace.ts"))};
const before = readlinkSync("/proc/thread-self/ns/mnt");
let worker;
const child = spawnInNewMountNamespace(
  () => { worker = new Worker(URL.createObjectURL(new Blob(["self.onmessage = () => {}"]))); },
  () => Bun.spawn(["true"]),
);
await child.exited;
worker.terminate();
console.log(readlinkSync("/proc/thread-self/ns/mnt") === before ? "home" : "lost");
`,
    );
    const run = Bun.spawnSync([process.execPath, script], { stdout: "pipe", stderr: "pipe" });
    expect(run.stderr.toString()).toBe("");
    expect(run.exitCode).toBe(0);
    expect(run.stdout.toString().trim()).toBe("home");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
