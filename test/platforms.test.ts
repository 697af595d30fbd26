/**
 * Multi-platform builds, end to end: a busybox base for this machine and for another
 * architecture (Debian's busybox-static of that architecture, downloaded by
 * scripts/prepare-base-rootfs.sh), built into one image index by one `--platform a,b` build whose
 * other-architecture RUN runs under QEMU (qemu-user-static through binfmt_misc); then a project
 * on it with a `FROM --platform=$BUILDPLATFORM` stage, its outputs, and `run` picking this
 * machine's image.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT, runMemobuild } from "./support/binary.ts";
import { freePort } from "./support/engines.ts";
import { writeProject } from "./support/base-image.ts";
import { bothPlatforms, hostArch, multiArchBaseProject, otherArch, uname } from "./support/platforms.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-platforms-"));
const cache = join(work, "cache");
const both = bothPlatforms;

const build = (...args: string[]) => runMemobuild(["build", ...args, "--cache-dir", cache, "--progress", "plain"]);
const json = (file: string) => JSON.parse(readFileSync(file, "utf8"));
/** The image ID (the index digest) of app-multi, as its build reported it. */
let appId = "";

beforeAll(() => {
  const base = multiArchBaseProject(join(work, "base"));
  const result = build(base, "--platform", both, "-t", "memobuild/busybox-multi", "-o", `type=oci,dest=${join(work, "base-oci")}`);
  if (result.exitCode !== 0) throw new Error(result.stderr);
}, 300_000);

let registry: ReturnType<typeof Bun.spawn> | undefined;
afterAll(async () => {
  registry?.kill();
  await registry?.exited;
  rmSync(work, { recursive: true, force: true });
});

/** The signing key and the project the signing and annotation tests build, made by the first that needs them. */
function signedProject(): { key: string; dir: string } {
  const key = join(work, "release.key");
  if (!existsSync(key)) expect(runMemobuild(["key", "generate", "--type", "ecdsa-p256", "--out", key]).exitCode).toBe(0);
  return { key, dir: writeProject(join(work, "signed"), { Dockerfile: "FROM memobuild/busybox-multi\nRUN uname -m > /arch\n" }) };
}

/** The registry the tests push to, started by the first that needs it. */
let registryHost: Promise<string> | undefined;
const startRegistry = () => (registryHost ??= startDockerRegistry());

/** Debian's docker-registry on 127.0.0.1 (plain HTTP, as MemoBuild uses for loopback), with its own storage. */
async function startDockerRegistry(): Promise<string> {
  const port = await freePort();
  const config = join(work, "registry.yml");
  writeFileSync(config, `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${join(work, "registry")}\nhttp:\n  addr: 127.0.0.1:${port}\n`);
  registry = Bun.spawn(["docker-registry", "serve", config], { stdout: "ignore", stderr: "ignore" });
  for (let i = 0; i < 100; i++) {
    if (await fetch(`http://127.0.0.1:${port}/v2/`).then((r) => r.ok, () => false)) return `127.0.0.1:${port}`;
    await Bun.sleep(100);
  }
  throw new Error("docker-registry did not come up");
}

describe("--platform with two platforms", () => {
  test("the base: one OCI index, a manifest per platform with its platform, each config of its architecture", () => {
    const layout = join(work, "base-oci");
    const top = json(join(layout, "index.json"));
    expect(top.manifests).toHaveLength(1);
    expect(top.manifests[0].mediaType).toBe("application/vnd.oci.image.index.v1+json");
    expect(top.manifests[0].annotations["org.opencontainers.image.ref.name"]).toBe("memobuild/busybox-multi:latest");
    const blob = (digest: string) => json(join(layout, "blobs/sha256", digest.slice(7)));
    const index = blob(top.manifests[0].digest);
    expect(index.manifests.map((m: { platform: unknown }) => m.platform)).toEqual([
      { os: "linux", architecture: hostArch },
      { os: "linux", architecture: otherArch },
    ]);
    for (const entry of index.manifests) {
      expect(entry.mediaType).toBe("application/vnd.oci.image.manifest.v1+json");
      expect(blob(blob(entry.digest).config.digest).architecture).toBe(entry.platform.architecture);
    }
  });

  test("a project on it: the other architecture's RUN ran under QEMU, TARGET*/BUILD* as BuildKit's, a $BUILDPLATFORM stage ran natively", () => {
    const dir = writeProject(join(work, "app"), {
      Dockerfile:
        "FROM --platform=$BUILDPLATFORM memobuild/busybox-multi AS tools\nARG TARGETARCH\nRUN uname -m > /built-on && echo $TARGETARCH > /built-for\n" +
        'FROM memobuild/busybox-multi\nARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM BUILDOS BUILDARCH\nRUN uname -m > /arch && echo "$TARGETPLATFORM $TARGETOS $TARGETARCH [$TARGETVARIANT] $BUILDPLATFORM $BUILDOS $BUILDARCH" > /args\nCOPY --from=tools /built-on /built-for /\n',
    });
    const out = join(work, "app-out");
    const meta = join(work, "app-meta.json");
    const result = build(dir, "--platform", both, "-t", "app-multi", "-o", `type=local,dest=${out}`, "--metadata-file", meta);
    expect(result.stderr).toContain(`[linux/${otherArch} stage-1 3/4] RUN uname -m`);
    expect(result.exitCode).toBe(0);
    for (const arch of [hostArch, otherArch]) {
      const root = join(out, `linux_${arch}`);
      expect(readFileSync(join(root, "arch"), "utf8")).toBe(`${uname[arch]}\n`);
      expect(readFileSync(join(root, "args"), "utf8")).toBe(`linux/${arch} linux ${arch} [] linux/${hostArch} linux ${hostArch}\n`);
      expect(readFileSync(join(root, "built-on"), "utf8")).toBe(`${uname[hostArch]}\n`);
      expect(readFileSync(join(root, "built-for"), "utf8")).toBe(`${arch}\n`);
    }
    const metadata = json(meta);
    const runs = metadata.steps.filter((s: { instruction: string }) => s.instruction.startsWith("RUN uname -m > /arch"));
    expect(runs.map((s: { platform: string }) => s.platform)).toEqual([`linux/${hostArch}`, `linux/${otherArch}`]);
    expect(runs[0].key).not.toBe(runs[1].key); // each platform keyed apart
    // The image ID of an index is the index's digest; the summary names it.
    expect(metadata["containerimage.config.digest"]).toBe(metadata["containerimage.digest"]);
    expect(result.stderr).toContain(`image ${metadata["containerimage.digest"]}`);
    expect(result.stderr).toContain(`index ${metadata["containerimage.digest"]} (local store: ${both.replace(",", ", ")})`);
    appId = metadata["containerimage.digest"];

    const again = build(dir, "--platform", both, "--metadata-file", meta);
    expect(again.exitCode).toBe(0);
    expect(json(meta).steps.filter((s: { status: string }) => s.status === "executed")).toEqual([]);
  }, 120_000);

  test("the other architecture's RUN is under the seccomp filter too: QEMU makes its calls as a native process", () => {
    const dir = writeProject(join(work, "filtered"), {
      Dockerfile: "FROM memobuild/busybox-multi\nRUN (uname -m; grep ^Seccomp: /proc/self/status; unshare -U true || echo userns refused) > /result 2>&1\n",
    });
    const out = join(work, "filtered-out");
    expect(build(dir, "--platform", `linux/${otherArch}`, "-t", "filtered", "-o", `type=local,dest=${out}`).exitCode).toBe(0); // tagged: image ls below counts the untagged
    expect(readFileSync(join(out, "result"), "utf8")).toBe(`${uname[otherArch]}\nSeccomp:\t2\nunshare: unshare(0x10000000): Operation not permitted\nuserns refused\n`);
  }, 120_000);

  test("a multi-platform OCI layout imports with every platform: image import, and --build-context NAME=oci-layout://", () => {
    const layout = join(work, "base-oci");
    const fresh = join(work, "imported-cache");
    const imported = runMemobuild(["image", "import", `oci:${layout}:memobuild/busybox-multi:latest`, "--cache-dir", fresh]);
    expect(imported.exitCode).toBe(0);
    const dir = writeProject(join(work, "on-imported"), { Dockerfile: "FROM memobuild/busybox-multi\nRUN uname -m > /arch\nFROM base\nCOPY --from=0 /arch /arch\n" });
    const out = join(work, "on-imported-out");
    const result = runMemobuild(["build", dir, "--platform", both, "--cache-dir", fresh, "--build-context", `base=oci-layout://${layout}:memobuild/busybox-multi:latest`, "-o", `type=local,dest=${out}`]);
    expect(result.stderr).not.toContain("pulling");
    expect(result.exitCode).toBe(0);
    for (const arch of [hostArch, otherArch]) {
      expect(readFileSync(join(out, `linux_${arch}`, "arch"), "utf8")).toBe(`${uname[arch]}\n`);
      expect(readFileSync(join(out, `linux_${arch}`, "bin/busybox")).equals(readFileSync(join(REPO_ROOT, arch === hostArch ? "examples/base/rootfs" : `examples/base/rootfs-${arch}`, "bin/busybox")))).toBe(true);
    }
  }, 120_000);

  test("with --provenance each platform's image has its own attestation manifest in the index, naming its platform", () => {
    const dir = writeProject(join(work, "attested"), { Dockerfile: "FROM memobuild/busybox-multi\nRUN uname -m > /arch\n" });
    const layout = join(work, "attested-oci");
    const result = build(dir, "--platform", both, "--provenance", "mode=min", "-o", `type=oci,dest=${layout}`);
    expect(result.exitCode).toBe(0);
    const blob = (digest: string) => JSON.parse(readFileSync(join(layout, "blobs/sha256", digest.slice(7)), "utf8"));
    const index = blob(json(join(layout, "index.json")).manifests[0].digest);
    type Entry = { digest: string; platform: { os: string; architecture: string }; annotations?: Record<string, string> };
    const images = index.manifests.filter((m: Entry) => m.platform.os !== "unknown");
    const attestations = index.manifests.filter((m: Entry) => m.platform.os === "unknown");
    expect(images.map((m: Entry) => m.platform.architecture)).toEqual([hostArch, otherArch]);
    expect(attestations.map((m: Entry) => m.annotations?.["vnd.docker.reference.digest"])).toEqual(images.map((m: Entry) => m.digest));
    const platforms = attestations.map((m: Entry) => blob(blob(m.digest).layers[0].digest).predicate.buildDefinition.externalParameters.platform);
    expect(platforms).toEqual([`linux/${hostArch}`, `linux/${otherArch}`]);
  }, 120_000);

  test("run and image ls pick this machine's image of the index", () => {
    const run = runMemobuild(["run", "app-multi", "--cache-dir", cache, "--", "cat", "/arch"]);
    expect(run.stderr).toBe("");
    expect(run.stdout).toBe(`${uname[hostArch]}\n`);
    const ls = runMemobuild(["image", "ls", "--cache-dir", cache]);
    expect(ls.exitCode).toBe(0);
    // One line: the index, by its ID (its platforms' images are part of it, not <none> lines);
    // the untagged multi-platform build above is one <none> line, by its index's digest.
    expect(ls.stdout).toMatch(new RegExp(`app-multi:latest +${appId.slice(7, 19)} `));
    expect(ls.stdout.split("\n").filter((line) => line.startsWith("<none>"))).toEqual([expect.stringMatching(/^<none> +([0-9a-f]{12}) +sha256:\1 /)]);
  }, 120_000);

  test("one other platform alone is one image of it; a tar of an index has a directory per platform; --load of an index is refused before any work", () => {
    const dir = writeProject(join(work, "single"), { Dockerfile: "FROM memobuild/busybox-multi\nRUN uname -m > /arch\n" });
    const out = join(work, "single-out");
    const single = build(dir, "--platform", `linux/${otherArch}`, "-o", `type=local,dest=${out}`);
    expect(single.exitCode).toBe(0);
    expect(readFileSync(join(out, "arch"), "utf8")).toBe(`${uname[otherArch]}\n`);
    // Its provenance names the platform it is for (what verify --rebuild builds for again).
    const attestedOne = join(work, "single-attested");
    expect(build(dir, "--platform", `linux/${otherArch}`, "--provenance", "mode=min", "-o", `type=oci,dest=${attestedOne}`).exitCode).toBe(0);
    const blob = (digest: string) => readFileSync(join(attestedOne, "blobs/sha256", digest.slice(7)), "utf8");
    const attestation = json(join(attestedOne, "index.json")).manifests.find((m: { platform?: { os: string } }) => m.platform?.os === "unknown");
    const provenance = JSON.parse(blob(JSON.parse(blob(attestation.digest)).layers[0].digest));
    expect(provenance.predicate.buildDefinition.externalParameters.platform).toBe(`linux/${otherArch}`);
    const load = build(dir, "--platform", both, "--load");
    expect(load.exitCode).toBe(2);
    expect(load.stderr).toContain("which the Docker Engine cannot load");
    // A tar of an index holds each platform's file system under its directory, as buildx writes it.
    const tarFile = join(work, "index.tar");
    expect(build(dir, "--platform", both, "-o", `type=tar,dest=${tarFile}`).exitCode).toBe(0);
    for (const arch of [hostArch, otherArch]) {
      expect(Bun.spawnSync(["tar", "-xOf", tarFile, "--wildcards", `*linux_${arch}/arch`]).stdout.toString()).toBe(`${uname[arch]}\n`);
    }
    expect(build(dir, "--platform", "windows/amd64").stderr).toContain("windows images are not supported");
    writeFileSync(join(dir, "Dockerfile"), "FROM memobuild/busybox-multi\n");
    expect(build(dir, "--platform", "linux/riscv64").stderr).toContain("has no image for linux/riscv64");
  }, 120_000);

  test("pushed as an index (each platform's manifest and attestations, then the index); a fresh machine builds FROM it for both, pulling each platform", async () => {
    const host = await startRegistry();
    const pushed = build(join(work, "base"), "--platform", both, "-t", `${host}/base:1`, "--push", "--provenance", "mode=min");
    expect(pushed.exitCode).toBe(0);
    const architectures = async (ref: string) => {
      const index = (await (await fetch(`http://${host}/v2/${ref.replace(":", "/manifests/")}`, { headers: { accept: "application/vnd.oci.image.index.v1+json" } })).json()) as { mediaType: string; manifests: { platform: { architecture: string } }[] };
      expect(index.mediaType).toBe("application/vnd.oci.image.index.v1+json");
      return index.manifests.map((m) => m.platform.architecture);
    };
    // With --provenance, each platform's attestation manifest follows the images (unknown/unknown).
    expect(await architectures("base:1")).toEqual([hostArch, otherArch, "unknown", "unknown"]);
    // image push sends a multi-platform image of the store (app-multi, built above) as it is too.
    const push = runMemobuild(["image", "push", "app-multi", `${host}/app:2`, "--cache-dir", cache]);
    expect(push.exitCode).toBe(0);
    expect(await architectures("app:2")).toEqual([hostArch, otherArch]);
    const dir = writeProject(join(work, "from-registry"), { Dockerfile: `FROM ${host}/base:1\nRUN uname -m > /arch\n` });
    const out = join(work, "from-registry-out");
    const buildCache = join(work, "build-cache");
    const fresh = runMemobuild(["build", dir, "--platform", both, "--cache-dir", join(work, "fresh-cache"), "--progress", "plain", "-o", `type=local,dest=${out}`, "--cache-to", `type=local,dest=${buildCache},mode=max`]);
    expect(fresh.stderr).toContain(`pulling ${host}/base:1 for linux/${otherArch}`);
    expect(fresh.exitCode).toBe(0);
    for (const arch of [hostArch, otherArch]) expect(readFileSync(join(out, `linux_${arch}`, "arch"), "utf8")).toBe(`${uname[arch]}\n`);
    // One build cache holds both platforms' steps: another machine runs neither RUN.
    const meta = join(work, "from-cache.json");
    const again = runMemobuild(["build", dir, "--platform", both, "--cache-dir", join(work, "fresh-cache-2"), "--progress", "plain", "--cache-from", `type=local,src=${buildCache}`, "--metadata-file", meta]);
    expect(again.exitCode).toBe(0);
    const runs = json(meta).steps.filter((s: { instruction: string }) => s.instruction.startsWith("RUN"));
    expect(runs.map((s: { platform: string; status: string }) => [s.platform, s.status])).toEqual([
      [`linux/${hostArch}`, "cached-remote"],
      [`linux/${otherArch}`, "cached-remote"],
    ]);
  }, 120_000);
  test("--sign-key signs every platform's manifest and the index; verify checks them all, and names a platform whose manifest was swapped", () => {
    const { key, dir } = signedProject();
    const layout = join(work, "signed-oci");
    const result = build(dir, "--platform", both, "-t", "registry.test/app:1", "--sign-key", key, "--provenance", "mode=min", "-o", `type=oci,dest=${layout}`);
    if (result.exitCode !== 0) throw new Error(result.stderr);
    const top = json(join(layout, "index.json"));
    const blob = (digest: string) => JSON.parse(readFileSync(join(layout, "blobs/sha256", digest.slice(7)), "utf8"));
    const indexEntry = top.manifests[0];
    const index = blob(indexEntry.digest);
    type Entry = { digest: string; size: number; platform: { os: string; architecture: string }; annotations?: Record<string, string> };
    const images: Entry[] = index.manifests.filter((m: Entry) => m.platform.os !== "unknown");
    // index.json: the index by its name, then each platform's .sig and .att, then the index's .sig.
    const tags = top.manifests.slice(1).map((m: Entry) => m.annotations?.["org.opencontainers.image.ref.name"]);
    const tagOf = (digest: string, kind: string) => `${digest.replace(":", "-")}.${kind}`;
    expect(tags).toEqual([...images.flatMap((m) => [tagOf(m.digest, "sig"), tagOf(m.digest, "att")]), tagOf(indexEntry.digest, "sig")]);
    // Each platform's signature payload names that platform's manifest, in the build's repository.
    const payload = (digest: string) => blob(blob(top.manifests.find((m: Entry) => m.annotations?.["org.opencontainers.image.ref.name"] === tagOf(digest, "sig")).digest).layers[0].digest);
    for (const image of images) expect(payload(image.digest).critical).toMatchObject({ identity: { "docker-reference": "registry.test/app" }, image: { "docker-manifest-digest": image.digest } });

    const verify = runMemobuild(["verify", `oci:${layout}:registry.test/app:1`, "--key", `${key}.pub`]);
    expect(verify.stderr).toBe("");
    expect(verify.exitCode).toBe(0);
    expect(verify.stdout).toContain(`signature verified: ${indexEntry.digest}`);
    for (const image of images) expect(verify.stdout).toContain(`linux/${image.platform.architecture}: signature verified: ${image.digest}`);
    // --provenance: each platform's provenance, beside its image in the index, names it and is signed.
    const withProvenance = runMemobuild(["verify", `oci:${layout}:registry.test/app:1`, "--key", `${key}.pub`, "--provenance"]);
    expect(withProvenance.stderr).toBe("");
    for (const image of images) {
      const arch = image.platform.architecture;
      expect(withProvenance.stdout).toContain(`provenance verified for ${image.digest} (linux/${arch}):\n  builder: `);
      expect(withProvenance.stdout).toContain(`platform linux/${arch}\n`);
    }

    // The other platform's manifest altered (an annotation added), the index rewritten to name it.
    const tampered = join(work, "signed-tampered");
    cpSync(layout, tampered, { recursive: true });
    const put = (value: object) => {
      const bytes = Buffer.from(JSON.stringify(value));
      const digest = `sha256:${new Bun.CryptoHasher("sha256").update(bytes).digest("hex")}`;
      writeFileSync(join(tampered, "blobs/sha256", digest.slice(7)), bytes);
      return { digest, size: bytes.length };
    };
    const victim = images.find((m) => m.platform.architecture === otherArch)!;
    const altered = put({ ...blob(victim.digest), annotations: { injected: "yes" } });
    const newIndex = put({ ...index, manifests: index.manifests.map((m: Entry) => (m.digest === victim.digest ? { ...m, ...altered } : m)) });
    writeFileSync(join(tampered, "index.json"), JSON.stringify({ ...top, manifests: top.manifests.map((m: Entry, i: number) => (i === 0 ? { ...m, ...newIndex } : m)) }));
    const failed = runMemobuild(["verify", `oci:${tampered}:registry.test/app:1`, "--key", `${key}.pub`]);
    expect(failed.exitCode).not.toBe(0);
    expect(failed.stderr).toContain(`the linux/${otherArch} image ${altered.digest}: no signature (no ${tagOf(altered.digest, "sig")} beside ${altered.digest})`);
  }, 120_000);

  test("verify --rebuild of an index rebuilds each platform from its provenance, and names the platform whose image differs", () => {
    const { key } = signedProject();
    const epoch = { SOURCE_DATE_EPOCH: "1700000000" };
    // The other architecture's RUN writes a fresh random value: only its image cannot be reproduced.
    const dir = writeProject(join(work, "rebuilt"), {
      Dockerfile: `FROM memobuild/busybox-multi\nRUN uname -m > /arch && if [ "$(uname -m)" = ${uname[otherArch]} ]; then cat /proc/sys/kernel/random/uuid > /nonce; fi\n`,
    });
    const layout = join(work, "rebuilt-oci");
    const built = runMemobuild(["build", dir, "--platform", both, "--cache-dir", cache, "--sign-key", key, "--provenance", "mode=min", "-t", "registry.test/rebuilt:1", "-o", `type=oci,dest=${layout}`], { env: epoch });
    if (built.exitCode !== 0) throw new Error(built.stderr);
    const index = json(join(layout, "blobs/sha256", json(join(layout, "index.json")).manifests[0].digest.slice(7)));
    const digestOf = (arch: string) => index.manifests.find((m: { platform: { architecture: string } }) => m.platform.architecture === arch).digest;
    const verify = runMemobuild(["verify", `oci:${layout}:registry.test/rebuilt:1`, "--key", `${key}.pub`, "--rebuild", dir, "--cache-dir", cache], { env: epoch });
    expect(verify.stdout).toContain(`linux/${hostArch}: rebuilt ${digestOf(hostArch)}: the same image, reproduced`);
    expect(verify.stdout).toMatch(new RegExp(`linux/${otherArch}: rebuilt sha256:[0-9a-f]{64}, not ${digestOf(otherArch)}`));
    expect(verify.stderr).toContain(`the build did not reproduce for linux/${otherArch} (rebuilt sha256:`);
    expect(verify.stderr).not.toContain(`linux/${hostArch} (`);
    expect(verify.exitCode).toBe(1);
    // Made reproducible, every platform's image is rebuilt the same.
    writeFileSync(join(dir, "Dockerfile"), "FROM memobuild/busybox-multi\nRUN uname -m > /arch\n");
    const again = runMemobuild(["build", dir, "--platform", both, "--cache-dir", cache, "--sign-key", key, "--provenance", "mode=min", "-t", "registry.test/rebuilt:1", "-o", `type=oci,dest=${layout}`], { env: epoch });
    if (again.exitCode !== 0) throw new Error(again.stderr);
    const same = runMemobuild(["verify", `oci:${layout}:registry.test/rebuilt:1`, "--key", `${key}.pub`, "--rebuild", dir, "--cache-dir", cache], { env: epoch });
    expect(same.stderr).toBe("");
    expect(same.exitCode).toBe(0);
    for (const arch of [hostArch, otherArch]) expect(same.stdout).toContain(`linux/${arch}: rebuilt `);
    expect(same.stdout.match(/the same image, reproduced/g)).toHaveLength(2);
  }, 300_000);

  test("a signed multi-platform push: verify checks the index by its tag and one platform's manifest pulled alone by its digest", async () => {
    const host = await startRegistry();
    const { key, dir } = signedProject();
    const meta = join(work, "signed-push.json");
    const pushed = build(dir, "--platform", both, "-t", `${host}/signed:1`, "--push", "--sign-key", key, "--metadata-file", meta);
    expect(pushed.exitCode).toBe(0);
    const verify = (ref: string) => runMemobuild(["verify", ref, "--key", `${key}.pub`, "--insecure-registry", host]);
    const whole = verify(`${host}/signed:1`);
    expect(whole.stderr).toBe("");
    expect(whole.stdout).toContain(`signature verified: ${json(meta)["containerimage.digest"]} of ${host}/signed`);
    expect(whole.stdout).toContain(`linux/${otherArch}: signature verified: sha256:`);
    const other = /linux\/\S+: signature verified: (sha256:[0-9a-f]{64})/g;
    const digests = [...whole.stdout.matchAll(other)].map((m) => m[1]!);
    expect(digests).toHaveLength(2);
    const alone = verify(`${host}/signed@${digests[1]}`);
    expect(alone.stderr).toBe("");
    expect(alone.stdout).toBe(`${host}/signed@${digests[1]}: signature verified: ${digests[1]} of ${host}/signed\n`);
  }, 120_000);
  test("--annotation of each type, with platform selectors: manifests, their entries in the index, the index, and its entry in index.json (a push keeps the index's, and so does the store's index, pushed or exported later)", async () => {
    const { dir } = signedProject(); // the signing tests' project: only the annotations differ
    const layout = join(work, "annotated-oci");
    const annotations = [`org.opencontainers.image.title=app`, `manifest[linux/${otherArch}]:note=emulated`, `manifest-descriptor[linux/${hostArch}]:desc=native`, "index:idx=1", "index-descriptor:top=1"];
    const result = build(dir, "--platform", both, "-t", "annotated:1", ...annotations.flatMap((a) => ["--annotation", a]), "-o", `type=oci,dest=${layout}`);
    if (result.exitCode !== 0) throw new Error(result.stderr);
    const blob = (digest: string) => JSON.parse(readFileSync(join(layout, "blobs/sha256", digest.slice(7)), "utf8"));
    const entry = json(join(layout, "index.json")).manifests[0];
    expect(entry.annotations).toEqual({ top: "1", "org.opencontainers.image.ref.name": "annotated:1" });
    const index = blob(entry.digest);
    expect(index.annotations).toEqual({ idx: "1" });
    type Entry = { digest: string; platform: { architecture: string }; annotations?: Record<string, string> };
    const byArch = Object.fromEntries(index.manifests.map((m: Entry) => [m.platform.architecture, m]));
    expect(byArch[hostArch].annotations).toEqual({ desc: "native" });
    expect(byArch[otherArch].annotations).toBeUndefined();
    expect(blob(byArch[hostArch].digest).annotations).toEqual({ "org.opencontainers.image.title": "app" });
    expect(blob(byArch[otherArch].digest).annotations).toEqual({ "org.opencontainers.image.title": "app", note: "emulated" });

    const host = await startRegistry();
    const pushed = build(dir, "--platform", both, "-t", `${host}/annotated:1`, "--push", "--annotation", "index:idx=2", "--annotation", `manifest-descriptor[linux/${otherArch}]:desc=emulated`);
    expect(pushed.exitCode).toBe(0);
    const fetched = (await (await fetch(`http://${host}/v2/annotated/manifests/1`, { headers: { accept: "application/vnd.oci.image.index.v1+json" } })).json()) as { annotations: Record<string, string>; manifests: Entry[] };
    expect(fetched.annotations).toEqual({ idx: "2" });
    expect(fetched.manifests.map((m) => m.annotations)).toEqual([undefined, { desc: "emulated" }]);
    // The store's index keeps the index's annotations and its entries': image push of it carries them as the build's layout did.
    const stored = runMemobuild(["image", "push", "annotated:1", `${host}/annotated-stored:1`, "--cache-dir", cache]);
    expect(stored.exitCode).toBe(0);
    const storedIndex = (await (await fetch(`http://${host}/v2/annotated-stored/manifests/1`, { headers: { accept: "application/vnd.oci.image.index.v1+json" } })).json()) as { annotations: Record<string, string>; manifests: Entry[] };
    expect(storedIndex.annotations).toEqual({ idx: "1" });
    expect(Object.fromEntries(storedIndex.manifests.map((m) => [m.platform.architecture, m.annotations]))).toEqual({ [hostArch]: { desc: "native" }, [otherArch]: undefined });
    // image export to an OCI layout writes the stored index as it is: the build's layout's index, annotations and all.
    const exportedLayout = join(work, "annotated-exported");
    const exported = runMemobuild(["image", "export", "annotated:1", "--output", `type=oci,dest=${exportedLayout},compression=gzip`, "--cache-dir", cache]);
    expect(exported.exitCode).toBe(0);
    const exportedEntry = json(join(exportedLayout, "index.json")).manifests[0];
    expect(exported.stdout).toBe(`${exportedEntry.digest}\n`);
    expect(JSON.parse(readFileSync(join(exportedLayout, "blobs/sha256", exportedEntry.digest.slice(7)), "utf8"))).toEqual(index);
    // A selector for a platform not built, and index-descriptor with no layout, refused before any work.
    expect(build(dir, "--platform", both, "--annotation", "manifest[linux/s390x]:a=1").stderr).toContain("linux/s390x (for a) is not a platform of this build");
    expect(build(dir, "--platform", both, "-t", `${host}/annotated:2`, "--push", "--annotation", "index-descriptor:a=1").stderr).toContain("no output writes one");
  }, 120_000);
});
