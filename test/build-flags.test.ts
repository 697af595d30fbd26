/**
 * The buildx flags people type, with buildx's meaning, end to end from the binary:
 * -o type=local|tar, --push, --platform, --add-host, --shm-size, --ulimit, --no-cache-filter,
 * and `explain`/`graph` taking a build command line with the verb changed.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runMemobuild } from "./support/binary.ts";
import { buildBaseImage, machineWithBase, writeProject } from "./support/base-image.ts";
import { formatPlatform, hostPlatform } from "../src/frontend/platform.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-flags-"));
const baseOci = join(work, "base-oci");
afterAll(() => rmSync(work, { recursive: true, force: true }));
let cache = "";
beforeAll(() => {
  buildBaseImage(work, baseOci);
  cache = machineWithBase(join(work, "cache"), baseOci);
}, 120_000);

const build = (dir: string, ...args: string[]) => runMemobuild(["build", dir, "--cache-dir", cache, "--progress", "plain", ...args]);
function mustBuild(dir: string, ...args: string[]) {
  const result = build(dir, ...args);
  if (result.exitCode !== 0) throw new Error(`build failed (${result.exitCode}):\n${result.stderr}`);
  return result;
}

/** Every path below `root` with its type, mode, owner, size or link target, and content. */
function tree(root: string): string[] {
  const lines: string[] = [];
  const visit = (dir: string, prefix: string) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      const stat = lstatSync(path);
      const what = stat.isSymbolicLink() ? `-> ${readlinkSync(path)}` : stat.isFile() ? `file ${readFileSync(path).toString("base64").slice(0, 40)}` : stat.isDirectory() ? "dir" : `other ${stat.rdev}`;
      lines.push(`${prefix}${name} ${(stat.mode & 0o7777).toString(8)} ${stat.uid}:${stat.gid} ${what}`);
      if (stat.isDirectory()) visit(path, `${prefix}${name}/`);
    }
  };
  visit(root, "");
  return lines;
}

const layered = "FROM memobuild/busybox AS base\nRUN mkdir -p /d/sub && echo a > /d/sub/f && echo b > /d/g && ln -s /etc /d/etclink && chmod 4755 /d/g\nRUN rm -rf /d/sub && rm /d/g && mkdir /d/g && echo new > /d/g/x\nFROM base\nCOPY f /f\n";

describe("-o type=local and type=tar: the file system itself", () => {
  test("type=local gives the tree umoci unpacks from the OCI output, whiteouts applied", () => {
    const dir = writeProject(join(work, "local"), { Dockerfile: layered, f: "f\n" });
    const local = join(work, "local-out");
    const oci = join(work, "local-oci");
    const result = mustBuild(dir, "-t", "local:1", "-o", `type=local,dest=${local}`, "--output", `type=oci,dest=${oci}`);
    expect(result.stderr).toContain(`output local ${local}\n`);
    const bundle = join(work, "umoci-bundle");
    const unpack = Bun.spawnSync(["umoci", "unpack", "--image", `${oci}:local:1`, bundle], { stderr: "pipe" });
    expect(unpack.stderr.toString()).toBe("");
    expect(tree(local)).toEqual(tree(join(bundle, "rootfs")));
    expect(tree(local)).toContain("d/g/x 644 0:0 file " + Buffer.from("new\n").toString("base64"));
    expect(tree(local).some((l) => l.startsWith("d/sub"))).toBe(false);
    // The image output's manifest digest is named beside it; a file system has none.
    const index = JSON.parse(readFileSync(join(oci, "index.json"), "utf8"));
    expect(result.stderr).toContain(`output oci ${oci} manifest ${index.manifests[0].digest}\n`);
  });

  test("type=tar holds the same tree; a non-empty directory is refused, nothing mixed in", () => {
    const dir = writeProject(join(work, "tar"), { Dockerfile: layered, f: "f\n" });
    const tarFile = join(work, "fs.tar");
    const local = join(work, "tar-local");
    mustBuild(dir, "-o", `type=tar,dest=${tarFile}`, "-o", `type=local,dest=${local}`);
    const extracted = join(work, "tar-extracted");
    Bun.spawnSync(["mkdir", "-p", extracted]);
    expect(Bun.spawnSync(["tar", "-xpf", tarFile, "-C", extracted]).exitCode).toBe(0);
    expect(tree(extracted)).toEqual(tree(local));
    const again = build(dir, "-o", `type=local,dest=${local}`);
    expect(again.exitCode).toBe(1);
    expect(again.stderr).toContain(`--output type=local,dest=${local}: the directory is not empty`);
  });
});

describe("flags that change what every RUN sees, and its key", () => {
  const probe = "FROM memobuild/busybox\nRUN cat /etc/hosts > /hosts && ulimit -Sn > /soft && ulimit -Hn > /hard && df -k /dev/shm | tail -1 | awk '{print $2}' > /shm\n";

  test("--add-host, --ulimit and --shm-size reach the container; changing one runs the RUN again", () => {
    const dir = writeProject(join(work, "sandbox"), { Dockerfile: probe });
    const out = join(work, "sandbox-out");
    const flags = ["--add-host", "db:10.1.2.3", "--add-host", "v6:[fd00::1]", "--ulimit", "nofile=512:1024", "--shm-size", "128m"];
    mustBuild(dir, ...flags, "-o", `type=local,dest=${out}`);
    expect(readFileSync(join(out, "hosts"), "utf8")).toBe("127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n10.1.2.3\tdb\nfd00::1\tv6\n");
    expect(readFileSync(join(out, "soft"), "utf8")).toBe("512\n");
    expect(readFileSync(join(out, "hard"), "utf8")).toBe("1024\n");
    expect(readFileSync(join(out, "shm"), "utf8")).toBe(`${128 * 1024}\n`);
    expect(build(dir, ...flags).stderr).toContain("(0 step(s) run, 1 cached"); // the RUN (the FROM does no work)
    const changed = build(dir, "--add-host", "db:10.9.9.9");
    expect(changed.stderr).toContain("(1 step(s) run, 0 cached");
    const explained = runMemobuild(["explain", dir, "--cache-dir", cache, "--add-host", "db:10.7.7.7", "--shm-size", "1g"]);
    expect(explained.stdout).toContain("--add-host, --shm-size or --ulimit changed: host db=10.9.9.9 → host db=10.7.7.7; shm 1073741824");
  });

  test("bad values are usage errors that name the flag", () => {
    const dir = writeProject(join(work, "bad"), { Dockerfile: probe });
    const cases: [string[], string][] = [
      [["--add-host", "db"], "--add-host db: use NAME:IP"],
      [["--add-host", "db:999.1.1.1"], '"999.1.1.1" is not an IP address'],
      [["--add-host", "db:gateway"], '"gateway" is not an IP address (or host-gateway)'],
      [["--ulimit", "files=1"], 'unknown limit "files"'],
      [["--ulimit", "nofile=10:5"], "the soft limit is above the hard one"],
      [["--shm-size", "lots"], "--shm-size lots: invalid size"],
      [["--platform", "windows/amd64"], "--platform windows/amd64: windows images are not supported"],
      [["--platform", "linux"], 'invalid platform "linux": use os/arch[/variant]'],
      [["--push"], "--push and --output type=registry push the -t names: give at least one"],
      [["-o", "type=local"], "dest=PATH is required"],
      [["-o", "type=tar,dest=x,compression=gzip"], 'type=tar takes no "compression" (it takes dest)'],
    ];
    for (const [flags, message] of cases) {
      const result = build(dir, ...flags);
      expect({ flags, exitCode: result.exitCode, stderr: result.stderr }).toEqual({ flags, exitCode: 2, stderr: expect.stringContaining(message) });
    }
    expect(build(dir, "--platform", formatPlatform(hostPlatform())).exitCode).toBe(0);
  });
});

describe("--no-cache-filter and commands that take a build's flags", () => {
  const stages = "FROM memobuild/busybox AS deps\nRUN echo deps > /deps\nFROM memobuild/busybox AS app\nRUN echo app > /app\nCOPY --from=deps /deps /deps\n";

  test("--no-cache-filter runs the named stages' steps again and takes the rest from the cache", () => {
    const dir = writeProject(join(work, "filter"), { Dockerfile: stages });
    const meta = join(work, "filter-meta.json");
    mustBuild(dir);
    mustBuild(dir, "--no-cache-filter", "deps", "--metadata-file", meta);
    const steps = JSON.parse(readFileSync(meta, "utf8")).steps as { id: string; status: string }[];
    expect(Object.fromEntries(steps.map((s) => [s.id, s.status]))).toEqual({ "deps/0": "executed", "deps/1": "executed", "app/0": "cached-local", "app/1": "cached-local", "app/2": "cached-local" });
  });

  test("graph reads a base image's ENV from the local store, as the build will", () => {
    const dir = writeProject(join(work, "graph-env"), { Dockerfile: "FROM memobuild/busybox\nENV PATH=/opt/bin:$PATH\n" });
    const graph = runMemobuild(["graph", dir, "--cache-dir", cache]);
    expect(graph.stderr).toBe("");
    expect(graph.stdout).toContain("ENV PATH=/opt/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  });

  test("graph and explain accept a build command line with the verb changed", () => {
    const dir = writeProject(join(work, "verbs"), { Dockerfile: stages });
    const line = ["-t", "x:1", "--push", "-q", "--progress", "plain", "--label", "a=b", "--no-cache-filter", "deps", "--pull", "-o", "type=local,dest=/nonexistent", "--secret", "id=s,env=HOME", "--build-label", "team=web"];
    const graph = runMemobuild(["graph", dir, ...line]);
    expect(graph.stderr).toBe("");
    expect(graph.exitCode).toBe(0);
    const explain = runMemobuild(["explain", dir, "--cache-dir", cache, ...line]);
    expect(explain.stderr).toBe("");
    expect(explain.exitCode).toBe(0);
  });
});

describe("--build-context", () => {
  const dockerfile = "FROM memobuild/busybox AS base\nRUN echo stage > /who\nFROM base\nCOPY --from=docs a.md /docs/a.md\nRUN --mount=from=docs,target=/d cat /d/b.md > /mounted\nRUN (cat /who 2>/dev/null || echo image) > /seen\n";

  test("a directory is read by COPY --from and RUN --mount from, and its files are in the keys", () => {
    const dir = writeProject(join(work, "named"), { Dockerfile: dockerfile, "../named-docs/a.md": "a1\n", "../named-docs/b.md": "b1\n" });
    const docs = join(work, "named-docs");
    const out = (n: number) => join(work, `named-out-${n}`);
    mustBuild(dir, "--build-context", `docs=${docs}`, "-o", `type=local,dest=${out(1)}`);
    expect(readFileSync(join(out(1), "docs/a.md"), "utf8")).toBe("a1\n");
    expect(readFileSync(join(out(1), "mounted"), "utf8")).toBe("b1\n");
    expect(readFileSync(join(out(1), "seen"), "utf8")).toBe("stage\n");
    writeProject(docs, { "b.md": "b2\n" });
    const meta = join(work, "named-meta.json");
    mustBuild(dir, "--build-context", `docs=${docs}`, "-o", `type=local,dest=${out(2)}`, "--metadata-file", meta);
    expect(readFileSync(join(out(2), "mounted"), "utf8")).toBe("b2\n");
    const statuses = Object.fromEntries((JSON.parse(readFileSync(meta, "utf8")).steps as { id: string; status: string }[]).map((s) => [s.id, s.status]));
    expect(statuses).toMatchObject({ "1/1": "cached-local", "1/2": "executed" }); // a.md did not change; b.md did
  });

  test("docker-image:// and oci-layout:// replace an image, or a stage of the same name, as buildx does", () => {
    const dir = writeProject(join(work, "named-image"), { Dockerfile: dockerfile, "../named-image-docs/a.md": "a\n", "../named-image-docs/b.md": "b\n" });
    const docs = `docs=${join(work, "named-image-docs")}`;
    const out = join(work, "named-image-out");
    mustBuild(dir, "--build-context", docs, "--build-context", "base=docker-image://memobuild/busybox", "-o", `type=local,dest=${out}`);
    expect(readFileSync(join(out, "seen"), "utf8")).toBe("image\n"); // the stage "base" never ran
    const layout = join(work, "named-layout");
    mustBuild(writeProject(join(work, "named-base"), { Dockerfile: "FROM memobuild/busybox\nRUN echo layout > /who\n" }), "-t", "team/base:7", "-o", `type=oci,dest=${layout}`);
    const fromLayout = join(work, "named-layout-out");
    mustBuild(dir, "--build-context", docs, "--build-context", `base=oci-layout://${layout}:team/base:7`, "-o", `type=local,dest=${fromLayout}`);
    expect(readFileSync(join(fromLayout, "seen"), "utf8")).toBe("layout\n");
    const graph = runMemobuild(["graph", dir, "--build-context", "base=docker-image://memobuild/busybox"]);
    expect(graph.stdout).toContain("2 step(s) pruned");
  });

  test("FROM a directory, a missing directory and an unsupported source are clear errors", () => {
    const dir = writeProject(join(work, "named-bad"), { Dockerfile: "FROM tools\nRUN true\n" });
    const fromDir = build(dir, "--build-context", `tools=${work}`);
    expect(fromDir.exitCode).toBe(1);
    expect(fromDir.stderr).toContain("--build-context tools is a directory, and FROM needs an image");
    expect(build(dir, "--build-context", "tools=./nowhere").stderr).toContain("--build-context tools=./nowhere: ./nowhere is not a directory");
    expect(build(dir, "--build-context", "tools=https://example.com/x.tar").stderr).toContain("https sources are not supported");
  });
});

describe("--annotation", () => {
  test("annotates the manifest (buildx's default type), in the store and every image output", () => {
    const dir = writeProject(join(work, "annotated"), { Dockerfile: "FROM memobuild/busybox\nRUN echo a > /a\n" });
    const oci = join(work, "annotated-oci");
    const result = mustBuild(dir, "--annotation", "org.opencontainers.image.source=https://example.com/repo", "--annotation", "manifest:team=web", "-o", `type=oci,dest=${oci}`);
    const index = JSON.parse(readFileSync(join(oci, "index.json"), "utf8"));
    const manifest = JSON.parse(readFileSync(join(oci, "blobs/sha256", index.manifests[0].digest.slice(7)), "utf8"));
    expect(manifest.annotations).toEqual({ "org.opencontainers.image.source": "https://example.com/repo", team: "web" });
    const inspected = JSON.parse(Bun.spawnSync(["skopeo", "inspect", `oci:${oci}`]).stdout.toString());
    expect(inspected.Digest).toBe(index.manifests[0].digest);
    expect(result.stderr).toContain(`output oci ${oci} manifest ${index.manifests[0].digest}\n`);
    const refused = build(dir, "--annotation", "index:a=b");
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toContain("--annotation index: a build of one platform makes no image index to annotate");
  });
});

describe("image import of MemoBuild's own output", () => {
  test("finds the name it wrote; a layout named only by a tag asks for one", () => {
    const dir = writeProject(join(work, "roundtrip"), { Dockerfile: "FROM memobuild/busybox\nRUN echo x > /x\n" });
    const oci = join(work, "roundtrip-oci");
    mustBuild(dir, "-t", "team/app:2", "-t", "app:3", "-o", `type=oci,dest=${oci}`);
    const other = join(work, "other-machine");
    const imported = runMemobuild(["image", "import", `oci:${oci}:app:3`, "--cache-dir", other]);
    expect(imported.stderr).toBe("");
    expect(imported.stdout).toMatch(/^app:3 sha256:[0-9a-f]{64}\n$/);
    const archive = join(work, "roundtrip.tar");
    mustBuild(dir, "-t", "solo:1", "-o", `type=oci-archive,dest=${archive}`);
    const fromArchive = runMemobuild(["image", "import", `oci-archive:${archive}`, "--cache-dir", other]);
    expect(fromArchive.exitCode).toBe(0);
    expect(runMemobuild(["image", "ls", "--cache-dir", other]).stdout).toMatch(/^solo:1 /m);
    const tagOnly = join(work, "tag-only");
    expect(Bun.spawnSync(["skopeo", "copy", "-q", `oci:${oci}:app:3`, `oci:${tagOnly}:latest`]).exitCode).toBe(0);
    const unnamed = runMemobuild(["image", "import", `oci:${tagOnly}`, "--cache-dir", other]);
    expect(unnamed.exitCode).toBe(2);
    expect(unnamed.stderr).toContain('the image is named only by its tag "latest": give a name with --tag NAME');
  });
});

describe("--check", () => {
  test("lists each finding (rule, file, line) on stdout, builds nothing, and exits 1; a clean Dockerfile exits 0; a normal build shows them before its summary", () => {
    const dir = writeProject(join(work, "checked"), { Dockerfile: "FROM memobuild/busybox as Build\nCMD echo hi\n" });
    const checked = runMemobuild(["build", dir, "--check", "--cache-dir", cache]);
    expect(checked.exitCode).toBe(1);
    expect(checked.stdout).toBe(
      `${join(dir, "Dockerfile")}:1: FromAsCasing: 'as' and 'FROM' keywords' casing do not match\n` +
        `${join(dir, "Dockerfile")}:1: StageNameCasing: Stage name 'Build' should be lowercase\n` +
        `${join(dir, "Dockerfile")}:2: JSONArgsRecommended: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals\n` +
        "Check complete, 3 warning(s) found.\n",
    );
    expect(checked.stderr).toContain("the build checks found 3 warning(s)");
    const built = build(dir);
    expect(built.exitCode).toBe(0);
    expect(built.stderr).toContain("3 warning(s) found (memobuild build --check lists them; # check=skip=RULE turns one off):\n - FromAsCasing:");
    writeFileSync(join(dir, "Dockerfile"), 'FROM memobuild/busybox AS build\nCMD ["echo", "hi"]\n');
    expect(runMemobuild(["build", dir, "--check", "--cache-dir", cache])).toMatchObject({ exitCode: 0, stdout: "Check complete, no warnings found.\n" });
    // # check=error=true makes a finding fail the build itself.
    writeFileSync(join(dir, "Dockerfile"), "# check=error=true\nFROM memobuild/busybox\nCMD echo hi\n");
    const failed = build(dir);
    expect(failed.exitCode).toBe(1);
    expect(failed.stderr).toContain("the build checks failed (# check=error=true):");
    expect(failed.stderr).toContain("JSONArgsRecommended");
  });
});
