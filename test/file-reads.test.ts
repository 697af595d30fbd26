/**
 * The class "a file read from a path a project or an image controls": every read of a host path
 * in src/ either goes through readRegularFile/readBounded (src/util/host-file.ts) or an image
 * root (src/rootfs/root.ts), or is listed below with why its path is MemoBuild's own or one the
 * user typed. And each reader of a project's files is given what a repository can commit in
 * their place: a link to /dev/zero, a FIFO, a link out of the project.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { parseSecret } from "../src/cli/build-flags.ts";
import { readDockerfile } from "../src/cli/inputs.ts";
import { loadContext } from "../src/context/context.ts";
import { gitInfo } from "../src/report/git.ts";
import { REPO_ROOT } from "./support/binary.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-file-reads-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Where a host file is read without the bounded reader, with why a project or an image cannot choose that path. */
const OWN_PATHS: { file: string; line: string; why: string }[] = [
  { file: "src/cli/context-source.ts", line: 'openSync(file, "r")', why: "what stdin held, copied (bounded) into a private directory this process made" },
  { file: "src/cli/context-source.ts", line: 'readFileSync(file, "utf8")', why: "a Dockerfile from stdin, copied into a private directory, at most MAX_DOCKERFILE_BYTES" },
  { file: "src/cli/commands/cache.ts", line: "readFileSync(`${base}.id`", why: "a cache mount's label in the store's mounts/ (shown as terminal text only)" },
  { file: "src/remote/mount-files.ts", line: "openSync(contentOf(file.blake3)", why: "a downloaded file in a store staging directory, checked against its BLAKE3 name" },
  { file: "src/remote/mount-sync.ts", line: "readFileSync(stateFile(path)", why: "a cache mount's sync state in the store's mounts/" },
  { file: "src/remote/mount-sync.ts", line: "Bun.file(`/proc/self/fd/${fd}`)", why: "a cache mount's file opened through a root that follows no link" },
  { file: "src/registry/build-cache.ts", line: 'openSync(file, "r")', why: "a store blob (a layer) copied into a --cache-to directory" },
  { file: "src/registry/build-cache.ts", line: "Bun.file(recordsFile).size", why: "the list of results this build wrote into a store staging directory" },
  { file: "src/cli/rebuild.ts", line: 'readFileSync(join(dir, "oci", "index.json")', why: "the layout the rebuild wrote into a private temporary directory" },
  { file: "src/attest/sign.ts", line: "return readFileSync(file);", why: "readKeyFile: the key file the user names with --sign-key or verify --key (never a project file's)" },
  { file: "src/attest/sources.ts", line: 'readFileSync(join(dir, "blob"))', why: "a blob downloaded into a private temporary directory, size-bounded by its descriptor" },
  { file: "src/worker/worker.ts", line: "readFileSync(metadata", why: "the metadata file the job's own build wrote into the job's staging directory" },
  { file: "src/worker/job.ts", line: 'readFileSync(manifestFile, "utf8")', why: "the context manifest, downloaded into the job's staging directory and checked against its BLAKE3 name" },
  { file: "src/worker/job.ts", line: 'openSync(file, "r")', why: "a downloaded blob in the job's staging directory, checked against its BLAKE3 name" },
  { file: "src/remote/jobs-client.ts", line: "Bun.file(file)", why: "store blobs and staging files uploaded (the context goes up as descriptors from a root that follows no link)" },
  { file: "src/remote/jobs-client.ts", line: "Bun.file(fd)", why: "a context file opened through a root that follows no link" },
  { file: "src/hash/sha256.ts", line: 'openSync(path, "r")', why: "store blobs and staged files (a layout's blobs come as a descriptor, bounded)" },
  { file: "src/hash/sha256.ts", line: "Bun.file(path).stream()", why: "store staging files" },
  { file: "src/hash/blake3.ts", line: 'openSync(path, "r")', why: "context files the walker found as regular files (lstat), below a context opened without links" },
  { file: "src/snapshot/pack.ts", line: "openSync(at(path), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)", why: "a snapshot's files: no link followed, FIFOs do not block" },
  { file: "src/snapshot/pack.ts", line: "createReadStream(tarPath)", why: "a layer tar in a store staging directory" },
  { file: "src/cache/store.ts", line: "readFileSync(this.blobPath(digest))", why: "a store blob" },
  { file: "src/cache/store.ts", line: "createReadStream(blob)", why: "a store blob" },
  { file: "src/cache/store.ts", line: 'readFileSync("/proc/self/mountinfo"', why: "procfs" },
  { file: "src/cache/store.ts", line: 'openSync(path, "r")', why: "a store blob being checked" },
  { file: "src/executor/copy.ts", line: 'openSync(source.host, "r")', why: "an ADD download in a store staging directory" },
  { file: "src/executor/network.ts", line: 'readFileSync("/etc/resolv.conf"', why: "the host's resolver configuration" },
  { file: "src/executor/network.ts", line: "Bun.file(child.stdio[3] as number)", why: "slirp4netns's ready pipe, a descriptor of ours" },
  { file: "src/executor/network.ts", line: "readFileSync(`/proc/${entry}/cmdline`", why: "procfs" },
  { file: "src/executor/archive.ts", line: "Bun.file(self)", why: "an ADD archive staged in the store" },
  { file: "src/executor/runtime.ts", line: 'readFileSync("/proc/self/status"', why: "procfs" },
  { file: "src/executor/runtime.ts", line: 'readFileSync("/proc/self/mountinfo"', why: "procfs" },
  { file: "src/sys/tar.ts", line: 'openSync(source, "r")', why: "archives the user names (image import, ADD staged in the store)" },
  { file: "src/image/docker-load.ts", line: "Bun.file(archive)", why: "a docker archive in a store staging directory" },
  { file: "src/image/export.ts", line: "createReadStream(store.blobPath", why: "a store blob" },
  { file: "src/image/export.ts", line: 'openSync(source, "r")', why: "a store blob" },
  { file: "src/image/export.ts", line: 'openSync(member.source, "r")', why: "a store blob" },
  { file: "src/image/export.ts", line: "readFileSync(store.blobPath", why: "a store blob" },
  { file: "src/cli/remote.ts", line: 'readFileSync(file, "utf8")', why: "TLS files: user settings only (a project file may not set them)" },
  { file: "src/registry/transfer.ts", line: "readFileSync(configFile)", why: "a pulled config in a store staging directory, bounded when fetched" },
  { file: "src/registry/client.ts", line: 'readFileSync(file, "utf8")', why: "the user's ~/.docker/config.json" },
  { file: "src/registry/client.ts", line: "Bun.file(file)", why: "a store blob being pushed" },
  { file: "src/remote/action.ts", line: 'readFileSync(file, "utf8")', why: "the signing key: user settings only" },
  { file: "src/remote/client.ts", line: "Bun.file(layerFile)", why: "a store blob being uploaded" },
  { file: "src/server/blobs.ts", line: "readFileSync(this.blobPath(hash))", why: "the server's own blob" },
  { file: "src/server/blobs.ts", line: "Bun.file(this.blobPath(hash))", why: "the server's own blob" },
  { file: "src/server/auth.ts", line: 'readFileSync(path, "utf8")', why: "the server's --token-file, named by whoever runs it" },
  { file: "src/server/server.ts", line: "Bun.file(options.tlsClientCa)", why: "serve's TLS flags" },
  { file: "src/server/server.ts", line: "Bun.file(options.tlsCert!)", why: "serve's TLS flags" },
  { file: "src/server/webhooks.ts", line: 'readFileSync(file, "utf8")', why: "serve's --webhook-secret-file" },
];

const READS = /\b(readFileSync|createReadStream|Bun\.file)\s*\(|\bopenSync\([^]*("r"|O_RDONLY)/;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith(".ts") && !entry.name.endsWith(".test.ts") ? [path] : [];
  });
}

describe("every host file MemoBuild reads", () => {
  test("is read by the bounded reader or an image root, or is a path of MemoBuild's own or the user's (listed with the reason)", () => {
    const unlisted: string[] = [];
    const used = new Set<number>();
    for (const path of sourceFiles(join(REPO_ROOT, "src"))) {
      const file = relative(REPO_ROOT, path);
      if (file === "src/util/host-file.ts" || file === "src/rootfs/root.ts") continue;
      readFileSync(path, "utf8").split("\n").forEach((text, i) => {
        if (!READS.test(text) || /^\s*(\*|\/\/)/.test(text)) return;
        const entry = OWN_PATHS.findIndex((own) => own.file === file && text.includes(own.line));
        if (entry < 0) unlisted.push(`${file}:${i + 1}: ${text.trim()}`);
        else used.add(entry);
      });
    }
    expect(unlisted).toEqual([]);
    expect(OWN_PATHS.filter((_, i) => !used.has(i)).map((own) => `${own.file}: ${own.line}`)).toEqual([]);
  });
});

function project(): string {
  const dir = mkdtempSync(join(work, "project-"));
  writeFileSync(join(dir, "secret"), "root:$6$hash:0:0\n");
  mkdirSync(join(dir, "ctx"));
  return dir;
}
const mkfifo = (path: string) => expect(Bun.spawnSync(["mkfifo", path]).exitCode).toBe(0);

describe("a project's Dockerfile and .dockerignore", () => {
  test("CONTEXT/Dockerfile must resolve inside the context; -f may name a link; neither may be a device or a FIFO", () => {
    const dir = project();
    const ctx = join(dir, "ctx");
    symlinkSync(join(dir, "secret"), join(ctx, "Dockerfile"));
    expect(() => readDockerfile(ctx, undefined)).toThrow(`cannot read Dockerfile ${ctx}/Dockerfile: it is a link out of the build context (to ${join(dir, "secret")}); name it with -f if that is meant`);
    expect(readDockerfile(ctx, join(ctx, "Dockerfile")).text).toBe("root:$6$hash:0:0\n"); // the user typed it
    rmSync(join(ctx, "Dockerfile"));
    symlinkSync("/dev/zero", join(ctx, "Dockerfile"));
    expect(() => readDockerfile(ctx, join(ctx, "Dockerfile"))).toThrow(`Dockerfile ${ctx}/Dockerfile is a character device, not a regular file: not reading it`);
    rmSync(join(ctx, "Dockerfile"));
    mkfifo(join(ctx, "Dockerfile"));
    expect(() => readDockerfile(ctx, undefined)).toThrow(`Dockerfile ${ctx}/Dockerfile is a FIFO, not a regular file`);
  });

  test(".dockerignore linked anywhere (to /dev/zero, or dangling) or a FIFO is refused, not read or skipped", async () => {
    for (const make of ["/dev/zero", "/nonexistent", "fifo"]) {
      const dir = project();
      const ctx = join(dir, "ctx");
      writeFileSync(join(ctx, "Dockerfile"), "FROM scratch\n");
      if (make === "fifo") mkfifo(join(ctx, ".dockerignore"));
      else symlinkSync(make, join(ctx, ".dockerignore"));
      const what = make === "fifo" ? "is a FIFO, not a regular file" : "is a symbolic link: not followed";
      await expect(loadContext({ contextDir: ctx })).rejects.toThrow(`.dockerignore ${what}`);
    }
  });
});

describe("--secret src=", () => {
  test("a device, a FIFO or more than the secrets' 64 MiB in-memory file system is refused at once, naming the secret", () => {
    const dir = project();
    expect(() => parseSecret("id=zero,src=/dev/zero")).toThrow("--secret id=zero: /dev/zero is a character device, not a regular file: not reading it");
    mkfifo(join(dir, "fifo"));
    expect(() => parseSecret(`id=pipe,src=${join(dir, "fifo")}`)).toThrow(`--secret id=pipe: ${join(dir, "fifo")} is a FIFO, not a regular file`);
    const big = join(dir, "big");
    writeFileSync(big, "");
    expect(Bun.spawnSync(["truncate", "-s", "70M", big]).exitCode).toBe(0);
    expect(() => parseSecret(`id=big,src=${big}`)).toThrow(`--secret id=big: ${big} is larger than 64.0 MiB, the in-memory file system a RUN's secrets live in`);
    writeFileSync(join(dir, "token"), "s3cr3t");
    symlinkSync(join(dir, "token"), join(dir, "link"));
    expect(parseSecret(`id=ok,src=${join(dir, "link")}`)).toEqual(["ok", Buffer.from("s3cr3t")]); // the user named it
  });
});

describe("a project's .git (read for the build hub without running git)", () => {
  /** A repository made by git, with a commit; returns its directory. */
  function repository(): string {
    const dir = join(project(), "ctx");
    const git = (...args: string[]) => expect(Bun.spawnSync(["git", "-C", dir, "-c", "user.email=t@e", "-c", "user.name=t", ...args], { env: { ...process.env, GIT_CONFIG_GLOBAL: "/dev/null" } }).exitCode).toBe(0);
    git("init", "-q", "-b", "main");
    writeFileSync(join(dir, "Dockerfile"), "FROM scratch\n");
    git("add", ".");
    git("commit", "-qm", "one");
    return dir;
  }

  test("HEAD, config, a ref or the index linked out of .git, to /dev/zero or a FIFO are not read", () => {
    const dir = repository();
    const outside = join(dir, "..", "outside");
    mkdirSync(outside);
    writeFileSync(join(outside, "HEAD"), "ref: refs/heads/stolen\n");
    writeFileSync(join(outside, "config"), '[remote "origin"]\n\turl = https://attacker.example/leak.git\n');
    writeFileSync(join(outside, "main"), `${"e".repeat(40)}\n`);
    for (const [name, target] of [["HEAD", join(outside, "HEAD")], ["config", join(outside, "config")], ["refs/heads/main", join(outside, "main")], ["index", "/dev/zero"]]) {
      rmSync(join(dir, ".git", name));
      symlinkSync(target, join(dir, ".git", name));
    }
    expect(gitInfo(dir)).toEqual({});
    rmSync(join(dir, ".git", "HEAD"));
    mkfifo(join(dir, ".git", "HEAD"));
    expect(gitInfo(dir)).toEqual({}); // returns: a FIFO is not waited on
    // .git itself a link to another repository: not followed
    const other = repository();
    rmSync(join(dir, ".git"), { recursive: true });
    symlinkSync(join(other, ".git"), join(dir, ".git"));
    expect(gitInfo(dir)).toBeUndefined();
  });

  test("a gitdir file naming a git directory that does not name this checkout back is not used", () => {
    const dir = repository();
    const other = repository();
    rmSync(join(dir, ".git"), { recursive: true });
    writeFileSync(join(dir, ".git"), `gitdir: ${join(other, ".git")}\n`);
    expect(gitInfo(dir)).toBeUndefined();
  });

  test("a config or packed-refs past its bound is not read (the rest still is)", () => {
    const dir = repository();
    const config = join(dir, ".git", "config");
    writeFileSync(config, `[remote "origin"]\n\turl = https://example.com/acme/big.git\n`);
    expect(Bun.spawnSync(["truncate", "-s", "2M", config]).exitCode).toBe(0);
    expect(gitInfo(dir)).toMatchObject({ branch: "main", commit: expect.stringMatching(/^[0-9a-f]{40}$/) });
    expect(gitInfo(dir)!.repository).toBeUndefined();
    rmSync(join(dir, ".git", "refs", "heads", "main"));
    const packed = join(dir, ".git", "packed-refs");
    writeFileSync(packed, `${"d".repeat(40)} refs/heads/main\n`);
    expect(gitInfo(dir)!.commit).toBe("d".repeat(40));
    expect(Bun.spawnSync(["truncate", "-s", "17M", packed]).exitCode).toBe(0);
    expect(gitInfo(dir)!.commit).toBeUndefined();
  });

  test("a huge index leaves dirty unknown; an index naming paths out of the checkout is not followed", () => {
    const dir = repository();
    const index = join(dir, ".git", "index");
    expect(Bun.spawnSync(["truncate", "-s", "70M", index]).exitCode).toBe(0);
    const info = gitInfo(dir)!;
    expect(info.commit).toMatch(/^[0-9a-f]{40}$/);
    expect(info.dirty).toBeUndefined();
    // An index whose one entry is ../secret (git never writes one): not a path to stat.
    const entry = Buffer.alloc(62 + 16);
    entry.writeUInt32BE(0o100644, 24);
    entry.writeUInt16BE("../secret".length, 60);
    entry.write("../secret", 62);
    writeFileSync(index, Buffer.concat([Buffer.from("DIRC\0\0\0\x02\0\0\0\x01", "latin1"), entry]));
    expect(gitInfo(dir)!.dirty).toBeUndefined();
  });
});
