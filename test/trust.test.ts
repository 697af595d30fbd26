/**
 * Trust (issue 11), end to end with the compiled binary: what a cache key or a diff ID stands
 * for can never be changed by an image, an import, or another writer of the shared cache.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { memobuildBinary, REPO_ROOT, runMemobuild, runMemobuildAsync } from "./support/binary.ts";
import { startCacheServer, type CacheServer } from "./support/server.ts";
import { writeProject } from "./support/base-image.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-trust-"));
// `make audit` keeps what the tests leave (MEMOBUILD_TEST_KEEP=1) and searches it for the secrets.
afterAll(() => process.env.MEMOBUILD_TEST_KEEP || rmSync(work, { recursive: true, force: true }));
const baseOci = join(work, "base-oci");

const sha256 = (bytes: Uint8Array) => `sha256:${new Bun.CryptoHasher("sha256").update(bytes).digest("hex")}`;
const blobFile = (layout: string, digest: string) => join(layout, "blobs/sha256", digest.slice(7));
const readJson = (layout: string, digest: string) => JSON.parse(readFileSync(blobFile(layout, digest), "utf8"));

function mustRun(args: string[]) {
  const result = runMemobuild(args);
  if (result.exitCode !== 0) throw new Error(`memobuild ${args.join(" ")} failed (${result.exitCode}):\n${result.stderr}`);
  return result;
}

const project = (name: string, files: Record<string, string>) => writeProject(join(work, name), files);

/** Builds into an uncompressed OCI layout; returns the layout's manifest digest. */
function buildLayout(cache: string, dir: string, out: string): { manifestDigest: string; manifest: { layers: { digest: string; size: number }[]; config: { digest: string } } } {
  rmSync(out, { recursive: true, force: true });
  const meta = join(work, "meta.json");
  mustRun(["build", dir, "--cache-dir", cache, "--progress", "plain", "--metadata-file", meta, "--output", `type=oci,dest=${out},compression=uncompressed`]);
  const manifestDigest = JSON.parse(readFileSync(meta, "utf8"))["containerimage.digest"];
  return { manifestDigest, manifest: readJson(out, manifestDigest) };
}

beforeAll(() => {
  const prepare = Bun.spawnSync(["bash", join(REPO_ROOT, "scripts/prepare-base-rootfs.sh")], { stderr: "pipe" });
  if (prepare.exitCode !== 0) throw new Error(prepare.stderr.toString());
  memobuildBinary();
  mustRun(["build", join(REPO_ROOT, "examples/base"), "--cache-dir", join(work, "base-cache"), "-t", "memobuild/busybox:latest", "--output", `type=oci,dest=${baseOci}`]);
}, 120_000);

describe("the local store is write-once", () => {
  test("an imported image that claims an existing diff ID for other bytes is refused, and builds keep exporting the real layer", () => {
    const cache = join(work, "victim-cache");
    mustRun(["build", join(REPO_ROOT, "examples/base"), "--cache-dir", cache, "-t", "memobuild/busybox:latest"]);
    const honest = project("honest", { Dockerfile: "FROM memobuild/busybox\nRUN echo honest > /f\n" });
    const first = buildLayout(cache, honest, join(work, "honest-oci"));
    const runLayer = first.manifest.layers.at(-1)!;

    // The attacker's image: the same config (so the same diff IDs), but its last layer's bytes
    // are another tar.
    const evil = join(work, "evil-oci");
    cpSync(join(work, "honest-oci"), evil, { recursive: true });
    const evilRoot = join(work, "evil-root");
    mkdirSync(evilRoot);
    writeFileSync(join(evilRoot, "f"), "evil\n");
    const evilTar = join(work, "evil.tar");
    expect(Bun.spawnSync(["tar", "-cf", evilTar, "-C", evilRoot, "f"]).exitCode).toBe(0);
    const evilBytes = readFileSync(evilTar);
    const evilDigest = sha256(evilBytes);
    writeFileSync(blobFile(evil, evilDigest), evilBytes);
    const manifest = { ...first.manifest, layers: [...first.manifest.layers.slice(0, -1), { ...runLayer, digest: evilDigest, size: evilBytes.length }] };
    const manifestBytes = Buffer.from(JSON.stringify(manifest));
    writeFileSync(blobFile(evil, sha256(manifestBytes)), manifestBytes);
    writeFileSync(join(evil, "index.json"), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", digest: sha256(manifestBytes), size: manifestBytes.length }] }));

    const imported = runMemobuild(["image", "import", `oci:${evil}`, "-t", "evil:1", "--cache-dir", cache]);
    expect(imported.exitCode).toBe(1);
    expect(imported.stderr).toContain(`layer ${evilDigest} does not match its diff ID ${runLayer.digest}`);

    // The victim's rebuild runs nothing and still exports the honest layer.
    const again = buildLayout(cache, honest, join(work, "honest-oci-2"));
    expect(again.manifestDigest).toBe(first.manifestDigest);
    expect(readFileSync(blobFile(join(work, "honest-oci-2"), runLayer.digest)).length).toBe(runLayer.size);
  }, 120_000);

  test("a step run again with --no-cache does not change what its key means for later builds", () => {
    const cache = join(work, "no-cache-cache");
    mustRun(["image", "import", `oci:${baseOci}:memobuild/busybox:latest`, "--cache-dir", cache]);
    const dir = project("racy-local", { Dockerfile: "FROM memobuild/busybox\nRUN cat /proc/uptime /proc/loadavg > /stamp\n" });
    const digest = (...args: string[]) => {
      const meta = join(work, "racy-meta.json");
      mustRun(["build", dir, "--cache-dir", cache, "--metadata-file", meta, ...args]);
      return JSON.parse(readFileSync(meta, "utf8"))["containerimage.digest"] as string;
    };
    const first = digest();
    const rerun = digest("--no-cache");
    expect(rerun).not.toBe(first); // the step is not deterministic, and this build used its own run
    expect(digest()).toBe(first);
  }, 60_000);
});

const memobuild = runMemobuildAsync;

type StepMeta = { id: string; key: string; status: string; remote_refused?: string };

/** A machine: its own cache with the base image, and a build command for it. */
function machine(name: string) {
  const cache = join(work, `machine-${name}`);
  // The same base image everywhere (a base built on each machine would have its own dates).
  mustRun(["image", "import", `oci:${baseOci}:memobuild/busybox:latest`, "--cache-dir", cache]);
  return {
    cache,
    async build(dir: string, args: string[]): Promise<StepMeta[]> {
      const meta = join(work, `meta-${name}-${Math.random().toString(36).slice(2)}.json`);
      const result = await memobuild(["build", dir, "--cache-dir", cache, "--progress", "plain", "--metadata-file", meta, ...args]);
      if (result.exitCode !== 0) throw new Error(`build on ${name} failed:\n${result.stderr}`);
      return JSON.parse(readFileSync(meta, "utf8")).steps;
    },
  };
}

describe("signed results and a trust policy", () => {
  const TOKEN = "ci-and-laptops-token";
  const OTHER_TOKEN = "another-team-s-token";
  let server: CacheServer;
  let ciKey: string;
  let ciPublic: string;
  let otherKey: string;
  beforeAll(async () => {
    server = await startCacheServer(join(work, "server"), ["--token", TOKEN, "--token", OTHER_TOKEN]);
    ciKey = join(work, "ci.key");
    ciPublic = mustRun(["key", "generate", "--out", ciKey]).stdout.trim();
    otherKey = join(work, "other.key");
    mustRun(["key", "generate", "--out", otherKey]);
  }, 60_000);
  afterAll(() => server?.stop());

  test("key generate writes a private key only its owner reads, and prints the public key", () => {
    expect(ciPublic).toMatch(/^ed25519:[A-Za-z0-9_-]{43}$/);
    expect(readFileSync(`${ciKey}.pub`, "utf8")).toBe(`${ciPublic}\n`);
    expect(statSync(ciKey).mode & 0o777).toBe(0o600);
    const again = runMemobuild(["key", "generate", "--out", ciKey]);
    expect(again.exitCode).toBe(2);
    expect(again.stderr).toContain("already exists");
  });

  test("a laptop that trusts CI's key uses CI's results, and runs what another key signed", async () => {
    const remote = ["--remote", server.url, "--remote-token", TOKEN];
    const fromCi = project("from-ci", { Dockerfile: "FROM memobuild/busybox\nRUN echo ci > /ci\n" });
    const fromOther = project("from-other", { Dockerfile: "FROM memobuild/busybox\nRUN echo other > /other\n" });
    await machine("ci").build(fromCi, [...remote, "--remote-sign-key", ciKey]);
    await machine("intruder").build(fromOther, [...remote, "--remote-sign-key", otherKey]);

    const laptop = machine("laptop");
    const trusting = [...remote, "--remote-trust", ciPublic];
    expect((await laptop.build(fromCi, trusting)).map((s) => s.status)).toEqual(["cached-remote", "cached-remote"]);
    // explain, before the build, says why the other result would not be used.
    const explained = await memobuild(["explain", fromOther, "--cache-dir", laptop.cache, ...trusting]);
    expect(explained.stdout).toContain("MISS  [stage-0 2/2] RUN echo other > /other\n        remote result from an untrusted signer (ed25519:");
    const steps = await laptop.build(fromOther, trusting);
    expect(steps.map((s) => s.status)).toEqual(["cached-local", "executed"]);
    expect(steps[1].remote_refused).toMatch(/^remote result from an untrusted signer \(ed25519:[A-Za-z0-9_-]{43}\)$/);
    // Without a trust list, nothing changes for existing users: any stored result is used.
    expect((await machine("trusting-anyone").build(fromOther, remote)).map((s) => s.status)).toEqual(["cached-remote", "cached-remote"]);
  }, 120_000);

  test("another writer's different result for a key is refused and recorded; explain shows the conflict", async () => {
    const remote = ["--remote", server.url, "--remote-token", TOKEN];
    // Not deterministic: each run writes another time stamp.
    const dir = project("racy", { Dockerfile: "FROM memobuild/busybox\nRUN cat /proc/uptime /proc/loadavg > /stamp\n" });
    const first = await machine("first").build(dir, remote);
    expect(first[1].status).toBe("executed");
    // Another writer (its own token): a conflict. (The same token's would be "not reproducible".)
    const second = machine("second");
    const result = await memobuild(["build", dir, "--cache-dir", second.cache, "--progress", "plain", "--no-cache", "--remote", server.url, "--remote-token", OTHER_TOKEN]);
    expect(result.exitCode).toBe(0);
    expect(result.stderr).toContain("[stage-0 2/2] RUN cat /proc/uptime /proc/loadavg > /stamp: the remote cache holds another writer's result for this step");
    const conflicts = (await (await fetch(`${server.url}/v1/conflicts`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { conflicts: { key: string }[] };
    expect(conflicts.conflicts.filter((c) => c.key === first[1].key).length).toBe(1);
    const explained = await memobuild(["explain", dir, "--cache-dir", machine("third").cache, ...remote]);
    expect(explained.stdout).toMatch(/hit   \[stage-0 2\/2\] RUN cat \/proc\/uptime \/proc\/loadavg > \/stamp\n        CONFLICT .*: the remote kept result [0-9a-f]{12} \(unsigned, token [0-9a-f]{12}\) and refused [0-9a-f]{12}/);
    const metrics = await (await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
    // (The laptop above also uploaded its own run of a step that writes a file's time.)
    expect(metrics).toContain(`memobuild_action_conflicts_total ${conflicts.conflicts.length}`);
    expect(server.log()).toContain("conflicting result refused");
  }, 120_000);
});

describe("builds that need consent, and secrets", () => {
  let cache: string;
  beforeAll(() => {
    cache = join(work, "consent-cache");
    mustRun(["image", "import", `oci:${baseOci}:memobuild/busybox:latest`, "--cache-dir", cache]);
  });
  const build = (dir: string, ...args: string[]) => runMemobuild(["build", dir, "--cache-dir", cache, "--progress", "plain", ...args]);

  test("RUN --network=host and --security=insecure fail without --allow, and work with it", () => {
    const host = project("host-net", { Dockerfile: "FROM memobuild/busybox\nRUN --network=host cat /proc/net/dev > /devices\n" });
    const refused = build(host);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain(`${join(host, "Dockerfile")}:2:1: RUN --network=host cat /proc/net/dev > /devices: RUN --network=host uses the host's network: run the build with --allow network.host to let it`);
    expect(build(host, "--allow", "network.host").exitCode).toBe(0);

    // Mounting needs CAP_SYS_ADMIN: only a privileged (insecure) RUN has it.
    const insecure = project("insecure", { Dockerfile: "FROM memobuild/busybox\nRUN --security=insecure mkdir /m && mount -t tmpfs none /m && echo mounted > /m/x\n" });
    expect(build(insecure).stderr).toContain("run the build with --allow security.insecure to let it");
    const allowed = build(insecure, "--allow", "security.insecure");
    expect(allowed.stderr).not.toContain("error");
    expect(allowed.exitCode).toBe(0);
    const sandboxed = project("sandboxed", { Dockerfile: "FROM memobuild/busybox\nRUN mkdir /m && mount -t tmpfs none /m\n" });
    expect(build(sandboxed).exitCode).not.toBe(0);
    expect(build(host, "--allow", "network.nope").stderr).toContain("--allow network.nope: unknown entitlement");
  }, 60_000);

  test("each entitlement lets only its own kind of RUN: one --allow never stands for another", () => {
    const host = project("host-net-other", { Dockerfile: "FROM memobuild/busybox\nRUN --network=host true\n" });
    const hostWithInsecure = build(host, "--allow", "security.insecure");
    expect(hostWithInsecure.exitCode).toBe(1);
    expect(hostWithInsecure.stderr).toContain("run the build with --allow network.host to let it");
    const insecure = project("insecure-other", { Dockerfile: "FROM memobuild/busybox\nRUN --security=insecure true\n" });
    const insecureWithHost = build(insecure, "--allow", "network.host");
    expect(insecureWithHost.exitCode).toBe(1);
    expect(insecureWithHost.stderr).toContain("run the build with --allow security.insecure to let it");
  }, 60_000);

  test("--secret takes type=, id=, src= and env=, and refuses unknown keys", () => {
    const dir = project("secret-kinds", {
      Dockerfile: "FROM memobuild/busybox\nRUN --mount=type=secret,id=a --mount=type=secret,id=b --mount=type=secret,id=C,env=C cat /run/secrets/a /run/secrets/b && test \"$C\" = from-c\n",
      "a.txt": "from-a\n",
    });
    const env = { ...process.env, B_VALUE: "from-b\n", C: "from-c" };
    const ok = Bun.spawnSync([memobuildBinary(), "build", dir, "--cache-dir", cache, "--progress", "plain", "--secret", `id=a,src=${join(dir, "a.txt")}`, "--secret", "type=env,id=b,env=B_VALUE", "--secret", "id=C"], { env, stderr: "pipe" });
    expect(ok.stderr.toString()).toContain("from-a\n#2 from-b");
    expect(ok.exitCode).toBe(0);
    const unknown = runMemobuild(["build", dir, "--cache-dir", cache, "--secret", "id=a,file=x"]);
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toBe('memobuild: --secret id=a,file=x: unknown key "file" (use type=, id=, src= or env=)\n');
    expect(runMemobuild(["build", dir, "--cache-dir", cache, "--secret", "type=ssh,id=a"]).stderr).toContain('type must be file or env, not "ssh"');
  }, 60_000);

  test("a secret the build was not given is absent; required=true makes it an error", () => {
    const dir = project("no-secret", { Dockerfile: "FROM memobuild/busybox\nRUN --mount=type=secret,id=nope test ! -e /run/secrets/nope && test ! -e /run/secrets\nRUN --mount=type=secret,id=nope,required=true true\n" });
    const result = build(dir);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain('secret "nope" is required but was not given');
    expect(result.stderr).toContain("#2 DONE");
  }, 60_000);

  test("an env secret is never in a file under the cache or /dev/shm: during the RUN, after it, and after kill -9", async () => {
    const secret = process.env.MEMOBUILD_TEST_SECRET ?? `very-secret-${Math.random().toString(36).slice(2)}`;
    const findSecret = () => {
      const found = Bun.spawnSync(["grep", "-rlaF", secret, cache, "/dev/shm"], { stdout: "pipe", stderr: "ignore" });
      return found.stdout.toString().trim();
    };
    const dir = project("env-secret", { Dockerfile: "FROM memobuild/busybox\nRUN --mount=type=secret,id=tok,env=TOKEN --mount=type=secret,id=tok,target=/tok test -n \"$TOKEN\" && echo $((6 * 7)) running && sleep 60\n" });
    const child = Bun.spawn([memobuildBinary(), "build", dir, "--cache-dir", cache, "--progress", "plain", "--secret", "id=tok,env=SECRET_FOR_TEST"], {
      env: { ...process.env, SECRET_FOR_TEST: secret },
      stdout: "ignore",
      stderr: "pipe",
    });
    try {
      await secretRunKilled(child, cache, findSecret);
    } finally {
      // Whatever happens above, nothing this test started keeps running.
      child.kill("SIGKILL");
      for (const name of existsSync("/run/crun") ? readdirSync("/run/crun").filter((n) => n.startsWith(`memobuild-${child.pid}-`)) : []) {
        Bun.spawnSync(["crun", "kill", name, "KILL"]);
        Bun.spawnSync(["crun", "delete", "-f", name]);
      }
    }
  }, 60_000);
});

/** Waits for the RUN to be running, kills the build with -9, and checks what is left. */
async function secretRunKilled(child: ReturnType<typeof Bun.spawn>, cache: string, findSecret: () => string) {
  let output = "";
  const decoder = new TextDecoder();
  const reader = (child.stderr as ReadableStream<Uint8Array>).getReader();
  while (!output.includes("42 running")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the build ended early:\n${output}`);
    output += decoder.decode(value);
  }
  // Running now, with the secret in its environment and mounted as a file.
  expect(findSecret()).toBe("");
  const containers = () => (existsSync("/run/crun") ? readdirSync("/run/crun").filter((n) => n.startsWith(`memobuild-${child.pid}-`)) : []);
  expect(containers()).toHaveLength(1);
  // The RUN's private tmpfs (the only place the value is) is there while the build lives. It is
  // looked for now, not after the kill: from the kill on, any memobuild command on the machine
  // (another test file's, another user's) may be the "next command" that removes it.
  const leftover = () => readFileSync("/proc/self/mountinfo", "utf8").split("\n").filter((l) => l.includes(`/run/memobuild/${child.pid}-`));
  expect(leftover()).toHaveLength(1);
  child.kill("SIGKILL");
  await child.exited;
  expect(findSecret()).toBe("");
  // The container died with the build.
  for (let i = 0; i < 50 && containers().length; i++) await Bun.sleep(100);
  expect(containers()).toEqual([]);
  // The next command removes the killed RUN's private tmpfs.
  mustRun(["image", "ls", "--cache-dir", cache]);
  expect(leftover()).toEqual([]);
  expect(existsSync("/run/memobuild") ? readdirSync("/run/memobuild").filter((n) => n.startsWith(`${child.pid}-`)) : []).toEqual([]);
}

/** The openssl recipe the README documents: a CA, a server certificate for 127.0.0.1, a client certificate. */
function makeCertificates(dir: string) {
  mkdirSync(dir, { recursive: true });
  const openssl = (...args: string[]) => {
    const result = Bun.spawnSync(["openssl", ...args], { cwd: dir, stderr: "pipe" });
    if (result.exitCode !== 0) throw new Error(`openssl ${args.join(" ")}: ${result.stderr}`);
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  openssl("req", "-x509", ...ec, "-days", "1", "-subj", "/CN=memobuild test CA", "-keyout", "ca.key", "-out", "ca.pem");
  writeFileSync(join(dir, "server.ext"), "subjectAltName=IP:127.0.0.1\n");
  openssl("req", ...ec, "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr");
  openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1", "-extfile", "server.ext", "-out", "server.pem");
  openssl("req", ...ec, "-subj", "/CN=ci-runner", "-keyout", "client.key", "-out", "client.csr");
  openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1", "-out", "client.pem");
  // A client certificate from a CA the server does not know.
  openssl("req", "-x509", ...ec, "-days", "1", "-subj", "/CN=stranger", "-keyout", "stranger.key", "-out", "stranger.pem");
  return (name: string) => join(dir, name);
}

describe("mutual TLS", () => {
  test("the server refuses a client without a certificate from its CA at the handshake; builds with one use it", async () => {
    const file = makeCertificates(join(work, "pki"));
    const server = await startCacheServer(join(work, "mtls-server"), ["--tls-cert", file("server.pem"), "--tls-key", file("server.key"), "--tls-client-ca", file("ca.pem")], { MEMOBUILD_LOG: "debug" });
    try {
      expect(server.url).toStartWith("https://127.0.0.1:");
      const ca = readFileSync(file("ca.pem"), "utf8");
      const get = (tls: Record<string, string>) => fetch(`${server.url}/healthz`, { tls: { ca, ...tls } } as RequestInit);
      expect((await get({ cert: readFileSync(file("client.pem"), "utf8"), key: readFileSync(file("client.key"), "utf8") })).status).toBe(200);
      await expect(get({})).rejects.toThrow();
      await expect(get({ cert: readFileSync(file("stranger.pem"), "utf8"), key: readFileSync(file("stranger.key"), "utf8") })).rejects.toThrow();

      const cache = join(work, "mtls-cache");
      mustRun(["image", "import", `oci:${baseOci}:memobuild/busybox:latest`, "--cache-dir", cache]);
      const dir = project("mtls", { Dockerfile: "FROM memobuild/busybox\nRUN echo over mtls > /m\n" });
      const remote = ["--remote", server.url, "--remote-cacert", file("ca.pem"), "--remote-required"];
      const without = await memobuild(["build", dir, "--cache-dir", cache, ...remote]);
      expect(without.exitCode).toBe(1);
      expect(without.stderr).toContain(`the remote cache at ${server.url} is not answering`);
      const withCert = await memobuild(["build", dir, "--cache-dir", cache, ...remote, "--remote-cert", file("client.pem"), "--remote-key", file("client.key")]);
      expect(withCert.stderr).toContain("1 step(s) run");
      expect(withCert.exitCode).toBe(0);
      expect(server.log()).toContain("method=PUT path=/v1/actions/");
    } finally {
      await server.stop();
    }
  }, 120_000);
});
