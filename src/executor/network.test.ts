import { expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { effectiveNetwork, networksStopped, openNetwork, reapAbandonedNetworks, sandboxResolvConf } from "./network.ts";

/** The processes whose command line names `path`. */
const processesOn = (path: string) =>
  readdirSync("/proc")
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => {
      try {
        return readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").includes(path);
      } catch {
        return false;
      }
    });

test("the RUN's own --network wins, except default, which is the build's", () => {
  expect(effectiveNetwork(undefined, "default")).toBe("default");
  expect(effectiveNetwork("default", "none")).toBe("none");
  expect(effectiveNetwork("none", "default")).toBe("none");
  expect(effectiveNetwork("host", "none")).toBe("host");
});

test("resolv.conf names slirp4netns's forwarder instead of the host's servers, and keeps search and options", () => {
  const host = "# generated\nnameserver 127.0.0.53\nnameserver 10.1.1.1\nsearch corp.example\noptions edns0 trust-ad\n";
  expect(sandboxResolvConf(host)).toBe("nameserver 10.0.2.3\n# generated\nsearch corp.example\noptions edns0 trust-ad\n");
  expect(sandboxResolvConf("")).toBe("nameserver 10.0.2.3\n");
});

test("a dead build's slirp4netns still running is killed, and its namespace unmounted and removed", async () => {
  const base = "/run/memobuild-net-test";
  mkdirSync(base, { recursive: true });
  const namespace = `${base}/999999995-0123456789ab`;
  writeFileSync(namespace, "");
  expect(Bun.spawnSync(["unshare", `--net=${namespace}`, "true"]).exitCode).toBe(0);
  // Its stdin is ours and stays open: it would not exit by itself (as when its build froze).
  const slirp = Bun.spawn(["slirp4netns", "--configure", "--exit-fd=0", "--netns-type=path", namespace, "tap0"], { stdin: "pipe", stdout: "ignore", stderr: "ignore" });
  try {
    for (let i = 0; i < 50 && !readFileSync(`/proc/${slirp.pid}/cmdline`, "utf8").includes(namespace); i++) await Bun.sleep(20);
    reapAbandonedNetworks((pid) => pid !== 999999995, base);
    expect(await Promise.race([slirp.exited.then(() => "exited"), Bun.sleep(3000).then(() => "running")])).toBe("exited");
    expect(slirp.signalCode).toBe("SIGKILL");
    expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(namespace);
    expect(existsSync(namespace)).toBe(false);
  } finally {
    slirp.kill("SIGKILL");
    Bun.spawnSync(["umount", "-l", namespace], { stderr: "ignore" });
    Bun.spawnSync(["rm", "-rf", base]);
  }
});

test("the namespaces of live builds are left alone", () => {
  const base = "/run/memobuild-net-test-live";
  mkdirSync(base, { recursive: true });
  const namespace = `${base}/424242-0123456789ab`;
  writeFileSync(namespace, "");
  try {
    reapAbandonedNetworks((pid) => pid === 424242, base);
    expect(existsSync(namespace)).toBe(true);
  } finally {
    Bun.spawnSync(["rm", "-rf", base]);
  }
});

test("a default network is usable once ready; closed, its namespace is gone at once and its slirp4netns has exited when networksStopped settles", async () => {
  const network = openNetwork("default", { hostLoopback: false });
  const namespace = network.namespace!;
  try {
    await network.ready;
    const tap = Bun.spawnSync(["nsenter", `--net=${namespace}`, "ip", "-o", "addr", "show", "tap0"], { stdout: "pipe", stderr: "pipe" });
    expect(tap.stdout.toString()).toContain("10.0.2.100/24");
    const slirps = processesOn(namespace);
    expect(slirps.length).toBe(1);
    await network.close();
    expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(namespace);
    expect(existsSync(namespace)).toBe(false);
    // A RUN does not wait for slirp4netns to exit (that takes the kernel a while); the build does.
    await networksStopped();
    expect(existsSync(`/proc/${slirps[0]}`)).toBe(false);
  } finally {
    await network.close();
    await networksStopped();
  }
});
