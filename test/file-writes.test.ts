/**
 * The class "a file created next to a path someone else chose": every place in src/ that
 * creates, opens for writing or renames a file is either writeFileAtomic (src/util/host-file.ts)
 * or listed below with why its path is MemoBuild's own. And each writer that takes a user-named
 * path is run with symlinks planted at the names an attacker would guess (the old
 * `D.<pid>.partial` and `FILE.<pid>.tmp`, for a range of pids) and at the destination itself:
 * the files they point at stay untouched.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { LocalStore } from "../src/cache/store.ts";
import { exportDockerArchive, exportOciArchive, exportOciLayout } from "../src/image/export.ts";
import { exportFilesystemTar } from "../src/image/filesystem-export.ts";
import { storeImage } from "../src/image/layout.ts";
import { extendDockerignore, mergeUserConfig, writeProjectConfig } from "../src/init/write.ts";
import { REPO_ROOT, runMemobuild } from "./support/binary.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-file-writes-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Where a file is created or renamed, with why that path cannot be one a user or a repository named. */
const OWN_PATHS: { file: string; line: string; why: string }[] = [
  { file: "src/cli/context-source.ts", line: 'openSync(file, "wx", 0o600)', why: "stdin into a private directory this process made (mkdtemp), O_EXCL" },
  { file: "src/executor/cache-mount.ts", line: "writeFileSync(file, `${mount.id}", why: "a cache mount's label beside its directory in the store's mounts/" },
  { file: "src/remote/mount-sync.ts", line: "writeFileSync(temporary, JSON.stringify(state))", why: "a cache mount's sync state beside its directory in the store's mounts/" },
  { file: "src/remote/mount-sync.ts", line: "renameSync(temporary, stateFile(path))", why: "a cache mount's sync state beside its directory in the store's mounts/" },
  { file: "src/remote/mount-sync.ts", line: 'openSync(file, "w", 0o600)', why: "a downloaded file in a store staging directory" },
  { file: "src/registry/build-cache.ts", line: "writeFileSync(file, readRegularFile(blobPath(blob.digest)", why: "a build cache's blob into a store staging file (--cache-from)" },
  { file: "src/registry/build-cache.ts", line: "writeFileSync(recordsFile, JSON.stringify({ version: 1, results }))", why: "the list of results in a store staging directory (--cache-to)" },
  { file: "src/worker/worker.ts", line: "await Bun.write(dockerfile, definition.dockerfile.text)", why: "a job's Dockerfile in the job's staging directory of the worker's store" },
  { file: "src/worker/job.ts", line: 'writeFileSync(join(dir, "oci-layout")', why: "a base image laid out in the job's staging directory" },
  { file: "src/worker/job.ts", line: 'writeFileSync(join(dir, "index.json")', why: "a base image laid out in the job's staging directory" },
  { file: "src/builder/remote-build.ts", line: "writeFileSync(file, JSON.stringify(value))", why: "the context manifest in a store staging directory" },
  { file: "src/hash/sha256.ts", line: 'openSync(copyTo, "wx"', why: "copies into a store staging directory; O_EXCL never follows a link" },
  { file: "src/snapshot/pack.ts", line: 'openSync(tarPath, "w"', why: "a layer tar in a store staging directory (exports pass a descriptor from writeFileAtomic)" },
  { file: "src/snapshot/pack.ts", line: "createWriteStream(blobPath", why: "a gzip blob in a store staging directory" },
  { file: "src/cache/store.ts", line: "renameSync(file, this.blobPath(digest))", why: "from the store's tmp/ into blobs/" },
  { file: "src/cache/store.ts", line: 'openSync(file, "w"', why: "a blob in the store's tmp/ under a random name" },
  { file: "src/cache/store.ts", line: 'const handle = await open(file, "r")', why: "read-only: a layer tar staged in the store, fsynced before it is renamed into blobs/" },
  { file: "src/cache/store.ts", line: "renameSync(this.snapshotPath(diffId), doomed)", why: "a snapshot into the store's tmp/" },
  { file: "src/cache/store.ts", line: "renameSync(directory, target)", why: "a staged snapshot into snapshots/" },
  { file: "src/cache/store.ts", line: "createWriteStream(tarPath)", why: "a layer tar in a store staging directory" },
  { file: "src/cache/store.ts", line: 'openSync(join(dir, "gc.lock")', why: "the store's lock, O_NOFOLLOW" },
  { file: "src/executor/run.ts", line: "writeFileSync(file, content", why: "network files in the RUN's private tmpfs" },
  { file: "src/executor/network.ts", line: 'writeFileSync(path, "", { mode: 0o600, flag: "wx" })', why: "a network namespace's mount point, new (O_EXCL) in root's /run/memobuild-net" },
  { file: "src/executor/run.ts", line: "writeFileSync(file, value, { mode })", why: "secret files in the RUN's private tmpfs" },
  { file: "src/executor/run.ts", line: "renameSync(upper, layer)", why: "inside the step's staging directory" },
  { file: "src/executor/run.ts", line: 'writeFileSync(point, "")', why: "a bind point in the step's staging directory" },
  { file: "src/executor/cache-mount.ts", line: "openSync(`${path}.lock`", why: "a cache mount's lock in the store, O_NOFOLLOW" },
  { file: "src/executor/cache-mount.ts", line: "renameSync(staging, path)", why: "a seeded cache directory, from beside it in the store's mounts/" },
  { file: "src/executor/download.ts", line: 'openSync(file, "w"', why: "an ADD download in a store staging directory" },
  { file: "src/executor/runtime.ts", line: 'writeFileSync(join(bundleDir, "config.json")', why: "the runtime bundle in the RUN's private tmpfs" },
  { file: "src/image/export.ts", line: "createWriteStream(file)", why: "a decompressed layer in a store staging directory" },
  { file: "src/image/layout.ts", line: 'openSync(target, "wx"', why: "an archive member in a store staging directory; O_EXCL" },
  { file: "src/cli/commands/key.ts", line: 'writeFileSync(flags.out, pem, { mode: 0o600, flag: "wx" })', why: "a private key is never overwritten: O_CREAT|O_EXCL, which refuses a link at the name" },
  { file: "src/registry/client.ts", line: 'openSync(file, "w"', why: "a pulled blob in a store staging directory" },
  { file: "src/remote/client.ts", line: 'openSync(file, "w"', why: "a fetched blob in a store staging directory" },
  { file: "src/server/blobs.ts", line: 'await open(temp, "w"', why: "an uploaded blob in the server's data directory tmp/" },
  { file: "src/server/blobs.ts", line: "await rename(temp, this.blobPath(hash))", why: "from the data directory's tmp/ into its blobs/" },
  { file: "src/snapshot/overlay.ts", line: "symlinkSync(lower,", why: "the lower-directory links beside a mount point in the store" },
  { file: "src/cli/main.ts", line: "Bun.write(Bun.stdout,", why: "the version, to standard output (descriptor 1): no path at all" },
  { file: "src/executor/emulation.ts", line: 'writeFileSync(join(paths.binfmt, "register")', why: "binfmt_misc's register file: a kernel interface in its own file system (mounted there by MemoBuild when missing), not a file anyone names" },
  { file: "src/attest/packages.ts", line: 'writeFileSync(join(dir, "rpmdb.sqlite"), database)', why: "an image's RPM database, copied into a directory mkdtemp just made for it" },
  { file: "src/attest/packages.ts", line: 'writeFileSync(join(dir, "rpmdb.sqlite-wal"), wal)', why: "its write-ahead log, beside it in that directory" },
];

const WRITES = /\b(writeFileSync|appendFileSync|copyFileSync|renameSync|createWriteStream|symlinkSync|linkSync|Bun\.write)\s*\(|\bawait (rename|open)\(/;
/** An open that may create or write (read-only opens say "r" or O_RDONLY on the same line). */
const writes = (text: string) => WRITES.test(text) || (/\bopenSync\(/.test(text) && !/"r"|O_RDONLY/.test(text));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith(".ts") && !entry.name.endsWith(".test.ts") ? [path] : [];
  });
}

describe("every file MemoBuild creates", () => {
  test("is made by writeFileAtomic, or is at a path of MemoBuild's own (listed with the reason)", () => {
    const unlisted: string[] = [];
    const used = new Set<number>();
    for (const path of sourceFiles(join(REPO_ROOT, "src"))) {
      const file = relative(REPO_ROOT, path);
      // host-file.ts is the helper itself; root.ts writes only inside an image root (its own rule, DESIGN.md).
      if (file === "src/util/host-file.ts" || file === "src/rootfs/root.ts") continue;
      readFileSync(path, "utf8").split("\n").forEach((text, i) => {
        if (!writes(text) || /^\s*(\*|\/\/)/.test(text)) return;
        const entry = OWN_PATHS.findIndex((own) => own.file === file && text.includes(own.line));
        if (entry < 0) unlisted.push(`${file}:${i + 1}: ${text.trim()}`);
        else used.add(entry);
      });
    }
    expect(unlisted).toEqual([]);
    // A listed place that is gone is removed from the list, so the list stays the truth.
    expect(OWN_PATHS.filter((_, i) => !used.has(i)).map((own) => `${own.file}: ${own.line}`)).toEqual([]);
  });
});

/** Links at `NAME.<pid>.<suffix>` for pids around ours (and ours), all to `victim`. */
function plantPidLinks(path: string, suffix: string, victim: string) {
  for (let pid = Math.max(1, process.pid - 64); pid <= process.pid + 64; pid++) symlinkSync(victim, `${path}.${pid}.${suffix}`);
}

function victimFile(dir: string, name = "victim"): { path: string; unchanged: () => void } {
  const path = join(dir, name);
  writeFileSync(path, "precious\n", { mode: 0o640 });
  return {
    path,
    unchanged: () => {
      expect(readFileSync(path, "utf8")).toBe("precious\n");
      expect(statSync(path).mode & 0o777).toBe(0o640);
    },
  };
}

describe("links planted where MemoBuild writes are never followed", () => {
  test("init: memobuild.json, its schema, .dockerignore and the user's config", () => {
    const dir = mkdtempSync(join(work, "init-"));
    const victim = victimFile(work, "init-victim");
    for (const name of ["memobuild.json", ".memobuild.schema.json", ".dockerignore"]) plantPidLinks(join(dir, name), "tmp", victim.path);
    const userFile = join(dir, "user", "config.json");
    mkdirSync(join(dir, "user"));
    plantPidLinks(userFile, "tmp", victim.path);
    writeProjectConfig(dir, { tags: ["app:dev"] });
    extendDockerignore(dir, ["node_modules"]);
    mergeUserConfig(userFile, { token: "t" });
    victim.unchanged();
    expect(JSON.parse(readFileSync(join(dir, "memobuild.json"), "utf8")).tags).toEqual(["app:dev"]);
    expect(statSync(userFile).mode & 0o777).toBe(0o600);
  });

  test("-o type=tar, type=oci, oci-archive and docker-archive: at the temporary names and at the destination", async () => {
    const dir = mkdtempSync(join(work, "export-"));
    const store = LocalStore.open(join(dir, "cache"));
    try {
      const image = storeImage(store, { architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] }, config: {} } as never, []);
      const victim = victimFile(dir);
      const tar = join(dir, "fs.tar");
      plantPidLinks(tar, "partial", victim.path);
      symlinkSync(victim.path, tar);
      await exportFilesystemTar(store, image, tar);
      expect(lstatSync(tar).isFile()).toBe(true);

      const layout = join(dir, "layout");
      mkdirSync(join(layout, "blobs/sha256"), { recursive: true });
      for (const name of ["index.json", "oci-layout", `blobs/sha256/${image.manifest.config.digest.slice(7)}`]) symlinkSync(victim.path, join(layout, name));
      await exportOciLayout(store, image, layout, ["app:1"]);
      expect(JSON.parse(readFileSync(join(layout, "index.json"), "utf8")).manifests[0].annotations["org.opencontainers.image.ref.name"]).toBe("app:1");

      const linked = join(dir, "linked-layout");
      mkdirSync(linked);
      mkdirSync(join(dir, "elsewhere"));
      symlinkSync(join(dir, "elsewhere"), join(linked, "blobs"));
      await expect(exportOciLayout(store, image, linked, [])).rejects.toThrow(`--output type=oci,dest=${linked}: blobs is not a directory (a symbolic link is not followed)`);
      expect(readdirSync(join(dir, "elsewhere"))).toEqual([]);

      for (const [name, write] of [["oci.tar", exportOciArchive], ["docker.tar", exportDockerArchive]] as const) {
        symlinkSync(victim.path, join(dir, name));
        await write(store, image, join(dir, name), []);
        expect(lstatSync(join(dir, name)).isFile()).toBe(true);
      }
      victim.unchanged();
    } finally {
      store.close();
    }
  });

  test("key generate: FILE.pub", () => {
    const dir = mkdtempSync(join(work, "key-"));
    const victim = victimFile(dir);
    symlinkSync(victim.path, join(dir, "k.pub"));
    const result = runMemobuild(["key", "generate", "--out", join(dir, "k")]);
    expect(result.exitCode).toBe(0);
    victim.unchanged();
    expect(readFileSync(join(dir, "k.pub"), "utf8")).toBe(result.stdout);
  });
});
