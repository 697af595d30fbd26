/**
 * Registries end to end: Debian's docker-registry (distribution 2.8) on 127.0.0.1 with its own
 * config and storage, without auth, with htpasswd (basic) auth, and with token auth (a token
 * issuer in this test signs JWTs the registry trusts). skopeo checks what MemoBuild pushes, and
 * MemoBuild builds FROM what skopeo pushes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT, runMemobuild, runMemobuildAsync } from "./support/binary.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-registry-"));
const baseOci = join(work, "base-oci");
const running: ReturnType<typeof Bun.spawn>[] = [];
let nextPort = 15000 + (process.pid % 1000) * 5;

afterAll(async () => {
  for (const child of running) child.kill("SIGTERM");
  await Promise.all(running.map((c) => c.exited));
  rmSync(work, { recursive: true, force: true });
});

async function waitFor(url: string) {
  for (let i = 0; i < 100; i++) {
    const ok = await fetch(url).then(() => true, () => false);
    if (ok) return;
    await Bun.sleep(50);
  }
  throw new Error(`${url} did not come up`);
}

/** Starts docker-registry with `auth` (YAML lines under "auth:") on a fresh port and storage. */
async function registry(name: string, auth = ""): Promise<{ host: string; storage: string }> {
  const port = ++nextPort;
  const storage = join(work, `${name}-storage`);
  const config = join(work, `${name}.yml`);
  writeFileSync(
    config,
    `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${storage}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:${port}\n${auth ? `auth:\n${auth}` : ""}`,
  );
  running.push(Bun.spawn(["docker-registry", "serve", config], { stdout: "ignore", stderr: "ignore" }));
  await waitFor(`http://127.0.0.1:${port}/v2/`);
  return { host: `127.0.0.1:${port}`, storage };
}

const memobuild = runMemobuildAsync;

function skopeo(...args: string[]) {
  const result = Bun.spawnSync(["skopeo", ...args], { stdout: "pipe", stderr: "pipe" });
  return { stdout: result.stdout.toString(), stderr: result.stderr.toString(), exitCode: result.exitCode };
}

let plain: { host: string; storage: string };

beforeAll(async () => {
  const prepare = Bun.spawnSync(["bash", join(REPO_ROOT, "scripts/prepare-base-rootfs.sh")], { stderr: "pipe" });
  if (prepare.exitCode !== 0) throw new Error(prepare.stderr.toString());
  const base = runMemobuild(["build", join(REPO_ROOT, "examples/base"), "--cache-dir", join(work, "base-cache"), "-t", "memobuild/busybox:latest", "--output", `type=oci,dest=${baseOci}`]);
  if (base.exitCode !== 0) throw new Error(base.stderr);
  plain = await registry("plain");
}, 120_000);

describe("push and pull", () => {
  test("build --output type=registry, skopeo reads it, another cache pulls and runs it", async () => {
    const cache = join(work, "push-cache");
    expect(runMemobuild(["image", "import", `oci:${baseOci}:memobuild/busybox:latest`, "--cache-dir", cache]).exitCode).toBe(0);
    const ref = `${plain.host}/demo/hello:1`;
    const metadata = join(work, "push.json");
    const pushed = await memobuild(["build", join(REPO_ROOT, "examples/hello"), "--cache-dir", cache, "-t", ref, "--output", "type=registry", "--metadata-file", metadata]);
    expect(pushed.exitCode).toBe(0);
    const digest = JSON.parse(readFileSync(metadata, "utf8"))["containerimage.digest"];
    const inspect = skopeo("inspect", "--tls-verify=false", `docker://${ref}`);
    expect(inspect.stderr).toBe("");
    expect(JSON.parse(inspect.stdout).Digest).toBe(digest);
    // A second push skips what the registry has.
    const again = await memobuild(["image", "push", ref, "--cache-dir", cache]);
    expect(again.stdout).toBe(`${ref} ${digest}\n`);
    expect(again.stderr).not.toContain("uploaded");
    expect(again.stderr).toContain("exists");

    const other = join(work, "pull-cache");
    const pulled = await memobuild(["image", "pull", ref, "--cache-dir", other]);
    expect(pulled.stdout).toBe(`${ref} ${digest}\n`);
    expect(runMemobuild(["run", ref, "--cache-dir", other, "--", "registry"]).stdout).toBe("hello, registry!\n");
  }, 60_000);

  test("-o type=image,name=REF,push=true names and pushes without -t, as buildx; image push sends an image ID to a name", async () => {
    const cache = join(work, "image-output-cache");
    expect(runMemobuild(["image", "import", `oci:${baseOci}:memobuild/busybox:latest`, "--cache-dir", cache]).exitCode).toBe(0);
    const ref = `${plain.host}/demo/by-name:1`;
    const metadata = join(work, "image-output.json");
    const pushed = await memobuild(["build", join(REPO_ROOT, "examples/hello"), "--cache-dir", cache, "--progress", "plain", "-o", `type=image,name=${ref},push=true`, "--metadata-file", metadata]);
    expect(pushed.exitCode).toBe(0);
    const digest = JSON.parse(readFileSync(metadata, "utf8"))["containerimage.digest"];
    expect(JSON.parse(skopeo("inspect", "--tls-verify=false", `docker://${ref}`).stdout).Digest).toBe(digest);
    expect(pushed.stderr).toContain(`output registry ${ref} manifest ${digest}\n`);
    expect(runMemobuild(["image", "ls", "--cache-dir", cache]).stdout).toContain(`${ref} `);
    // The same image by its ID, to another name.
    const id = JSON.parse(readFileSync(metadata, "utf8"))["containerimage.config.digest"];
    const copy = `${plain.host}/demo/by-id:2`;
    const byId = await memobuild(["image", "push", id.slice(7, 19), copy, "--cache-dir", cache]);
    expect(byId.stdout).toBe(`${copy} ${digest}\n`);
  }, 60_000);

  test("FROM an image skopeo pushed is pulled for the build; a cross-repository push mounts", async () => {
    const copy = skopeo("copy", "--dest-tls-verify=false", `oci:${baseOci}:memobuild/busybox:latest`, `docker://${plain.host}/base/busybox:1`);
    expect(copy.exitCode).toBe(0);
    const dir = mkdtempSync(join(work, "from-"));
    writeFileSync(join(dir, "Dockerfile"), `FROM ${plain.host}/base/busybox:1\nRUN echo from-registry > /x\nCMD ["cat", "/x"]\n`);
    const cache = join(work, "from-cache");
    const result = await memobuild(["build", dir, "--cache-dir", cache, "-t", `${plain.host}/other/app:1`]);
    expect(result.exitCode).toBe(0);
    expect(result.stderr).toContain(`pulling ${plain.host}/base/busybox:1`);
    expect(runMemobuild(["run", `${plain.host}/other/app:1`, "--cache-dir", cache]).stdout).toBe("from-registry\n");
    // The base layers are in base/busybox already: pushing other/app mounts them.
    const push = await memobuild(["image", "push", `${plain.host}/other/app:1`, "--cache-dir", cache]);
    expect(push.exitCode).toBe(0);
    expect(push.stderr.match(/: mounted/g)?.length).toBe(2);
  }, 60_000);

  test("--pull looks a base up again though the store has it; --push pushes every -t and prints the registry's digest", async () => {
    const tag = `${plain.host}/pull/base:1`;
    expect(skopeo("copy", "--dest-tls-verify=false", `oci:${baseOci}:memobuild/busybox:latest`, `docker://${tag}`).exitCode).toBe(0);
    const cache = join(work, "pull-again-cache");
    const dir = mkdtempSync(join(work, "pull-again-"));
    writeFileSync(join(dir, "Dockerfile"), `FROM ${tag}\nRUN cat /marker 2>/dev/null > /seen || echo none > /seen\n`);
    const seen = async (...flags: string[]) => {
      const out = mkdtempSync(join(work, "seen-"));
      rmSync(out, { recursive: true });
      const result = await memobuild(["build", dir, "--cache-dir", cache, "--progress", "plain", "-o", `type=local,dest=${out}`, ...flags]);
      expect(result.stderr).not.toContain("memobuild:");
      return readFileSync(join(out, "seen"), "utf8").trim();
    };
    expect(await seen()).toBe("none");
    // The tag moves to an image with /marker.
    const marked = mkdtempSync(join(work, "marked-"));
    writeFileSync(join(marked, "Dockerfile"), `FROM ${tag}\nRUN echo new > /marker\n`);
    const push = await memobuild(["build", marked, "--cache-dir", join(work, "marked-cache"), "-t", tag, "--push"]);
    expect(push.exitCode).toBe(0);
    const digest = JSON.parse(skopeo("inspect", "--tls-verify=false", `docker://${tag}`).stdout).Digest;
    expect(push.stderr).toContain(`output registry ${tag} manifest ${digest}\n`); // the digest the registry has
    expect(await seen()).toBe("none"); // the store's copy of the tag, as docker build without --pull
    expect(await seen("--pull")).toBe("new");
  }, 60_000);

  test("a missing image is a clear error", async () => {
    const result = await memobuild(["image", "pull", `${plain.host}/nothing/here:1`, "--cache-dir", join(work, "missing-cache")]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toBe(`memobuild: ${plain.host}/nothing/here:1 not found in the registry\n`);
  });
});

describe("indexes, large layers, docker load", () => {
  test("a multi-platform index: this machine's platform is picked, or the error lists what there is", async () => {
    const repo = `${plain.host}/multi/app`;
    expect(skopeo("copy", "--dest-tls-verify=false", `oci:${baseOci}:memobuild/busybox:latest`, `docker://${repo}:single`).exitCode).toBe(0);
    const raw = skopeo("inspect", "--raw", "--tls-verify=false", `docker://${repo}:single`).stdout;
    const digest = `sha256:${new Bun.CryptoHasher("sha256").update(raw).digest("hex")}`;
    const arch = process.arch === "arm64" ? "arm64" : "amd64";
    const entry = (architecture: string) => ({ mediaType: "application/vnd.oci.image.manifest.v1+json", digest, size: raw.length, platform: { os: "linux", architecture } });
    const putIndex = (tag: string, manifests: object[]) =>
      fetch(`http://${repo.replace(plain.host, `${plain.host}/v2`)}/manifests/${tag}`, {
        method: "PUT",
        headers: { "content-type": "application/vnd.oci.image.index.v1+json" },
        body: JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests }),
      });
    expect((await putIndex("multi", [entry("s390x"), entry(arch)])).status).toBe(201);
    const pulled = await memobuild(["image", "pull", `${repo}:multi`, "--cache-dir", join(work, "index-cache")]);
    expect(pulled.stdout).toBe(`${repo}:multi ${digest}\n`);
    expect((await putIndex("other", [entry("s390x"), entry("riscv64")])).status).toBe(201);
    const none = await memobuild(["image", "pull", `${repo}:other`, "--cache-dir", join(work, "index-cache")]);
    expect(none.stderr).toBe(`memobuild: ${repo}:other has no image for linux/${arch} (it has: linux/s390x, linux/riscv64)\n`);
  }, 60_000);

  test("a layer over the chunk size is pushed in chunks and pulled back intact", async () => {
    const cache = join(work, "chunk-cache");
    expect(runMemobuild(["image", "import", `oci:${baseOci}:memobuild/busybox:latest`, "--cache-dir", cache]).exitCode).toBe(0);
    const dir = mkdtempSync(join(work, "chunked-"));
    writeFileSync(join(dir, "Dockerfile"), 'FROM memobuild/busybox\nRUN head -c 40000000 /dev/urandom > /big && md5sum /big > /big.md5\nCMD ["md5sum", "-c", "/big.md5"]\n');
    const ref = `${plain.host}/chunked/app:1`;
    const built = await memobuild(["build", dir, "--cache-dir", cache, "-t", ref, "--output", "type=registry"]);
    expect(built.stderr).toContain("uploaded");
    expect(built.exitCode).toBe(0);
    const other = join(work, "chunk-pull");
    expect((await memobuild(["image", "pull", ref, "--cache-dir", other])).exitCode).toBe(0);
    expect(runMemobuild(["run", ref, "--cache-dir", other]).stdout).toBe("/big: OK\n");
  }, 120_000);

  test("a docker archive loads into Debian's dockerd", async () => {
    const cache = join(work, "docker-load-cache");
    expect(runMemobuild(["image", "import", `oci:${baseOci}:memobuild/busybox:latest`, "--cache-dir", cache]).exitCode).toBe(0);
    const dir = mkdtempSync(join(work, "load-"));
    writeFileSync(join(dir, "Dockerfile"), 'FROM memobuild/busybox\nRUN echo loaded > /marker\nCMD ["cat", "/marker"]\n');
    const archive = join(work, "load.tar");
    expect((await memobuild(["build", dir, "--cache-dir", cache, "-t", "loadme:1", "--output", `type=docker-archive,dest=${archive}`])).exitCode).toBe(0);
    const socket = join(work, "docker.sock");
    const env = { ...process.env, DOCKER_HOST: `unix://${socket}` };
    const daemon = Bun.spawn(["dockerd", "--iptables=false", "--ip-masq=false", "--bridge=none", "--host", `unix://${socket}`, "--data-root", join(work, "docker-data"), "--exec-root", join(work, "docker-exec"), "--pidfile", join(work, "docker.pid")], { stdout: "ignore", stderr: "ignore" });
    const docker = existsSync("/usr/bin/docker") ? "/usr/bin/docker" : "docker";
    try {
      for (let i = 0; i < 150 && Bun.spawnSync([docker, "info"], { env, stdout: "ignore", stderr: "ignore" }).exitCode !== 0; i++) await Bun.sleep(200);
      const load = Bun.spawnSync([docker, "load", "-i", archive], { env, stdout: "pipe", stderr: "pipe" });
      expect(load.stderr.toString()).toBe("");
      expect(load.stdout.toString()).toContain("Loaded image: loadme:1");
      const inspect = Bun.spawnSync([docker, "image", "inspect", "loadme:1", "--format", "{{json .Config.Cmd}}"], { env, stdout: "pipe" });
      expect(inspect.stdout.toString().trim()).toBe('["cat","/marker"]');
    } finally {
      daemon.kill("SIGTERM");
      await daemon.exited;
      Bun.spawnSync(["sh", "-c", `grep ' ${work}/docker' /proc/mounts | cut -d' ' -f2 | sort -r | xargs -r -n1 umount -l`]);
    }
  }, 120_000);
});

describe("a registry that lies", () => {
  const blobFile = (storage: string, digest: string) => join(storage, "docker/registry/v2/blobs/sha256", digest.slice(7, 9), digest.slice(7), "data");

  test("a corrupted blob is refused and nothing is kept", async () => {
    const lying = await registry("corrupt");
    const copy = skopeo("copy", "--dest-tls-verify=false", `oci:${baseOci}:memobuild/busybox:latest`, `docker://${lying.host}/x/y:1`);
    expect(copy.exitCode).toBe(0);
    const manifest = JSON.parse(skopeo("inspect", "--raw", "--tls-verify=false", `docker://${lying.host}/x/y:1`).stdout);
    const layer = manifest.layers[0].digest as string;
    const bytes = readFileSync(blobFile(lying.storage, layer));
    bytes[bytes.length - 10] ^= 0xff;
    writeFileSync(blobFile(lying.storage, layer), bytes);
    const cache = join(work, "corrupt-cache");
    const result = await memobuild(["image", "pull", `${lying.host}/x/y:1`, "--cache-dir", cache]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(`blob ${layer} from ${lying.host}/x/y is corrupt`);
    expect(existsSync(join(cache, "blobs/sha256", layer.slice(7)))).toBe(false);
  }, 60_000);

  test("a manifest that does not match its digest is refused", async () => {
    const lying = await registry("lying-manifest");
    expect(skopeo("copy", "--dest-tls-verify=false", `oci:${baseOci}:memobuild/busybox:latest`, `docker://${lying.host}/x/y:1`).exitCode).toBe(0);
    const digest = JSON.parse(skopeo("inspect", "--tls-verify=false", `docker://${lying.host}/x/y:1`).stdout).Digest as string;
    const file = blobFile(lying.storage, digest);
    const original = readFileSync(file, "utf8");
    const tampered = original.replace(/"schemaVersion":\s*2/, '"schemaVersion":2,"annotations":{"x":"y"}');
    expect(tampered).not.toBe(original);
    writeFileSync(file, tampered);
    const result = await memobuild(["image", "pull", `${lying.host}/x/y@${digest}`, "--cache-dir", join(work, "lying-cache")]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain("does not match its digest");
  }, 60_000);
});

describe("authentication", () => {
  test("basic auth with credentials from ~/.docker/config.json", async () => {
    const htpasswd = join(work, "htpasswd");
    expect(Bun.spawnSync(["htpasswd", "-Bbc", htpasswd, "builder", "s3cret-pass"]).exitCode).toBe(0);
    const secured = await registry("basic", `  htpasswd:\n    realm: test\n    path: ${htpasswd}\n`);
    const cache = join(work, "basic-cache");
    expect(runMemobuild(["image", "import", `oci:${baseOci}:memobuild/busybox:latest`, "-t", `${secured.host}/team/base:1`, "--cache-dir", cache]).exitCode).toBe(0);
    const denied = await memobuild(["image", "push", `${secured.host}/team/base:1`, "--cache-dir", cache], { DOCKER_CONFIG: join(work, "no-docker-config") });
    expect(denied.exitCode).toBe(1);
    expect(denied.stderr).toBe(`memobuild: registry ${secured.host} needs a login: add it to ~/.docker/config.json (auths, credHelpers or credsStore)\n`);
    const dockerConfig = join(work, "docker-config");
    mkdirSync(dockerConfig, { recursive: true });
    writeFileSync(join(dockerConfig, "config.json"), JSON.stringify({ auths: { [secured.host]: { auth: Buffer.from("builder:s3cret-pass").toString("base64") } } }));
    const pushed = await memobuild(["image", "push", `${secured.host}/team/base:1`, "--cache-dir", cache], { DOCKER_CONFIG: dockerConfig });
    expect(pushed.stderr).not.toContain("memobuild:");
    expect(pushed.exitCode).toBe(0);
    const pulled = await memobuild(["image", "pull", `${secured.host}/team/base:1`, "--cache-dir", join(work, "basic-pull")], { DOCKER_CONFIG: dockerConfig });
    expect(pulled.exitCode).toBe(0);

    // The same login from a credential helper (the docker-credential-* protocol), named for
    // this registry (credHelpers) or for every registry (credsStore).
    const helpers = join(work, "helpers");
    mkdirSync(helpers, { recursive: true });
    const asked = join(work, "helper-asked");
    writeFileSync(
      join(helpers, "docker-credential-memotest"),
      `#!/bin/sh\n[ "$1" = get ] || exit 2\nread server\necho "$server" >> ${asked}\n` +
        `if [ "$server" = "${secured.host}" ]; then echo '{"ServerURL":"${secured.host}","Username":"builder","Secret":"s3cret-pass"}'; else echo "credentials not found in native keychain"; exit 1; fi\n`,
      { mode: 0o755 },
    );
    const env = (config: object) => {
      const dir = join(work, `docker-config-${Object.keys(config)[0]}`);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, "config.json"), JSON.stringify(config));
      return { DOCKER_CONFIG: dir, PATH: `${helpers}:${process.env.PATH}` };
    };
    for (const config of [{ credHelpers: { [secured.host]: "memotest" } }, { credsStore: "memotest" }]) {
      const viaHelper = await memobuild(["image", "pull", `${secured.host}/team/base:1`, "--cache-dir", join(work, `helper-pull-${Object.keys(config)[0]}`)], env(config));
      expect(viaHelper.stderr).not.toContain("memobuild:");
      expect(viaHelper.exitCode).toBe(0);
    }
    expect(readFileSync(asked, "utf8")).toBe(`${secured.host}\n${secured.host}\n`);
    const missing = await memobuild(["image", "pull", `${secured.host}/team/base:1`, "--cache-dir", join(work, "helper-missing")], env({ credsStore: "nothere" }));
    expect(missing.stderr).toBe("memobuild: the Docker config names credential helper docker-credential-nothere, which is not on PATH\n");
  }, 60_000);

  test("a registry that needs a bearer token (the WWW-Authenticate challenge flow)", async () => {
    // A token issuer: ES256 JWTs signed with a self-signed certificate the registry trusts.
    const key = join(work, "token.key");
    const cert = join(work, "token.crt");
    expect(Bun.spawnSync(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=issuer", "-keyout", key, "-out", cert], { stderr: "ignore" }).exitCode).toBe(0);
    const pkcs8 = Bun.spawnSync(["openssl", "pkcs8", "-topk8", "-nocrypt", "-in", key, "-outform", "DER"], { stdout: "pipe" }).stdout;
    const certDer = Bun.spawnSync(["openssl", "x509", "-in", cert, "-outform", "DER"], { stdout: "pipe" }).stdout;
    const signingKey = await crypto.subtle.importKey("pkcs8", new Uint8Array(pkcs8), { name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]);
    const b64url = (data: Uint8Array | string) => Buffer.from(data).toString("base64url");
    let tokensIssued = 0;
    const issuer = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(request) {
        const url = new URL(request.url);
        const scopes = url.searchParams.getAll("scope").flatMap((s) => s.split(" "));
        const access = scopes.filter(Boolean).map((scope) => {
          const [type, name, actions] = scope.split(":");
          return { type, name, actions: actions.split(",") };
        });
        const now = Math.floor(Date.now() / 1000);
        const header = b64url(JSON.stringify({ alg: "ES256", typ: "JWT", x5c: [Buffer.from(certDer).toString("base64")] }));
        const claims = b64url(JSON.stringify({ iss: "test-issuer", sub: "builder", aud: "test-registry", exp: now + 300, nbf: now - 10, iat: now, jti: String(Math.random()), access }));
        const signature = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, signingKey, new TextEncoder().encode(`${header}.${claims}`));
        tokensIssued++;
        return Response.json({ token: `${header}.${claims}.${b64url(new Uint8Array(signature))}` });
      },
    });
    try {
      const secured = await registry(
        "token",
        `  token:\n    realm: http://127.0.0.1:${issuer.port}/token\n    service: test-registry\n    issuer: test-issuer\n    rootcertbundle: ${cert}\n`,
      );
      const cache = join(work, "token-cache");
      expect(runMemobuild(["image", "import", `oci:${baseOci}:memobuild/busybox:latest`, "-t", `${secured.host}/team/app:1`, "--cache-dir", cache]).exitCode).toBe(0);
      const pushed = await memobuild(["image", "push", `${secured.host}/team/app:1`, "--cache-dir", cache]);
      expect(pushed.stderr).not.toContain("memobuild:");
      expect(pushed.exitCode).toBe(0);
      const pulled = await memobuild(["image", "pull", `${secured.host}/team/app:1`, "--cache-dir", join(work, "token-pull")]);
      expect(pulled.exitCode).toBe(0);
      expect(tokensIssued).toBeGreaterThan(0);
      // Without the token service's blessing the registry says no.
      expect((await fetch(`http://${secured.host}/v2/team/app/tags/list`)).status).toBe(401);
    } finally {
      issuer.stop(true);
    }
  }, 60_000);
});
