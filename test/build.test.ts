/**
 * `memobuild build` end to end: real images from the compiled binary, checked with skopeo,
 * umoci, the OCI JSON schemas, and by running them with crun.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { memobuildBinary, REPO_ROOT, runMemobuild, runMemobuildAsync, type RunResult } from "./support/binary.ts";
import { TarWriter } from "../src/sys/tar.ts";
import { ociSchemaErrors } from "./support/oci-schema.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-build-"));
const cacheDir = join(work, "cache");
// `make audit` keeps what the tests leave (MEMOBUILD_TEST_KEEP=1) and searches it for the secrets.
afterAll(() => process.env.MEMOBUILD_TEST_KEEP || rmSync(work, { recursive: true, force: true }));

interface Metadata {
  "containerimage.digest": string;
  "containerimage.config.digest": string;
  "image.name": string;
  steps: { id: string; stage: string; instruction: string; key: string; status: string; duration_ms: number }[];
}

let projectCount = 0;
function project(files: Record<string, string>): string {
  const dir = join(work, `p${++projectCount}`);
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(join(dir, name, ".."), { recursive: true });
    writeFileSync(join(dir, name), content);
  }
  return dir;
}

function build(dir: string, ...args: string[]): RunResult & { metadata?: Metadata } {
  const metadataFile = join(work, `meta-${Math.random().toString(36).slice(2)}.json`);
  const result = runMemobuild(["build", dir, "--cache-dir", cacheDir, "--metadata-file", metadataFile, "--progress", "plain", ...args]);
  const metadata = existsSync(metadataFile) ? (JSON.parse(readFileSync(metadataFile, "utf8")) as Metadata) : undefined;
  return { ...result, metadata };
}

function mustBuild(dir: string, ...args: string[]): Metadata {
  const result = build(dir, ...args);
  if (result.exitCode !== 0) throw new Error(`build failed (${result.exitCode}):\n${result.stderr}`);
  return result.metadata!;
}

const statuses = (m: Metadata) => Object.fromEntries(m.steps.map((s) => [s.id, s.status]));
const executed = (m: Metadata) => m.steps.filter((s) => s.status === "executed").map((s) => s.id);

beforeAll(() => {
  const prepare = Bun.spawnSync(["bash", join(REPO_ROOT, "scripts/prepare-base-rootfs.sh")], { stderr: "pipe" });
  if (prepare.exitCode !== 0) throw new Error(prepare.stderr.toString());
  memobuildBinary();
  mustBuild(join(REPO_ROOT, "examples/base"), "-t", "memobuild/busybox:latest");
}, 120_000);

describe("the example project", () => {
  const oci = join(work, "hello-oci");
  let first: Metadata;

  test("builds, exports an OCI layout that skopeo, umoci and the schemas accept", () => {
    first = mustBuild(join(REPO_ROOT, "examples/hello"), "-t", "hello:test", "--output", `type=oci,dest=${oci}`);
    expect(first["containerimage.digest"]).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(first["image.name"]).toBe("docker.io/library/hello:test");
    expect(statuses(first)).toMatchObject({ "lint/0": "skipped", "lint/1": "skipped", "lint/2": "skipped" });

    const index = JSON.parse(readFileSync(join(oci, "index.json"), "utf8"));
    expect(ociSchemaErrors("index", index)).toEqual([]);
    expect(ociSchemaErrors("layout", JSON.parse(readFileSync(join(oci, "oci-layout"), "utf8")))).toEqual([]);
    const blob = (digest: string) => readFileSync(join(oci, "blobs/sha256", digest.slice(7)));
    const manifest = JSON.parse(blob(index.manifests[0].digest).toString());
    expect(ociSchemaErrors("manifest", manifest)).toEqual([]);
    expect(new Set(manifest.layers.map((l: { mediaType: string }) => l.mediaType))).toEqual(new Set(["application/vnd.oci.image.layer.v1.tar+gzip"]));
    const config = JSON.parse(blob(manifest.config.digest).toString());
    expect(ociSchemaErrors("config", config)).toEqual([]);
    expect(config.config).toMatchObject({ User: "1000:1000", Entrypoint: ["/usr/local/bin/greet"], Cmd: ["world"] });
    expect(index.manifests[0].digest).toBe(first["containerimage.digest"]);

    const inspect = Bun.spawnSync(["skopeo", "inspect", `oci:${oci}:hello:test`], { stdout: "pipe", stderr: "pipe" });
    expect(inspect.stderr.toString()).toBe("");
    expect(JSON.parse(inspect.stdout.toString()).Digest).toBe(first["containerimage.digest"]);

    const unpacked = join(work, "umoci-bundle");
    const unpack = Bun.spawnSync(["umoci", "unpack", "--image", `${oci}:hello:test`, unpacked], { stderr: "pipe" });
    expect(unpack.exitCode).toBe(0);
    expect(readFileSync(join(unpacked, "rootfs/usr/local/bin/greet"), "utf8")).toContain('echo "hello, ${name}!"');
    expect(existsSync(join(unpacked, "rootfs/cache"))).toBe(false); // the cache mount's mount point is not in the layer
  }, 60_000);

  test("runs with crun", () => {
    const result = runMemobuild(["run", "hello:test", "--cache-dir", cacheDir, "--", "Ada"]);
    expect(result.stdout).toBe("hello, Ada!\n");
    expect(result.exitCode).toBe(0);
    const id = runMemobuild(["run", "memobuild/busybox", "--cache-dir", cacheDir, "--", "id"]);
    expect(id.stdout).toBe("uid=0(root) gid=0(root)\n");
  });

  test("the base image exports for other caches", () => {
    mustBuild(join(REPO_ROOT, "examples/base"), "--output", `type=oci,dest=${join(work, "hello-base-oci")}`, "-t", "memobuild/busybox:latest");
  });

  test("a no-op rebuild executes nothing and gives the same image", () => {
    const again = mustBuild(join(REPO_ROOT, "examples/hello"), "-t", "hello:test", "--output", `type=oci,dest=${join(work, "hello-oci-again")}`);
    expect(executed(again)).toEqual([]);
    expect(again["containerimage.digest"]).toBe(first["containerimage.digest"]);
  });

  test("--build-arg invalidates only the steps that use it", () => {
    const changed = mustBuild(join(REPO_ROOT, "examples/hello"), "--build-arg", "GREETING=hi");
    // The RUNs see GREETING in their environment; the final stage copies their new output.
    expect(executed(changed)).toEqual(["build/4", "build/5", "2/1", "2/2", "2/3", "2/4"]);
    expect(statuses(changed)).toMatchObject({ "build/1": "cached-local", "build/2": "cached-local", "build/3": "cached-local" });
  });
});

describe("the flags buildx users type", () => {
  test("-q prints only the image ID, --iidfile writes it, --label labels the image (beside its own LABELs)", () => {
    const dir = project({ Dockerfile: "FROM memobuild/busybox\nLABEL own=dockerfile\nRUN echo q > /q\n" });
    const iid = join(work, "iid");
    const out = join(work, "labelled-oci");
    const result = build(dir, "-q", "--iidfile", iid, "--label", "org.opencontainers.image.source=https://example.com/repo", "--label", "own=flag", "--output", `type=oci,dest=${out},compression=uncompressed`);
    expect(result.exitCode).toBe(0);
    const configDigest = result.metadata!["containerimage.config.digest"];
    expect(result.stdout).toBe(`${configDigest}\n`);
    expect(result.stderr).toBe("");
    expect(readFileSync(iid, "utf8")).toBe(configDigest);
    const blob = (digest: string) => JSON.parse(readFileSync(join(out, "blobs/sha256", digest.slice(7)), "utf8"));
    const config = blob(configDigest);
    expect(config.config.Labels).toEqual({ own: "flag", "org.opencontainers.image.source": "https://example.com/repo" });
    // A label changes only the config: the layers are the same, and the step cached.
    const plain = build(dir, "-q");
    expect(plain.metadata!["containerimage.config.digest"]).not.toBe(configDigest);
    expect(executed(plain.metadata!)).toEqual([]);
    const bad = build(dir, "--label", "novalue");
    expect(bad.exitCode).not.toBe(0);
    expect(bad.stderr).toContain("--label novalue: use NAME=VALUE");
  });
});

describe("incremental rebuilds", () => {
  const dockerfile = [
    "FROM memobuild/busybox AS compile",
    "WORKDIR /app",
    "COPY config.txt ./",
    "RUN cat config.txt > built.txt",
    "COPY src/ ./src/",
    "RUN ls src > files.txt",
    "FROM memobuild/busybox AS docs",
    "COPY docs.txt /docs.txt",
    "RUN wc -c /docs.txt > /size.txt",
    "FROM memobuild/busybox",
    "COPY --from=compile /app/files.txt /files.txt",
    "COPY --from=docs /size.txt /size.txt",
    'CMD ["cat", "/files.txt", "/size.txt"]',
  ].join("\n");
  let dir: string;
  beforeAll(() => {
    dir = project({ Dockerfile: dockerfile, "config.txt": "v1\n", "src/a.c": "int a;\n", "src/b.c": "int b;\n", "docs.txt": "docs\n" });
    mustBuild(dir, "-t", "incremental:test");
  });

  test("editing one copied file re-runs only what follows that COPY, and its consumers", () => {
    writeFileSync(join(dir, "src/a.c"), "int A;\n"); // same size
    const m = mustBuild(dir);
    // What follows in the final stage has new parents (the CMD only gets a new key); docs/* did not change.
    expect(executed(m)).toEqual(["compile/4", "compile/5", "2/1", "2/2", "2/3"]);
    expect(statuses(m)["docs/2"]).toBe("cached-local");
  });

  test("touch and mtime changes re-run nothing", () => {
    const past = new Date(2001, 1, 1);
    for (const file of ["config.txt", "src/a.c", "src/b.c", "docs.txt"]) utimesSync(join(dir, file), past, past);
    expect(executed(mustBuild(dir))).toEqual([]);
  });

  test("a file excluded by .dockerignore does not affect the build", () => {
    writeFileSync(join(dir, ".dockerignore"), "src/*.tmp\n");
    mustBuild(dir);
    writeFileSync(join(dir, "src/scratch.tmp"), "noise");
    expect(executed(mustBuild(dir))).toEqual([]);
  });

  test("--no-cache runs every step", () => {
    const m = mustBuild(dir, "--no-cache");
    expect(executed(m)).toContain("compile/3");
    expect(executed(m)).toContain("docs/2");
  });

  test("--target builds what the stage needs and skips the rest", () => {
    const m = mustBuild(dir, "--target", "docs");
    expect(m.steps.filter((s) => s.status === "skipped").map((s) => s.id)).toEqual([
      "compile/0", "compile/1", "compile/2", "compile/3", "compile/4", "compile/5", "2/0", "2/1", "2/2", "2/3",
    ]);
  });
});

describe("independent stages build in parallel", () => {
  // Each stage waits for the other's marker in a shared cache mount: they can only both
  // finish if they run at the same time.
  const rendezvous = (id: string) => (me: string, other: string) =>
    `RUN --mount=type=cache,target=/sync,id=${id} touch /sync/${me} && i=0; while [ ! -e /sync/${other} ]; do i=$((i+1)); [ $i -gt 60 ] && exit 7; sleep 0.1; done; echo ${me} > /${me}`;
  const dockerfile = (id: string) => {
    const run = rendezvous(id);
    return ["FROM memobuild/busybox AS a", run("a", "b"), "FROM memobuild/busybox AS b", run("b", "a"), "FROM memobuild/busybox", "COPY --from=a /a /a", "COPY --from=b /b /b"].join("\n");
  };

  test("with --jobs 2 (or the default) both stages run at once", () => {
    const dir = project({ Dockerfile: dockerfile(`r-${Date.now()}`) });
    const m = mustBuild(dir, "--jobs", "2");
    // (The FROM steps are the same step in both stages, whatever the stages are called.)
    expect(executed(m).filter((id) => !id.endsWith("/0"))).toEqual(["a/1", "b/1", "2/1", "2/2"]);
  });

  test("with --jobs 1 they run one after the other (and this rendezvous cannot complete)", () => {
    const dir = project({ Dockerfile: dockerfile(`s-${Date.now()}`) });
    const result = build(dir, "--jobs", "1");
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain("exit code 7");
  }, 30_000);
});

describe("keys follow what a stage reference stands for, never how it is written", () => {
  const original = [
    "FROM memobuild/busybox AS build",
    `RUN echo built-${Date.now()} > /artifact`,
    "FROM memobuild/busybox AS docs",
    "RUN echo docs > /docs",
    "FROM memobuild/busybox",
    "COPY --from=build /artifact /artifact",
    "RUN --mount=from=docs,target=/d cat /d/docs > /docs-copy",
  ];
  const variants: [string, string[]][] = [
    ["a stage renamed", original.map((l) => l.replace("AS build", "AS builder").replace("--from=build", "--from=builder"))],
    ["--from=N for --from=NAME", original.map((l) => l.replace("--from=build", "--from=0").replace("from=docs", "from=1"))],
    ["an independent stage moved", [...original.slice(2, 4), ...original.slice(0, 2), ...original.slice(4).map((l) => l.replace("from=docs", "from=0").replace("from=build", "from=1"))]],
  ];

  test("renaming a stage, --from=0 for --from=build and moving an independent stage keep every hit; changing a stage's content does not", () => {
    const dir = project({ Dockerfile: original.join("\n") });
    const first = mustBuild(dir);
    expect(executed(first).filter((id) => !id.endsWith("/0"))).toEqual(["build/1", "docs/1", "2/1", "2/2"]);
    for (const [what, lines] of variants) {
      writeFileSync(join(dir, "Dockerfile"), lines.join("\n"));
      const again = mustBuild(dir);
      // Nothing runs (the image's history still records the instructions as written).
      expect({ what, executed: executed(again) }).toEqual({ what, executed: [] });
    }
    writeFileSync(join(dir, "Dockerfile"), original.map((l) => l.replace("echo docs", "echo DOCS")).join("\n"));
    expect(executed(mustBuild(dir))).toEqual(["docs/1", "2/2"]);
  });
});

describe("memobuild explain", () => {
  test("says which steps would hit, and for each miss what changed", () => {
    const dir = project({
      Dockerfile: ["FROM memobuild/busybox AS base", "ARG MODE=fast", "COPY app/ /app/", "RUN echo $MODE > /mode", "FROM base", "COPY --from=base /mode /final-mode"].join("\n"),
      "app/main.sh": "echo main\n",
      "app/util.sh": "echo util\n",
    });
    mustBuild(dir);
    const explain = (...args: string[]) => runMemobuild(["explain", dir, "--cache-dir", cacheDir, ...args]);
    // Steps are named as the build names them; only steps that do work (COPY, RUN) are counted.
    expect(explain().stdout).toEndWith("3 of 3 step(s) would come from the cache; 0 would run\n");

    writeFileSync(join(dir, "app/main.sh"), "echo MAIN\n");
    writeFileSync(join(dir, "app/new.sh"), "new\n");
    Bun.spawnSync(["chmod", "755", join(dir, "app/util.sh")]);
    const out = explain("--build-arg", "MODE=slow").stdout;
    expect(out).toContain("hit   [base 2/4] ARG MODE=slow\n");
    expect(out).toContain("MISS  [base 3/4] COPY app/ /app/\n        files changed: app/main.sh (content), app/new.sh (added), app/util.sh (mode)\n");
    expect(out).toContain("MISS  [base 4/4] RUN echo $MODE > /mode\n        build args or environment changed: MODE\n");
    expect(out).toContain("MISS  [stage-1 2/2] COPY --from=base /mode /final-mode\n        the stage or image it reads changed (base)\n");
    expect(out).toEndWith("0 of 3 step(s) would come from the cache; 3 would run\n");
    expect(JSON.parse(explain("--json").stdout).find((e: { id: string }) => e.id === "base/2").reasons[0]).toMatch(/^files changed/);
    // explain runs nothing: a build afterwards still has everything to do.
    expect(executed(mustBuild(dir))).toContain("base/2");
  });
});

describe("RUN", () => {
  test("a failing RUN stops the build (exit code 1) naming its exit code, instruction, location and output", () => {
    const dir = project({ Dockerfile: "FROM memobuild/busybox\nRUN echo first line && echo oops >&2 && exit 3\nRUN echo never\n" });
    const result = build(dir);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(`memobuild: ${join(dir, "Dockerfile")}:2:1: RUN echo first line && echo oops >&2 && exit 3: process did not complete successfully: exit code 3`);
    expect(result.stderr).toContain("    oops");
    expect(result.stderr).not.toContain("never");
  });

  test("ENV, WORKDIR, USER by name and SHELL reach the container; the network is RUN's own", () => {
    const dir = project({
      Dockerfile: [
        "FROM memobuild/busybox",
        "ARG WHO=builder",
        "ENV GREETING=hello",
        "WORKDIR /work/dir",
        "USER app",
        'SHELL ["/bin/sh", "-e", "-c"]',
        'RUN echo "$GREETING $WHO $(pwd) $(id -u):$(id -g) $(cat /proc/net/dev | wc -l)" > /tmp/out.txt',
        "USER root",
        "RUN cp /tmp/out.txt /result.txt",
        'CMD ["cat", "/result.txt"]',
      ].join("\n"),
    });
    mustBuild(dir, "-t", "env:test");
    const out = runMemobuild(["run", "env:test", "--cache-dir", cacheDir]).stdout;
    // 2 header lines + lo + the sandbox's tap0 (test/network.test.ts tests the network itself).
    expect(out).toBe("hello builder /work/dir 1000:1000 4\n");
  });

  test("a RUN stays in the builder's own cgroups, so limits put on the builder hold for it too", () => {
    // crun made a cgroup per container at the root of each hierarchy: a RUN left the builder's
    // memory or pids limit behind (and moving into it cost an RCU grace period per RUN).
    const dir = project({ Dockerfile: "FROM memobuild/busybox\nRUN cat /proc/self/cgroup\n" });
    const result = build(dir, "--no-cache");
    expect(result.exitCode).toBe(0);
    const shown = result.stderr.split("\n").filter((line) => /^#2 \d+:[^:]*:\//.test(line)).map((line) => line.slice(3));
    expect(shown).toEqual(readFileSync("/proc/self/cgroup", "utf8").trim().split("\n"));
  });

  test("RUN output without newlines is passed on in bounded lines, every byte of it", () => {
    const dir = project({ Dockerfile: "FROM memobuild/busybox\nRUN head -c 3000000 /dev/zero | tr '\\0' x\n" });
    const result = build(dir);
    expect(result.exitCode).toBe(0);
    const lines = result.stderr.split("\n").filter((l) => l.startsWith("#2 x"));
    expect(lines.length).toBe(Math.ceil(3_000_000 / (16 * 1024)));
    expect(Math.max(...lines.map((l) => l.length))).toBe(16 * 1024 + 3);
    expect(lines.reduce((total, l) => total + l.length - 3, 0)).toBe(3_000_000);
  });

  test("RUN --network=host and build --network host see the host's interfaces", () => {
    const hostInterfaces = readFileSync("/proc/net/dev", "utf8").trim().split("\n").length;
    const dir = project({
      Dockerfile: 'FROM memobuild/busybox\nRUN --network=host wc -l < /proc/net/dev > /a\nRUN wc -l < /proc/net/dev > /b\nCMD ["cat", "/a", "/b"]\n',
    });
    mustBuild(dir, "-t", "net:a", "--allow", "network.host");
    expect(runMemobuild(["run", "net:a", "--cache-dir", cacheDir]).stdout).toBe(`${hostInterfaces}\n4\n`);
    mustBuild(dir, "-t", "net:b", "--network", "host", "--no-cache", "--allow", "network.host");
    expect(runMemobuild(["run", "net:b", "--cache-dir", cacheDir]).stdout).toBe(`${hostInterfaces}\n${hostInterfaces}\n`);
  });

  test("a cache mount persists across builds and never lands in a layer", () => {
    const dockerfile = (n: number) =>
      `FROM memobuild/busybox\nRUN --mount=type=cache,target=/var/cache/app,id=counter echo ${n} >> /var/cache/app/log && cat /var/cache/app/log | wc -l > /count\nCMD ["cat", "/count"]\n`;
    const dir = project({ Dockerfile: dockerfile(1) });
    mustBuild(dir, "-t", "cachemount:test");
    writeFileSync(join(dir, "Dockerfile"), dockerfile(2));
    mustBuild(dir, "-t", "cachemount:test");
    expect(runMemobuild(["run", "cachemount:test", "--cache-dir", cacheDir]).stdout.trim()).toBe("2");
    // What the RUN wrote to the cache stays out of the image; the mount point stays, empty, as BuildKit leaves it.
    const ls = runMemobuild(["run", "cachemount:test", "--cache-dir", cacheDir, "--", "ls", "-A", "/var/cache", "/var/cache/app"]);
    expect(ls.stdout).toBe("/var/cache:\napp\n\n/var/cache/app:\n");
  });

  test("tmpfs and bind mounts from the context and from a stage", () => {
    const dir = project({
      Dockerfile: [
        "FROM memobuild/busybox AS tools",
        "RUN mkdir /tools && echo tool-data > /tools/data",
        "FROM memobuild/busybox",
        "RUN --mount=type=tmpfs,target=/scratch --mount=type=bind,source=input,target=/in --mount=type=bind,from=tools,source=/tools,target=/t \\",
        "    cat /in/msg /t/data > /combined && touch /scratch/x && ! touch /in/readonly 2>/dev/null",
        'CMD ["cat", "/combined"]',
      ].join("\n"),
      "input/msg": "from-context\n",
    });
    mustBuild(dir, "-t", "mounts:test");
    expect(runMemobuild(["run", "mounts:test", "--cache-dir", cacheDir]).stdout).toBe("from-context\ntool-data\n");
    // The mount points stay as empty directories, as BuildKit leaves them; nothing mounted there lands.
    const ls = runMemobuild(["run", "mounts:test", "--cache-dir", cacheDir, "--", "sh", "-c", "ls -A /in /t /scratch"]).stdout;
    expect(ls).toBe("/in:\n\n/scratch:\n\n/t:\n");
  });

  test("a secret is readable in RUN and appears in no blob, key, log or metadata", () => {
    const secretValue = process.env.MEMOBUILD_TEST_SECRET ?? "s3cr3t-" + Math.random().toString(36).slice(2);
    const secretFile = join(work, "token");
    writeFileSync(secretFile, secretValue);
    const dir = project({
      Dockerfile: "FROM memobuild/busybox\nRUN --mount=type=secret,id=token test \"$(cat /run/secrets/token)\" = " + secretValue + " && echo ok > /checked\n",
    });
    // The Dockerfile names the value only to check it; the secret itself travels by --secret.
    writeFileSync(join(dir, "Dockerfile"), "FROM memobuild/busybox\nARG EXPECTED\nRUN --mount=type=secret,id=token test \"$(cat /run/secrets/token)\" = \"$(echo $EXPECTED | rev)\" && echo ok > /checked\n");
    const reversed = [...secretValue].reverse().join("");
    const result = build(dir, "--secret", `id=token,src=${secretFile}`, "--build-arg", `EXPECTED=${reversed}`);
    rmSync(secretFile); // the user's own copy; what is left must not hold the value
    expect(result.exitCode).toBe(0);
    expect(result.stderr).not.toContain(secretValue);
    expect(JSON.stringify(result.metadata)).not.toContain(secretValue);
    const needle = Buffer.from(secretValue);
    const blobs = join(cacheDir, "blobs/sha256");
    for (const name of readdirSync(blobs)) {
      let bytes = readFileSync(join(blobs, name));
      if (bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = gunzipSync(bytes);
      expect(bytes.includes(needle)).toBe(false);
    }
    const grep = Bun.spawnSync(["grep", "-rl", secretValue, cacheDir], { stdout: "pipe" });
    expect(grep.stdout.toString()).toBe("");
  });

  test("--ssh forwards an agent: a socket at SSH_AUTH_SOCK with the mount's owner and mode, gone from the layer; the key nowhere", () => {
    const key = join(work, "id_ed25519");
    expect(Bun.spawnSync(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key]).exitCode).toBe(0);
    const privateKey = readFileSync(key, "utf8").split("\n")[1]; // a line of the key's body
    const dir = project({
      Dockerfile:
        "FROM memobuild/busybox\n" +
        "RUN --mount=type=ssh,uid=1000,mode=0660 test -S \"$SSH_AUTH_SOCK\" && stat -c '%a %u' \"$SSH_AUTH_SOCK\" > /seen && echo \"$SSH_AUTH_SOCK\" >> /seen\n" +
        "RUN --mount=type=ssh,id=deploy,target=/agent.sock,required=true test -S /agent.sock\n",
    });
    const out = join(work, "ssh-oci");
    const result = build(dir, "--ssh", `default=${key}`, "--ssh", `deploy=${key}`, "--output", `type=oci,dest=${out},compression=uncompressed`);
    expect(result.exitCode).toBe(0);
    const inLayers = (script: string) => Bun.spawnSync(["sh", "-c", `cd ${out}/blobs/sha256 && for f in *; do ${script} 2>/dev/null; done`], { stdout: "pipe" }).stdout.toString();
    expect(inLayers("tar -xOf $f seen")).toBe("660 1000\n/run/buildkit/ssh_agent.0\n");
    const listing = inLayers("tar -tf $f").split("\n");
    expect(listing).toContain("run/buildkit/"); // the mount point's directory stays, as BuildKit's
    expect(listing.filter((name) => name.includes("ssh_agent") || name.includes("agent.sock"))).toEqual([]); // the socket stubs do not
    const grep = Bun.spawnSync(["grep", "-rlF", privateKey, cacheDir, out], { stdout: "pipe" });
    expect(grep.stdout.toString()).toBe("");
  });

  test("RUN --mount=type=ssh,required=true without --ssh fails naming the agent; without required it runs", () => {
    const dir = project({ Dockerfile: "FROM memobuild/busybox\nRUN --mount=type=ssh,id=deploy,required=true true\n" });
    const result = build(dir);
    expect(result.exitCode).not.toBe(0);
    expect(result.stderr).toContain('ssh agent "deploy" is required but was not given (--ssh deploy');
    const optional = project({ Dockerfile: "FROM memobuild/busybox\nRUN --mount=type=ssh test -z \"$SSH_AUTH_SOCK\"\n" });
    expect(build(optional).exitCode).toBe(0);
  });
});

describe("COPY", () => {
  test("--chown by name, --chmod, several sources, wildcards and heredocs", () => {
    const dir = project({
      Dockerfile: [
        "FROM memobuild/busybox",
        "COPY --chown=app:app --chmod=0750 a.sh b.sh /opt/bin/",
        "COPY conf/*.ini /etc/app/",
        "COPY <<EOF /etc/motd",
        "welcome",
        "EOF",
        'CMD ["sh", "-c", "stat -c \'%U:%G %a %n\' /opt/bin/* /etc/app/* /etc/motd; cat /etc/motd"]',
      ].join("\n"),
      "a.sh": "a",
      "b.sh": "b",
      "conf/x.ini": "x",
      "conf/y.ini": "y",
      "conf/z.txt": "z",
    });
    mustBuild(dir, "-t", "copy:test");
    expect(runMemobuild(["run", "copy:test", "--cache-dir", cacheDir]).stdout).toBe(
      ["app:app 750 /opt/bin/a.sh", "app:app 750 /opt/bin/b.sh", "root:root 644 /etc/app/x.ini", "root:root 644 /etc/app/y.ini", "root:root 644 /etc/motd", "welcome", ""].join("\n"),
    );
  });

  test("sources outside the context, missing or through a symlink out are errors", () => {
    for (const [source, message] of [
      ["../etc/passwd", 'source "../etc/passwd" is outside the build context'],
      ["missing.txt", 'source "missing.txt" not found in the build context'],
      ["escape/passwd", 'source "escape/passwd" leads outside the build context through symlink escape'],
      // Absolute links stay inside: /etc is read as the context's etc/, which is not there.
      ["rooted/passwd", 'source "rooted/passwd": symlink rooted points to "/etc", which is not in the build context, and an absolute target is read inside the context, as BuildKit does'],
    ]) {
      const dir = project({ Dockerfile: `FROM memobuild/busybox\nCOPY ${source} /x\n` });
      Bun.spawnSync(["ln", "-s", "../../../../etc", join(dir, "escape")]);
      Bun.spawnSync(["ln", "-s", "/etc", join(dir, "rooted")]);
      const result = build(dir);
      expect(result.exitCode).toBe(1);
      expect(result.stderr).toContain(`${join(dir, "Dockerfile")}:2:1: COPY ${source} /x: ${message}`);
    }
  });

  test("ADD unpacks local tar archives (plain, gzip, xz), safely; --unpack=false copies them", () => {
    const dir = project({ Dockerfile: "", "payload/bin/tool": "#!/bin/sh\necho tool\n", "payload/etc/conf": "conf\n" });
    Bun.spawnSync(["chmod", "755", join(dir, "payload/bin/tool")]);
    Bun.spawnSync(["tar", "-cf", join(dir, "plain.tar"), "-C", join(dir, "payload"), "."]);
    Bun.spawnSync(["tar", "-czf", join(dir, "app.tar.gz"), "-C", join(dir, "payload"), "bin"]);
    Bun.spawnSync(["tar", "-cJf", join(dir, "conf.tar.xz"), "-C", join(dir, "payload"), "etc"]);
    writeFileSync(
      join(dir, "Dockerfile"),
      "FROM memobuild/busybox\nADD app.tar.gz /opt/\nADD conf.tar.xz /opt/\nADD plain.tar /plain\nADD --unpack=false app.tar.gz /kept/\n" +
        'CMD ["sh", "-c", "/opt/bin/tool; cat /opt/etc/conf /plain/etc/conf; ls /kept"]\n',
    );
    mustBuild(dir, "-t", "add:test");
    expect(runMemobuild(["run", "add:test", "--cache-dir", cacheDir]).stdout).toBe("tool\nconf\nconf\napp.tar.gz\n");

    // An archive with a path that climbs out is refused.
    const evil = project({ Dockerfile: "FROM memobuild/busybox\nADD evil.tar /x/\n" });
    const chunks: Uint8Array[] = [];
    const writer = new TarWriter((c: Uint8Array) => chunks.push(c));
    writer.add({ name: "../../escaped", type: "file", mode: 0o644, uid: 0, gid: 0, size: 1, mtime: 0 });
    writer.content(Buffer.from("x"));
    writer.pad(1);
    writer.finish();
    writeFileSync(join(evil, "evil.tar"), Buffer.concat(chunks));
    const result = build(evil);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain('escapes the layer root');
  });

  test("--parents keeps source directories (with a /./ pivot); --exclude works with --from", () => {
    const dir = project({
      Dockerfile: [
        "FROM memobuild/busybox AS src",
        "RUN mkdir -p /out/keep /out/skip && echo k > /out/keep/k.txt && echo s > /out/skip/s.txt && echo l > /out/log.txt",
        "FROM memobuild/busybox",
        "COPY --parents pkg/a/a.txt pkg/b/b.txt /tree/",
        "COPY --parents ./build/./bin/tool /pivot/",
        "COPY --from=src --exclude=skip --exclude=*.txt /out/ /from/",
        'CMD ["sh", "-c", "find /tree /pivot /from | sort"]',
      ].join("\n"),
      "pkg/a/a.txt": "a",
      "pkg/b/b.txt": "b",
      "build/bin/tool": "t",
    });
    mustBuild(dir, "-t", "parents:test");
    expect(runMemobuild(["run", "parents:test", "--cache-dir", cacheDir]).stdout.split("\n").filter(Boolean)).toEqual([
      "/from", "/from/keep", "/from/keep/k.txt", "/pivot", "/pivot/bin", "/pivot/bin/tool", "/tree", "/tree/pkg", "/tree/pkg/a", "/tree/pkg/a/a.txt", "/tree/pkg/b", "/tree/pkg/b/b.txt",
    ]);
  });

  test("ADD from a URL: --checksum is checked, and a cached step downloads nothing", async () => {
    let requests = 0;
    let body = "payload v1\n";
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch(request) {
        requests++;
        if (new URL(request.url).pathname === "/missing") return new Response("no", { status: 404 });
        return new Response(body, { headers: { "last-modified": "Wed, 01 Jan 2020 00:00:00 GMT" } });
      },
    });
    try {
      const url = `http://127.0.0.1:${server.port}/files/data.txt`;
      const sha = (text: string) => `sha256:${new Bun.CryptoHasher("sha256").update(text).digest("hex")}`;
      const dir = project({ Dockerfile: `FROM memobuild/busybox\nADD --checksum=${sha(body)} ${url} /dl/\nCMD ["sh", "-c", "stat -c '%a %Y' /dl/data.txt; cat /dl/data.txt"]\n` });
      const run = async (args: string[]) => {
        // The server runs in this process, so the builder must run without blocking it.
        const child = Bun.spawn([memobuildBinary(), ...args, "--cache-dir", cacheDir], { stdout: "pipe", stderr: "pipe" });
        const [stdout, stderr, exitCode] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
        return { stdout, stderr, exitCode };
      };
      expect((await run(["build", dir, "-t", "url:test"])).exitCode).toBe(0);
      expect((await run(["run", "url:test"])).stdout).toBe("600 1577836800\npayload v1\n");
      const before = requests;
      expect((await run(["build", dir])).exitCode).toBe(0);
      expect(requests).toBe(before); // keyed on the checksum: nothing fetched

      writeFileSync(join(dir, "Dockerfile"), `FROM memobuild/busybox\nADD --checksum=${sha("other")} ${url} /dl/\n`);
      expect((await run(["build", dir])).stderr).toContain(`checksum mismatch for ${url}: expected ${sha("other")}, got ${sha(body)}`);

      // Without a checksum the content decides: a change on the server re-runs the step.
      writeFileSync(join(dir, "Dockerfile"), `FROM memobuild/busybox\nADD ${url} /dl/\n`);
      expect((await run(["build", dir])).exitCode).toBe(0);
      body = "payload v2\n";
      const metadata = join(work, "url-meta.json");
      expect((await run(["build", dir, "--metadata-file", metadata])).exitCode).toBe(0);
      expect(executed(JSON.parse(readFileSync(metadata, "utf8")))).toEqual(["0/1"]);

      writeFileSync(join(dir, "Dockerfile"), `FROM memobuild/busybox\nADD http://127.0.0.1:${server.port}/missing /x\n`);
      expect((await run(["build", dir])).stderr).toContain(`cannot fetch http://127.0.0.1:${server.port}/missing: HTTP 404`);
    } finally {
      server.stop(true);
    }
  }, 60_000);

  test("several sources need a directory destination", () => {
    const dir = project({ Dockerfile: "FROM memobuild/busybox\nCOPY a b /dest\n", a: "", b: "" });
    expect(build(dir).stderr).toContain("the destination must be a directory and end with a /");
  });
});

describe("the cache survives kill -9", () => {
  test("a build killed in the middle leaves a cache the next build uses", async () => {
    const dir = project({ Dockerfile: "FROM memobuild/busybox\nRUN echo one > /one\nRUN sleep 30\nRUN echo three > /three\n" });
    const child = Bun.spawn([memobuildBinary(), "build", dir, "--cache-dir", cacheDir, "--progress", "plain"], { stderr: "pipe", stdout: "ignore" });
    // Wait until the sleep step is running, then kill the builder outright.
    const reader = child.stderr.getReader();
    let seen = "";
    while (!seen.includes("RUN sleep 30")) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += new TextDecoder().decode(value);
    }
    await Bun.sleep(300);
    child.kill("SIGKILL");
    await child.exited;
    // The RUN's container dies with the build (no process of it is left to kill here).
    const containers = () => (existsSync("/run/crun") ? readdirSync("/run/crun").filter((n) => n.startsWith(`memobuild-${child.pid}-`)) : []);
    for (let i = 0; i < 50 && containers().length > 0; i++) await Bun.sleep(100);
    expect(containers()).toEqual([]);
    // The next build reuses the finished step and completes the rest.
    writeFileSync(join(dir, "Dockerfile"), "FROM memobuild/busybox\nRUN echo one > /one\nRUN sleep 0\nRUN echo three > /three\n");
    const m = mustBuild(dir);
    expect(statuses(m)["0/1"]).toBe("cached-local");
    expect(executed(m)).toEqual(["0/2", "0/3"]);
    expect(readdirSync(join(cacheDir, "tmp")).filter((n) => !n.startsWith(`${process.pid}-`))).toEqual([]);
    expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(join(cacheDir, "tmp", `${child.pid}-`));
  }, 60_000);
});

describe("a build interrupted mid-RUN (Ctrl-C, SIGTERM)", () => {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    test(`${signal}: exits with no overlay left mounted under the cache dir, and its container goes`, async () => {
      const dir = project({ Dockerfile: `FROM memobuild/busybox\nRUN echo ${signal} > /one\nRUN sleep 30\n` });
      const child = Bun.spawn([memobuildBinary(), "build", dir, "--cache-dir", cacheDir, "--progress", "plain"], { stderr: "pipe", stdout: "ignore" });
      const reader = child.stderr.getReader();
      let seen = "";
      while (!seen.includes("RUN sleep 30")) {
        const { value, done } = await reader.read();
        if (done) break;
        seen += new TextDecoder().decode(value);
      }
      // The step's overlay is mounted before its container starts: wait for the container.
      const containers = () => (existsSync("/run/crun") ? readdirSync("/run/crun").filter((n) => n.startsWith(`memobuild-${child.pid}-`)) : []);
      for (let i = 0; i < 100 && containers().length === 0; i++) await Bun.sleep(50);
      expect(containers()).not.toEqual([]);
      child.kill(signal);
      expect(await child.exited).toBe(signal === "SIGINT" ? 130 : 143);
      // Read at once, before any other build could clean up after it.
      // Nor the RUN's private tmpfs (its secrets' files) under /run/memobuild.
      const mounted = readFileSync("/proc/self/mountinfo", "utf8").split("\n").filter((line) => line.includes(cacheDir) || line.includes(`/run/memobuild/${child.pid}-`));
      expect(mounted).toEqual([]);
      // Its container is killed by the watchdog that outlives the build (runtime.ts), a moment after.
      for (let i = 0; i < 50 && containers().length > 0; i++) await Bun.sleep(100);
      expect(containers()).toEqual([]);
    }, 60_000);
  }
});

describe("deep images", () => {
  test("a RUN on 130 layers mounts them all (64-digit names would overflow the mount options at 63)", () => {
    const files: Record<string, string> = {};
    const lines = ["FROM memobuild/busybox"];
    for (let i = 0; i < 130; i++) {
      files[`f${i}`] = `${i}\n`;
      lines.push(`COPY f${i} /deep/`);
    }
    lines.push("RUN cat /deep/f0 /deep/f129 > /ends");
    const dir = project({ ...files, Dockerfile: lines.join("\n") + "\n" });
    mustBuild(dir, "-t", "deep:130");
    expect(runMemobuild(["run", "deep:130", "--cache-dir", cacheDir, "--", "cat", "/ends"]).stdout).toBe("0\n129\n");
  }, 60_000);
});

describe("memobuild cache", () => {
  test("du, gc to a size, prune; named images survive", () => {
    const own = join(work, "gc-cache");
    const run = (...args: string[]) => {
      const end = args.indexOf("--"); // options go before the container's command
      return runMemobuild(end < 0 ? [...args, "--cache-dir", own] : [...args.slice(0, end), "--cache-dir", own, ...args.slice(end)]);
    };
    const base = join(work, "base-oci");
    mustBuild(join(REPO_ROOT, "examples/base"), "--output", `type=oci,dest=${base}`, "-t", "memobuild/busybox:latest");
    expect(run("image", "import", `oci:${base}:memobuild/busybox:latest`).exitCode).toBe(0);
    const dir = project({ Dockerfile: "FROM memobuild/busybox\nRUN head -c 300000 /dev/urandom > /blob\nRUN echo done > /done\n" });
    const buildHere = () => runMemobuild(["build", dir, "--cache-dir", own, "--metadata-file", join(work, "gc.json")]);
    expect(buildHere().exitCode).toBe(0);
    expect(run("cache", "du").stdout).toMatch(/^blobs .*\nsnapshots .*\ncache mounts .*\ntotal .*\n\d+ step result\(s\), \d+ layer\(s\), 1 named image\(s\)/);
    const ls = run("cache", "ls").stdout.split("\n");
    expect(ls[0]).toMatch(/^KEY +LAYER +SIZE +LAST USED +INSTRUCTION$/);
    expect(ls.filter((l) => l.endsWith("  RUN head -c 300000 /dev/urandom > /blob"))).toHaveLength(1);
    expect(ls.filter((l) => l.endsWith("  FROM memobuild/busybox"))).toHaveLength(1);

    const gc = run("cache", "gc", "--max-size", "0.5M");
    expect(gc.stdout).toMatch(/^removed [1-9]\d* step result\(s\) and 2 layer\(s\), freed \d+\.\d MiB; now \d+\.\d MiB of 0\.5 MiB\n$/);
    expect(run("run", "memobuild/busybox", "--", "echo", "base survives").stdout).toBe("base survives\n");
    expect(buildHere().exitCode).toBe(0);
    const again = JSON.parse(readFileSync(join(work, "gc.json"), "utf8")) as Metadata;
    expect(executed(again)).toEqual(["0/0", "0/1", "0/2"]);

    expect(run("cache", "prune").stdout).toMatch(/^removed \d+ step result\(s\) and 2 layer\(s\)/);
    expect(run("cache", "gc", "--max-size", "lots").stderr).toBe('memobuild: invalid size "lots": use bytes or a number with K, M, G or T\n');
  }, 60_000);

  test("gc to a size the cache already fits keeps every step's layer: a rebuild runs nothing", () => {
    const dir = project({ Dockerfile: "FROM memobuild/busybox\nRUN echo kept > /kept\nRUN echo also > /also\n" });
    mustBuild(dir);
    const gc = runMemobuild(["cache", "gc", "--max-size", "1T", "--cache-dir", cacheDir]);
    expect(gc.exitCode).toBe(0);
    expect(executed(mustBuild(dir))).toEqual([]);
  });

  test("gc during a build waits for it, says so, and the build's result survives", async () => {
    const own = join(work, "gc-during-cache");
    expect(runMemobuild(["build", join(REPO_ROOT, "examples/base"), "-t", "memobuild/busybox:latest", "--cache-dir", own]).exitCode).toBe(0);
    const dir = project({ Dockerfile: "FROM memobuild/busybox\nRUN sleep 2 && echo built > /built\n" });
    const build = runMemobuildAsync(["build", dir, "--cache-dir", own, "-t", "during:gc"]);
    await Bun.sleep(1000); // the build holds the cache by now: it is in its RUN
    const gc = await runMemobuildAsync(["cache", "gc", "--max-size", "0", "--cache-dir", own]);
    expect((await build).exitCode).toBe(0);
    expect(gc.stderr).toBe("memobuild: waiting for the builds using the cache to finish (Ctrl-C to stop)\n");
    expect(gc.exitCode).toBe(0);
    // gc ran after the build: the image it named is whole.
    expect(runMemobuild(["run", "during:gc", "--cache-dir", own, "--", "cat", "/built"]).stdout).toBe("built\n");
  }, 60_000);
});

describe("exporters", () => {
  test("oci-archive and docker-archive read by skopeo; oci-archive imports; uncompressed OCI", () => {
    const dir = project({ Dockerfile: "FROM memobuild/busybox\nRUN echo exported > /marker\nCMD [\"cat\", \"/marker\"]\n" });
    const ociArchive = join(work, "img.oci.tar");
    const dockerArchive = join(work, "img.docker.tar");
    const plain = join(work, "img-plain");
    const m = mustBuild(dir, "-t", "exp:1", "--output", `type=oci-archive,dest=${ociArchive}`, "--output", `type=docker-archive,dest=${dockerArchive}`, "--output", `type=oci,dest=${plain},compression=uncompressed`);
    const outputs = (m as unknown as { outputs: { type: string; digest: string }[] }).outputs;
    expect(outputs.map((o) => o.type)).toEqual(["oci-archive", "docker-archive", "oci"]);
    expect(m["containerimage.digest"]).toBe(outputs[0].digest);

    const inspect = (ref: string) => {
      const result = Bun.spawnSync(["skopeo", "inspect", ref], { stdout: "pipe", stderr: "pipe" });
      expect(result.stderr.toString()).toBe("");
      return JSON.parse(result.stdout.toString());
    };
    expect(inspect(`oci-archive:${ociArchive}:exp:1`).Digest).toBe(outputs[0].digest);
    expect(inspect(`docker-archive:${dockerArchive}`).Layers).toHaveLength(3);
    const saved = Bun.spawnSync(["tar", "-xOf", dockerArchive, "manifest.json"], { stdout: "pipe" }).stdout.toString();
    expect(JSON.parse(saved)[0].RepoTags).toEqual(["exp:1"]);
    const plainManifest = JSON.parse(readFileSync(join(plain, "blobs/sha256", outputs[2].digest.slice(7)), "utf8"));
    expect(plainManifest.layers.every((l: { mediaType: string }) => l.mediaType === "application/vnd.oci.image.layer.v1.tar")).toBe(true);

    // Round trip: skopeo turns the docker archive into an OCI archive; MemoBuild imports that.
    const viaSkopeo = join(work, "via-skopeo.tar");
    const copy = Bun.spawnSync(["skopeo", "copy", `docker-archive:${dockerArchive}`, `oci-archive:${viaSkopeo}:via:1`], { stderr: "pipe" });
    expect(copy.stderr.toString()).toBe("");
    const other = join(work, "export-cache");
    expect(runMemobuild(["image", "import", `oci-archive:${viaSkopeo}:via:1`, "-t", "via:1", "--cache-dir", other]).exitCode).toBe(0);
    expect(runMemobuild(["run", "via:1", "--cache-dir", other]).stdout).toBe("exported\n");
    // And image export writes the same archive as the build did.
    const again = join(work, "again.oci.tar");
    expect(runMemobuild(["image", "export", "exp:1", "--output", `type=oci-archive,dest=${again}`, "--cache-dir", cacheDir]).stdout).toBe(`${outputs[0].digest}\n`);
    expect(runMemobuild(["image", "export", "exp:1", "--output", "type=tarball,dest=x", "--cache-dir", cacheDir]).stderr).toBe(
      "memobuild: --output type=tarball is not supported: use oci, oci-archive, docker, docker-archive, image, registry, local, tar (and the shorthands -o DIR for type=local, -o - for a tar of the file system on stdout)\n",
    );
  });
});

describe("reproducible builds", () => {
  test("with SOURCE_DATE_EPOCH, two clean builds in different directories give the same digest", () => {
    const digests = [1, 2].map((n) => {
      const dir = join(work, `repro-${n}`);
      Bun.spawnSync(["cp", "-r", join(REPO_ROOT, "examples/hello"), dir]);
      Bun.spawnSync(["touch", "-d", `2030-01-0${n}`, join(dir, "src/greet.sh.in")]); // different mtimes
      const cache = join(work, `repro-cache-${n}`);
      const imported = runMemobuild(["image", "import", `oci:${join(work, "hello-base-oci")}:memobuild/busybox:latest`, "--cache-dir", cache]);
      expect(imported.exitCode).toBe(0);
      const metadata = join(work, `repro-${n}.json`);
      const args = ["build", dir, "--cache-dir", cache, "--metadata-file", metadata, "--output", `type=oci,dest=${join(work, `repro-oci-${n}`)}`];
      // Once through the environment, once as a build arg: both count.
      const result = n === 1 ? runMemobuild(args, { env: { SOURCE_DATE_EPOCH: "1700000000" } }) : runMemobuild([...args, "--build-arg", "SOURCE_DATE_EPOCH=1700000000"]);
      expect(result.stderr).not.toContain("warning");
      return JSON.parse(readFileSync(metadata, "utf8"))["containerimage.digest"];
    });
    expect(digests[0]).toBe(digests[1]);
    const config = JSON.parse(readFileSync(join(work, "repro-oci-1/blobs/sha256", JSON.parse(readFileSync(join(work, "repro-oci-1/blobs/sha256", digests[0].slice(7)), "utf8")).config.digest.slice(7)), "utf8"));
    expect(config.created).toBe("2023-11-14T22:13:20.000Z");
  }, 60_000);
});

describe("two builds at once on one cache", () => {
  test("both succeed and their results are reused afterwards", async () => {
    const projects = [1, 2].map((n) =>
      project({ Dockerfile: `FROM memobuild/busybox\nCOPY shared.txt /shared.txt\nRUN echo ${n} > /n && sleep 0.5\nRUN cat /shared.txt /n > /out\n`, "shared.txt": "same content\n" }),
    );
    const children = projects.map((dir) => Bun.spawn([memobuildBinary(), "build", dir, "--cache-dir", cacheDir], { stdout: "ignore", stderr: "pipe" }));
    const codes = await Promise.all(children.map((c) => c.exited));
    expect(codes).toEqual([0, 0]);
    for (const dir of projects) expect(executed(mustBuild(dir))).toEqual([]);
  }, 60_000);
});

describe("images", () => {
  test("image import docker-archive: and ONBUILD triggers of a base image", () => {
    // A docker archive, written by hand: manifest.json, config, one layer.
    const dir = mkdtempSync(join(work, "archive-"));
    const layerDir = join(dir, "layer");
    mkdirSync(join(layerDir, "etc"), { recursive: true });
    writeFileSync(join(layerDir, "etc/from-archive"), "archive\n");
    const layerTar = join(dir, "layer.tar");
    expect(Bun.spawnSync(["tar", "-cf", layerTar, "-C", layerDir, "."]).exitCode).toBe(0);
    const diffId = `sha256:${new Bun.CryptoHasher("sha256").update(readFileSync(layerTar)).digest("hex")}`;
    // Built on busybox: reuse its layers by exporting it and unpacking that layout's layers.
    const baseOut = join(work, "archive-base-oci");
    const baseMeta = mustBuild(join(REPO_ROOT, "examples/base"), "--output", `type=oci,dest=${baseOut},compression=uncompressed`);
    const baseManifest = JSON.parse(readFileSync(join(baseOut, "blobs/sha256", baseMeta["containerimage.digest"].slice(7)), "utf8"));
    const baseConfig = JSON.parse(readFileSync(join(baseOut, "blobs/sha256", baseManifest.config.digest.slice(7)), "utf8"));
    const files: Record<string, string> = {};
    const layers = baseManifest.layers.map((l: { digest: string }, i: number) => {
      const name = `base${i}/layer.tar`;
      mkdirSync(join(dir, `base${i}`));
      writeFileSync(join(dir, name), readFileSync(join(baseOut, "blobs/sha256", l.digest.slice(7))));
      files[name] = name;
      return name;
    });
    const config = { ...baseConfig, config: { ...baseConfig.config, OnBuild: ["RUN echo triggered > /onbuild"] }, rootfs: { type: "layers", diff_ids: [...baseConfig.rootfs.diff_ids, diffId] } };
    writeFileSync(join(dir, "config.json"), JSON.stringify(config));
    writeFileSync(join(dir, "manifest.json"), JSON.stringify([{ Config: "config.json", RepoTags: ["archived:1"], Layers: [...layers, "layer.tar"] }]));
    const archive = join(work, "image.tar");
    expect(Bun.spawnSync(["tar", "-cf", archive, "-C", dir, "manifest.json", "config.json", "layer.tar", ...layers]).exitCode).toBe(0);

    const imported = runMemobuild(["image", "import", `docker-archive:${archive}`, "--cache-dir", cacheDir]);
    expect(imported.stderr).toBe("");
    expect(imported.stdout).toMatch(/^archived:1 sha256:[0-9a-f]{64}\n$/);
    const app = project({ Dockerfile: 'FROM archived:1\nCMD ["cat", "/etc/from-archive", "/onbuild"]\n' });
    const m = mustBuild(app, "-t", "onbuild:test");
    expect(m.steps.map((s) => s.instruction)).toEqual(["FROM archived:1", "RUN echo triggered > /onbuild", 'CMD ["cat","/etc/from-archive","/onbuild"]']);
    expect(runMemobuild(["run", "onbuild:test", "--cache-dir", cacheDir]).stdout).toBe("archive\ntriggered\n");
  }, 60_000);

  test("image import oci: of an exported layout, image ls and rm", () => {
    const dir = project({ Dockerfile: "FROM memobuild/busybox\nRUN echo exported > /marker\n" });
    const out = join(work, "export-oci");
    const m = mustBuild(dir, "--output", `type=oci,dest=${out}`, "-t", "exported:v1");
    const otherCache = join(work, "other-cache");
    const imported = runMemobuild(["image", "import", `oci:${out}:exported:v1`, "-t", "imported:v1", "--cache-dir", otherCache]);
    expect(imported.stdout).toBe(`imported:v1 ${m["containerimage.digest"]}\n`);
    expect(runMemobuild(["run", "imported:v1", "--cache-dir", otherCache, "--", "cat", "/marker"]).stdout).toBe("exported\n");
    expect(runMemobuild(["image", "ls", "--cache-dir", otherCache]).stdout).toMatch(/^REFERENCE +IMAGE ID +DIGEST +SIZE +ADDED\nimported:v1 +[0-9a-f]{12} +sha256:/);
    expect(runMemobuild(["image", "rm", "imported:v1", "--cache-dir", otherCache]).stdout).toMatch(/^untagged imported:v1\ndeleted sha256:[0-9a-f]{64}\n$/);
    expect(runMemobuild(["run", "imported:v1", "--cache-dir", otherCache]).stderr).toStartWith("memobuild: no image imported:v1 in the local store (");
  });

  test("a base image that is not in the store is pulled; one that cannot be is a clear error", () => {
    const dir = project({ Dockerfile: "FROM 127.0.0.1:9/nothere:1.0\nRUN true\n" });
    const result = build(dir);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain("pulling 127.0.0.1:9/nothere:1.0: it is not in the local image store");
    // Named where the Dockerfile asks for it.
    expect(result.stderr).toContain(`memobuild: ${join(dir, "Dockerfile")}:1:1: FROM 127.0.0.1:9/nothere:1.0: cannot reach registry 127.0.0.1:9 (http://127.0.0.1:9/v2/nothere/manifests/1.0)`);
  });
});
