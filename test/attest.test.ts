/**
 * Provenance, SBOM and signatures end to end, checked by other tools than MemoBuild's own code:
 * the SLSA and SPDX schemas (ajv), the OCI schemas, the registry API (Debian's docker-registry on
 * 127.0.0.1) and `openssl dgst -verify` for the cosign-format signature, as cosign's
 * specification describes it (cosign itself is not packaged in Debian).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createServer, type Server } from "node:net";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildBaseImage, machineWithBase, writeProject } from "./support/base-image.ts";
import { runMemobuild, runMemobuildAsync } from "./support/binary.ts";
import { attestSchemaErrors } from "./support/attest-schema.ts";
import { startCacheServer } from "./support/server.ts";
import { makeRpmDatabase } from "./support/rpmdb.ts";
import { ociSchemaErrors } from "./support/oci-schema.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-attest-"));
const baseOci = join(work, "base-oci");
const cache = join(work, "cache");
const running: ReturnType<typeof Bun.spawn>[] = [];
let sshServer: Server;
let registryHost = "";

/** Values that must never reach an attestation. */
const SECRET_VALUE = "s3cret-value-7f1c0d9e";
const SSH_SOCKET = join(work, "agent-sock-5b2e81aa");

const DPKG_STATUS = `Package: hello-deb
Status: install ok installed
Architecture: amd64
Version: 2.10-3
Description: made by hand
 over two lines

Package: removed-deb
Status: deinstall ok config-files
Version: 0.1-1

Package: tzdata-lite
Status: install ok installed
Architecture: all
Version: 2024a-1
`;
const APK_INSTALLED = "C:Q1hand=\nP:musl-hand\nV:1.2.4-r2\nA:x86_64\nL:MIT\n\nP:busybox-hand\nV:1.36.1-r5\nA:x86_64\nL:GPL-2.0-only\n";

const project = writeProject(join(work, "project"), {
  Dockerfile: [
    "FROM memobuild/busybox:latest",
    "RUN --mount=type=secret,id=token test -s /run/secrets/token",
    "COPY status /var/lib/dpkg/status",
    "COPY installed /lib/apk/db/installed",
    "COPY rpmdb.sqlite /var/lib/rpm/rpmdb.sqlite",
    "COPY --chmod=755 goapp /usr/local/bin/goapp",
    "COPY left-pad.json /app/node_modules/left-pad/package.json",
    "COPY gone.json /app/node_modules/gone/package.json",
    "COPY METADATA /usr/lib/python3/site-packages/requests-2.31.0.dist-info/METADATA",
    // Deleted in a later layer: a whiteout the SBOM must honour.
    "RUN rm -r /app/node_modules/gone",
    "",
  ].join("\n"),
  status: DPKG_STATUS,
  installed: APK_INSTALLED,
  "left-pad.json": JSON.stringify({ name: "left-pad", version: "1.3.0", license: "WTFPL" }),
  "gone.json": JSON.stringify({ name: "gone", version: "9.9.9" }),
  METADATA: "Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\nLicense: Apache-2.0\n\nbody\n",
});

const EXPECTED_PURLS = [
  "pkg:apk/alpine/busybox-hand@1.36.1-r5?arch=x86_64",
  "pkg:apk/alpine/musl-hand@1.2.4-r2?arch=x86_64",
  "pkg:deb/debian/hello-deb@2.10-3?arch=amd64",
  "pkg:deb/debian/tzdata-lite@2024a-1?arch=all",
  "pkg:golang/example.com/goapp@v1.4.0",
  "pkg:golang/golang.org/x/text@v0.14.0",
  "pkg:golang/stdlib@go1.21.6",
  "pkg:npm/left-pad@1.3.0",
  "pkg:pypi/requests@2.31.0",
  "pkg:rpm/unknown/hand-rpm@1.2.3-4?arch=noarch",
];

const BUILD = ["build", project, "--cache-dir", cache, "--progress", "plain", "--secret", "id=token,env=MB_ATTEST_TOKEN", "--ssh", `agent=${SSH_SOCKET}`];
const ENV = { MB_ATTEST_TOKEN: SECRET_VALUE };

/**
 * An ELF file with Go's inline build information (Go 1.18+: "\xff Go buildinf:", pointer size,
 * flags 2, then at offset 32 two varint-prefixed strings, the module text between 16-byte
 * sentinels), as `go version -m` reads it; no Go toolchain is packaged for the tests.
 */
function goBinary(version: string, modinfo: string): Buffer {
  const header = Buffer.alloc(32);
  header.write("\xff Go buildinf:", 0, "latin1");
  header[14] = 8;
  header[15] = 2;
  const text = Buffer.concat([Buffer.alloc(16, 0x31), Buffer.from(modinfo), Buffer.alloc(16, 0x32)]);
  const varint = (n: number) => (n < 128 ? Buffer.from([n]) : Buffer.from([(n & 0x7f) | 0x80, n >> 7]));
  return Buffer.concat([Buffer.from("\x7fELF", "latin1"), Buffer.alloc(4092), header, varint(version.length), Buffer.from(version), varint(text.length), text]);
}

async function waitFor(url: string) {
  for (let i = 0; i < 100; i++) {
    if (await fetch(url).then(() => true, () => false)) return;
    await Bun.sleep(50);
  }
  throw new Error(`${url} did not come up`);
}

beforeAll(async () => {
  const rpm = makeRpmDatabase(work, [{ name: "hand-rpm", version: "1.2.3", release: "4", arch: "noarch", license: "MIT" }]);
  writeFileSync(join(project, "rpmdb.sqlite"), rpm.database);
  writeFileSync(join(project, "goapp"), goBinary("go1.21.6", "path\texample.com/goapp\nmod\texample.com/goapp\tv1.4.0\th1:a=\ndep\tgolang.org/x/text\tv0.14.0\th1:b=\n"));
  buildBaseImage(work, baseOci);
  machineWithBase(cache, baseOci);
  sshServer = createServer();
  await new Promise<void>((done) => sshServer.listen(SSH_SOCKET, done));
  const port = 16000 + (process.pid % 1000) * 3;
  const config = join(work, "registry.yml");
  writeFileSync(config, `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${join(work, "registry")}\nhttp:\n  addr: 127.0.0.1:${port}\n`);
  running.push(Bun.spawn(["docker-registry", "serve", config], { stdout: "ignore", stderr: "ignore" }));
  registryHost = `127.0.0.1:${port}`;
  await waitFor(`http://${registryHost}/v2/`);
  for (const name of ["signer", "stranger"]) {
    const made = runMemobuild(["key", "generate", "--type", "ecdsa-p256", "--out", join(work, `${name}.key`)]);
    if (made.exitCode !== 0) throw new Error(made.stderr);
  }
}, 180_000);

afterAll(async () => {
  for (const child of running) child.kill("SIGTERM");
  await Promise.all(running.map((c) => c.exited));
  sshServer?.close();
  rmSync(work, { recursive: true, force: true });
});

const json = (path: string) => JSON.parse(readFileSync(path, "utf8"));
const blob = (layout: string, digest: string) => join(layout, "blobs/sha256", digest.slice(7));

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { os: string; architecture: string };
}

describe("an OCI layout", () => {
  const layout = join(work, "attested");
  let index: { manifests: Descriptor[] };
  let imageDigest: string;
  let statements: Map<string, { _type: string; subject: { digest: { sha256: string } }[]; predicateType: string; predicate: any }>;

  beforeAll(async () => {
    const built = await runMemobuildAsync([...BUILD, "-t", "demo/attested:1", "--provenance", "mode=max", "--sbom=true", "-o", `type=oci,dest=${layout}`, "--metadata-file", join(work, "attested.json")], ENV);
    if (built.exitCode !== 0) throw new Error(built.stderr);
    index = json(join(layout, "index.json"));
    imageDigest = json(join(work, "attested.json"))["containerimage.digest"];
    const attestation = index.manifests.find((m) => m.annotations?.["vnd.docker.reference.type"] === "attestation-manifest")!;
    const manifest = json(blob(layout, attestation.digest));
    statements = new Map(manifest.layers.map((l: Descriptor) => [l.annotations!["in-toto.io/predicate-type"], json(blob(layout, l.digest))]));
  }, 120_000);

  test("holds the attestation manifest as BuildKit writes it, beside the image", () => {
    expect(ociSchemaErrors("index", index)).toEqual([]);
    expect(index.manifests.length).toBe(2);
    const [image, attestation] = index.manifests;
    expect(image!.digest).toBe(imageDigest);
    expect(attestation!.platform).toEqual({ architecture: "unknown", os: "unknown" });
    expect(attestation!.annotations).toEqual({ "vnd.docker.reference.digest": imageDigest, "vnd.docker.reference.type": "attestation-manifest" });
    const manifest = json(blob(layout, attestation!.digest));
    expect(ociSchemaErrors("manifest", manifest)).toEqual([]);
    expect(manifest.layers.map((l: Descriptor) => [l.mediaType, l.annotations])).toEqual([
      ["application/vnd.in-toto+json", { "in-toto.io/predicate-type": "https://slsa.dev/provenance/v1" }],
      ["application/vnd.in-toto+json", { "in-toto.io/predicate-type": "https://spdx.dev/Document" }],
    ]);
  });

  test("the provenance is valid SLSA v1 about this image, with every step and its base image", () => {
    const provenance = statements.get("https://slsa.dev/provenance/v1")!;
    expect(attestSchemaErrors("slsa", provenance)).toEqual([]);
    expect(`sha256:${provenance.subject[0]!.digest.sha256}`).toBe(imageDigest);
    const { buildDefinition, runDetails } = provenance.predicate;
    expect(buildDefinition.buildType).toBe("https://memobuild.dev/buildtypes/dockerfile/v1");
    const dockerfile = readFileSync(join(project, "Dockerfile"));
    expect(buildDefinition.externalParameters.dockerfile).toEqual({ path: "Dockerfile", digest: { sha256: new Bun.CryptoHasher("sha256").update(dockerfile).digest("hex") } });
    expect(buildDefinition.externalParameters.context.digest.blake3).toMatch(/^[0-9a-f]{64}$/);
    const base = json(join(baseOci, "index.json")).manifests[0].digest;
    expect(buildDefinition.resolvedDependencies).toEqual([{ uri: "pkg:docker/memobuild/busybox@latest?platform=linux%2Famd64", digest: { sha256: base.slice(7) }, name: "memobuild/busybox:latest" }]);
    expect(buildDefinition.internalParameters.steps.length).toBe(10);
    expect(runDetails.byproducts.map((b: { annotations: { status: string } }) => b.annotations.status)).toEqual(Array(10).fill("executed"));
  });

  test("no secret value, token or --ssh socket appears in anything written", () => {
    const everything = readdirSync(join(layout, "blobs/sha256")).map((f) => readFileSync(join(layout, "blobs/sha256", f)).toString("latin1")).join("\n");
    expect(everything).toContain("type=secret,id=token"); // what was used is told, by its id…
    expect(everything).not.toContain(SECRET_VALUE); // …never its value
    expect(everything).not.toContain("agent-sock-5b2e81aa");
    expect(everything).not.toContain("MB_ATTEST_TOKEN");
  });

  test("the SBOM is valid SPDX 2.3 and lists exactly the packages the image's data names", () => {
    const sbom = statements.get("https://spdx.dev/Document")!;
    expect(`sha256:${sbom.subject[0]!.digest.sha256}`).toBe(imageDigest);
    expect(attestSchemaErrors("spdx", sbom.predicate)).toEqual([]);
    const purls = sbom.predicate.packages.map((p: { externalRefs: { referenceLocator: string }[] }) => p.externalRefs[0]!.referenceLocator);
    expect(purls.sort()).toEqual(EXPECTED_PURLS);
  });

  test("without the flags the build writes exactly what it wrote before: the same image, nothing beside it", async () => {
    const plain = join(work, "plain");
    const built = await runMemobuildAsync([...BUILD, "-t", "demo/attested:1", "-o", `type=oci,dest=${plain}`], ENV);
    expect(built.exitCode).toBe(0);
    const plainIndex = json(join(plain, "index.json"));
    expect(plainIndex.manifests.map((m: Descriptor) => m.digest)).toEqual([imageDigest]);
    expect(readdirSync(join(plain, "blobs/sha256")).length).toBe(2 + json(blob(plain, imageDigest)).layers.length);
  });

  test("an image output is needed, and a bad spelling is named", () => {
    const none = runMemobuild(["build", project, "--cache-dir", cache, "--provenance", "true"]);
    expect(none.exitCode).toBe(2);
    expect(none.stderr).toContain("attach to an image output");
    const bad = runMemobuild(["build", project, "--cache-dir", cache, "--provenance", "mode=full", "-o", `type=oci,dest=${join(work, "never")}`]);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain("mode must be min or max");
  });
});

/** GET through the registry API, as any client would. */
async function registryGet(path: string, accept = "application/vnd.oci.image.manifest.v1+json"): Promise<Response> {
  return fetch(`http://${registryHost}/v2/${path}`, { headers: { accept } });
}

/** What cosign's specification says a verifier does, with openssl for the ECDSA check. */
async function opensslVerify(repository: string, digest: string, publicKey: string): Promise<{ ok: boolean; payload: any }> {
  const response = await registryGet(`${repository}/manifests/${digest.replace(":", "-")}.sig`);
  expect(response.status).toBe(200);
  const manifest = (await response.json()) as { layers: Descriptor[] };
  const layer = manifest.layers[0]!;
  expect(layer.mediaType).toBe("application/vnd.dev.cosign.simplesigning.v1+json");
  const payload = Buffer.from(await (await registryGet(`${repository}/blobs/${layer.digest}`)).arrayBuffer());
  writeFileSync(join(work, "payload"), payload);
  writeFileSync(join(work, "signature"), Buffer.from(layer.annotations!["dev.cosignproject.cosign/signature"]!, "base64"));
  const check = Bun.spawnSync(["openssl", "dgst", "-sha256", "-verify", publicKey, "-signature", join(work, "signature"), join(work, "payload")], { stdout: "pipe", stderr: "pipe" });
  return { ok: check.exitCode === 0 && check.stdout.toString() === "Verified OK\n", payload: JSON.parse(payload.toString()) };
}

describe("a signed registry push", () => {
  let ref = "";
  let digest = "";

  beforeAll(async () => {
    ref = `${registryHost}/demo/signed:1`;
    const pushed = await runMemobuildAsync([...BUILD, "-t", ref, "--push", "--provenance=true", "--attest", "type=sbom", "--sign-key", join(work, "signer.key"), "--metadata-file", join(work, "signed.json")], ENV);
    if (pushed.exitCode !== 0) throw new Error(pushed.stderr);
    digest = json(join(work, "signed.json"))["containerimage.digest"];
  }, 120_000);

  test("the tag names an index of the image and its attestation manifest", async () => {
    const response = await registryGet("demo/signed/manifests/1", "application/vnd.oci.image.index.v1+json");
    expect(response.headers.get("docker-content-digest")).toBe(digest);
    const index = (await response.json()) as { manifests: Descriptor[] };
    expect(ociSchemaErrors("index", index)).toEqual([]);
    expect(index.manifests.map((m) => m.platform?.os)).toEqual(["linux", "unknown"]);
    expect(index.manifests[1]!.annotations!["vnd.docker.reference.digest"]).toBe(index.manifests[0]!.digest);
    // skopeo (containers/image) reads it: the index by its digest, and with --all copies the attestation too.
    const inspect = Bun.spawnSync(["skopeo", "inspect", "--tls-verify=false", `docker://${ref}`], { stdout: "pipe", stderr: "pipe" });
    expect(inspect.stderr.toString()).toBe("");
    expect(JSON.parse(inspect.stdout.toString()).Digest).toBe(digest);
    const copied = join(work, "skopeo-copy");
    const copy = Bun.spawnSync(["skopeo", "copy", "--all", "--src-tls-verify=false", `docker://${ref}`, `oci:${copied}:copy`], { stdout: "pipe", stderr: "pipe" });
    expect(copy.exitCode).toBe(0);
    const copiedIndex = json(blob(copied, json(join(copied, "index.json")).manifests[0].digest));
    expect(copiedIndex.manifests.map((m: Descriptor) => m.digest)).toEqual(index.manifests.map((m) => m.digest));
  });

  test("the sha256-<hex>.sig signature verifies with openssl and the signer's key, names the digest and repository", async () => {
    const { ok, payload } = await opensslVerify("demo/signed", digest, join(work, "signer.key.pub"));
    expect(ok).toBe(true);
    expect(payload.critical).toEqual({ identity: { "docker-reference": `${registryHost}/demo/signed` }, image: { "docker-manifest-digest": digest }, type: "cosign container image signature" });
  });

  test("key generate --type ecdsa-p256 wrote PKCS#8 (mode 0600) and SPKI PEM, as openssl reads them", () => {
    const key = join(work, "signer.key");
    expect(statSync(key).mode & 0o777).toBe(0o600);
    expect(readFileSync(key, "utf8")).toStartWith("-----BEGIN PRIVATE KEY-----\n");
    const text = Bun.spawnSync(["openssl", "pkey", "-in", key, "-noout", "-text"]).stdout.toString();
    expect(text).toContain("ASN1 OID: prime256v1");
    expect(readFileSync(`${key}.pub`, "utf8")).toStartWith("-----BEGIN PUBLIC KEY-----\n");
  });

  test("another key does not verify it", async () => {
    expect((await opensslVerify("demo/signed", digest, join(work, "stranger.key.pub"))).ok).toBe(false);
  });

  test("memobuild verify: passes with the signer's key, fails with another, prints the provenance", async () => {
    const good = await runMemobuildAsync(["verify", ref, "--key", join(work, "signer.key.pub"), "--provenance", "--insecure-registry", registryHost]);
    expect(good.stderr).toBe("");
    expect(good.exitCode).toBe(0);
    expect(good.stdout).toContain(`signature verified: ${digest}`);
    expect(good.stdout).toContain("input: pkg:docker/memobuild/busybox@latest");
    expect(good.stdout).toMatch(/step 0\/1: (executed|cached-local)  RUN --mount=type=secret,id=token/);
    const wrong = await runMemobuildAsync(["verify", ref, "--key", join(work, "stranger.key.pub"), "--insecure-registry", registryHost]);
    expect(wrong.exitCode).not.toBe(0);
    expect(wrong.stderr).toContain("does not verify with the given key");
  });

  test("a swapped manifest (another image pushed under the tag) fails, naming both digests", async () => {
    const other = writeProject(join(work, "other"), { Dockerfile: "FROM memobuild/busybox:latest\nRUN echo other > /other\n" });
    const swapRef = `${registryHost}/demo/swapped:1`;
    const signed = await runMemobuildAsync(["build", project, "--cache-dir", cache, "-t", swapRef, "--push", "--sign-key", join(work, "signer.key"), "--secret", "id=token,env=MB_ATTEST_TOKEN", "--metadata-file", join(work, "swap.json")], ENV);
    expect(signed.exitCode).toBe(0);
    const original = json(join(work, "swap.json"))["containerimage.digest"];
    expect((await runMemobuildAsync(["verify", swapRef, "--key", join(work, "signer.key.pub"), "--insecure-registry", registryHost])).exitCode).toBe(0);
    // Someone pushes another image under the tag and copies the old signature beside it.
    const replaced = await runMemobuildAsync(["build", other, "--cache-dir", cache, "-t", swapRef, "--push", "--metadata-file", join(work, "swap2.json")]);
    expect(replaced.exitCode).toBe(0);
    const replacement = json(join(work, "swap2.json"))["containerimage.digest"];
    const sig = await registryGet(`demo/swapped/manifests/${original.replace(":", "-")}.sig`);
    const put = await fetch(`http://${registryHost}/v2/demo/swapped/manifests/${replacement.replace(":", "-")}.sig`, { method: "PUT", headers: { "content-type": "application/vnd.oci.image.manifest.v1+json" }, body: await sig.arrayBuffer() });
    expect(put.status).toBe(201);
    const verify = await runMemobuildAsync(["verify", swapRef, "--key", join(work, "signer.key.pub"), "--insecure-registry", registryHost]);
    expect(verify.exitCode).not.toBe(0);
    expect(verify.stderr).toContain(`the signature is for ${original}, but ${swapRef} is ${replacement}`);
  });
});

describe("a signed OCI layout", () => {
  const layout = join(work, "signed-oci");

  beforeAll(async () => {
    const built = await runMemobuildAsync([...BUILD, "-t", "demo/signed-oci:1", "--provenance", "mode=min,builder-id=https://ci.example/runner/7", "--sign-key", join(work, "signer.key"), "-o", `type=oci,dest=${layout}`], ENV);
    if (built.exitCode !== 0) throw new Error(built.stderr);
  }, 120_000);

  test("keeps the signature and signed attestations in the layout, and verify accepts it", async () => {
    const refs = json(join(layout, "index.json")).manifests.map((m: Descriptor) => m.annotations?.["org.opencontainers.image.ref.name"] ?? m.annotations?.["vnd.docker.reference.type"]);
    expect(refs).toEqual(["demo/signed-oci:1", "attestation-manifest", expect.stringMatching(/^sha256-[0-9a-f]{64}\.sig$/), expect.stringMatching(/^sha256-[0-9a-f]{64}\.att$/)]);
    const verify = runMemobuild(["verify", `oci:${layout}:demo/signed-oci:1`, "--key", join(work, "signer.key.pub"), "--provenance"]);
    expect(verify.stderr).toBe("");
    expect(verify.exitCode).toBe(0);
    expect(verify.stdout).toContain("builder: https://ci.example/runner/7 (invocation ");
  });

  test("a tampered provenance (blobs and digests rewritten to match) fails against the signed copy", () => {
    const tampered = join(work, "tampered-oci");
    Bun.spawnSync(["cp", "-a", layout, tampered]);
    const index = json(join(tampered, "index.json"));
    const entry = index.manifests.find((m: Descriptor) => m.annotations?.["vnd.docker.reference.type"] === "attestation-manifest");
    const manifest = json(blob(tampered, entry.digest));
    const statement = json(blob(tampered, manifest.layers[0].digest));
    statement.predicate.runDetails.builder.id = "https://evil.example/builder";
    const put = (bytes: string) => {
      const digest = `sha256:${new Bun.CryptoHasher("sha256").update(bytes).digest("hex")}`;
      writeFileSync(blob(tampered, digest), bytes);
      return { digest, size: Buffer.byteLength(bytes) };
    };
    manifest.layers[0] = { ...manifest.layers[0], ...put(JSON.stringify(statement)) };
    Object.assign(entry, put(JSON.stringify(manifest)));
    writeFileSync(join(tampered, "index.json"), JSON.stringify(index));
    const verify = runMemobuild(["verify", `oci:${tampered}:demo/signed-oci:1`, "--key", join(work, "signer.key.pub"), "--provenance"]);
    expect(verify.exitCode).not.toBe(0);
    expect(verify.stderr).toContain("the provenance in the attestation manifest differs from the one signed in sha256-");
    // And a blob altered in place is named as such.
    const signature = index.manifests.find((m: Descriptor) => m.annotations?.["org.opencontainers.image.ref.name"]?.endsWith(".sig"));
    writeFileSync(blob(tampered, signature.digest), "{}");
    const altered = runMemobuild(["verify", `oci:${tampered}:demo/signed-oci:1`, "--key", join(work, "signer.key.pub")]);
    expect(altered.stderr).toContain(`manifest ${signature.digest} does not match its digest (it was altered)`);
  });
});

test("an OCI archive carries the attestations too, and imports as the image alone", async () => {
  const archive = join(work, "attested.tar");
  const built = await runMemobuildAsync([...BUILD, "--provenance", "true", "-o", `type=oci-archive,dest=${archive}`, "--metadata-file", join(work, "archive.json")], ENV);
  expect(built.exitCode).toBe(0);
  const index = JSON.parse(Bun.spawnSync(["tar", "-xOf", archive, "index.json"]).stdout.toString());
  const digest = json(join(work, "archive.json"))["containerimage.digest"];
  expect(index.manifests.map((m: Descriptor) => m.annotations?.["vnd.docker.reference.digest"] ?? m.digest)).toEqual([digest, digest]);
  const imported = runMemobuild(["image", "import", `oci-archive:${archive}`, "--cache-dir", join(work, "import-cache"), "--tag", "demo/imported:1"]);
  expect(imported.stderr).toBe("");
  expect(imported.exitCode).toBe(0);
});

test("verify --rebuild reproduces the digest from the recorded inputs, and names a changed context", async () => {
  const repro = writeProject(join(work, "repro"), { Dockerfile: "FROM memobuild/busybox:latest\nARG WHO\nCOPY a.txt /a.txt\nRUN echo \"$WHO\" > /who\n", "a.txt": "one\n" });
  const layout = join(work, "repro-oci");
  const built = await runMemobuildAsync(["build", repro, "--cache-dir", cache, "--no-cache", "--build-arg", "WHO=me", "-t", "demo/repro:1", "--provenance", "true", "--sign-key", join(work, "signer.key"), "-o", `type=oci,dest=${layout}`], { SOURCE_DATE_EPOCH: "1700000000" });
  expect(built.exitCode).toBe(0);
  const verify = (...more: string[]) => runMemobuildAsync(["verify", `oci:${layout}:demo/repro:1`, "--key", join(work, "signer.key.pub"), "--cache-dir", cache, ...more]);
  const same = await verify("--rebuild", repro);
  expect(same.stderr).toBe("");
  expect(same.stdout).toContain(`rebuilt ${json(join(layout, "index.json")).manifests[0].digest}: the same image, reproduced`);
  writeFileSync(join(repro, "a.txt"), "two\n");
  const changed = await verify("--rebuild", repro);
  expect(changed.exitCode).not.toBe(0);
  expect(changed.stderr).toMatch(/the context .* is blake3:[0-9a-f]{64}; the provenance records blake3:[0-9a-f]{64}/);
}, 60_000);

test("a result reused from the remote cache is recorded as such, with the key that signed it; the token is not", async () => {
  const TOKEN = "remote-token-4b1d9a77c2";
  const server = await startCacheServer(join(work, "server-data"), ["--token", TOKEN]);
  try {
    const shared = writeProject(join(work, "shared"), { Dockerfile: "FROM memobuild/busybox:latest\nRUN echo shared > /shared\n" });
    const ciPublic = runMemobuild(["key", "generate", "--out", join(work, "ci-ed25519.key")]).stdout.trim();
    const remote = ["--remote", server.url, "--remote-token", TOKEN];
    const ci = await runMemobuildAsync(["build", shared, "--cache-dir", machineWithBase(join(work, "ci-cache"), baseOci), ...remote, "--remote-sign-key", join(work, "ci-ed25519.key"), "--remote-upload", "wait"]);
    expect(ci.exitCode).toBe(0);
    const layout = join(work, "from-remote");
    const laptop = await runMemobuildAsync(["build", shared, "--cache-dir", machineWithBase(join(work, "laptop-cache"), baseOci), ...remote, "--remote-trust", ciPublic, "-t", "demo/shared:1", "--provenance", "mode=max", "-o", `type=oci,dest=${layout}`]);
    expect(laptop.exitCode).toBe(0);
    const attestation = json(join(layout, "index.json")).manifests[1];
    const provenanceBytes = readFileSync(blob(layout, json(blob(layout, attestation.digest)).layers[0].digest), "utf8");
    const byproducts = JSON.parse(provenanceBytes).predicate.runDetails.byproducts;
    expect(byproducts[1].annotations).toEqual({ instruction: "RUN echo shared > /shared", status: "cached-remote", signer: ciPublic });
    expect(provenanceBytes).not.toContain(TOKEN);
  } finally {
    await server.stop();
  }
}, 60_000);

test("ADD URLs are resolved dependencies, with the sha256 of what they served", async () => {
  const served = "fetched over http\n";
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response(served) });
  try {
    const url = `http://127.0.0.1:${server.port}/file.txt`;
    const dir = writeProject(join(work, "add-url"), { Dockerfile: `FROM memobuild/busybox:latest\nADD ${url} /file.txt\n` });
    const layout = join(work, "add-url-oci");
    const built = await runMemobuildAsync(["build", dir, "--cache-dir", cache, "--provenance", "true", "-o", `type=oci,dest=${layout}`]);
    expect(built.exitCode).toBe(0);
    const attestation = json(join(layout, "index.json")).manifests[1];
    const provenance = json(blob(layout, json(blob(layout, attestation.digest)).layers[0].digest));
    expect(attestSchemaErrors("slsa", provenance)).toEqual([]);
    expect(provenance.predicate.buildDefinition.resolvedDependencies[1]).toEqual({ uri: url, digest: { sha256: new Bun.CryptoHasher("sha256").update(served).digest("hex") } });
  } finally {
    server.stop(true);
  }
}, 60_000);
