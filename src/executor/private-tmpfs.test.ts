/** The private tmpfs that holds a RUN's secrets: mounted as it should be, and gone after the RUN or a crash. */
import { describe, expect, test } from "bun:test";
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { mount, umount } from "../sys/libc.ts";
import { PrivateTmpfs, removeAbandonedTmpfs } from "./private-tmpfs.ts";

const mountOf = (path: string) =>
  readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" "))
    .find((fields) => fields[4] === path);

describe("a RUN's private tmpfs", () => {
  test("is a tmpfs of its own (0700, nosuid, nodev, noexec, 64 MiB) under /run/memobuild, named by this process", () => {
    const tmpfs = PrivateTmpfs.create();
    try {
      expect(tmpfs.path).toMatch(new RegExp(`^/run/memobuild/${process.pid}-[0-9a-f]{12}$`));
      const fields = mountOf(tmpfs.path)!;
      expect(fields).toBeDefined();
      const options = fields[5]!.split(",");
      for (const flag of ["nosuid", "nodev", "noexec"]) expect(options).toContain(flag);
      const separator = fields.indexOf("-");
      expect(fields[separator + 1]).toBe("tmpfs");
      expect(fields[separator + 2]).toBe("tmpfs"); // the source findmnt shows
      expect(fields[separator + 3]).toContain("size=65536k");
      expect(fields[separator + 3]).toContain("mode=700");
      expect(statSync("/run/memobuild").mode & 0o777).toBe(0o700);
      writeFileSync(join(tmpfs.path, "secret"), "s3cr3t");
    } finally {
      tmpfs.remove();
    }
    expect(mountOf(tmpfs.path)).toBeUndefined();
    expect(existsSync(tmpfs.path)).toBe(false);
  });

  test("after a crash, the next command unmounts the tmpfs of dead processes and keeps the living's", () => {
    const dead = "/run/memobuild/999999999-deadbeef0000";
    const living = "/run/memobuild/1-aaaaaaaaaaaa"; // pid 1 is alive
    const foreign = "/run/memobuild/999999998-notours";
    const notPids = ["/run/memobuild/0-zero", "/run/memobuild/garbage"]; // no process owns these names
    for (const path of [dead, living, foreign, ...notPids]) mkdirSync(path, { recursive: true });
    mount("tmpfs", dead, "tmpfs", 0, "size=1m");
    writeFileSync(join(dead, "secret"), "left by a kill -9");
    writeFileSync(join(foreign, "file"), "not a mount point");
    const own = PrivateTmpfs.create();
    try {
      // kill(0, 0) answers for the process group: pid 0 must never count as a live owner.
      removeAbandonedTmpfs((pid) => pid === 1 || pid === 0);
      for (const path of notPids) expect(existsSync(path)).toBe(false);
      expect(mountOf(dead)).toBeUndefined();
      expect(existsSync(dead)).toBe(false);
      expect(existsSync(living)).toBe(true);
      expect(readFileSync(join(foreign, "file"), "utf8")).toBe("not a mount point"); // never emptied
      expect(mountOf(own.path)).toBeDefined(); // this process's own
    } finally {
      own.remove();
      Bun.spawnSync(["rm", "-rf", living, foreign]);
    }
  });

  test("is unmounted even while a process of the RUN still holds a file open in it", () => {
    const tmpfs = PrivateTmpfs.create();
    const fd = openSync(join(tmpfs.path, "secret"), "w");
    try {
      tmpfs.remove();
      expect(mountOf(tmpfs.path)).toBeUndefined();
      expect(existsSync(tmpfs.path)).toBe(false);
    } finally {
      closeSync(fd);
    }
  });

  test("a dead process's tmpfs is removed even while something still holds a file open in it", () => {
    const base = mkdtempSync(join(tmpdir(), "memobuild-tmpfs-"));
    const dead = join(base, "999999999-deadbeef0000");
    mkdirSync(dead);
    mount("tmpfs", dead, "tmpfs", 0, "size=1m");
    const fd = openSync(join(dead, "secret"), "w");
    try {
      removeAbandonedTmpfs(() => false, base);
      expect(mountOf(dead)).toBeUndefined();
      expect(readdirSync(base)).toEqual([]);
    } finally {
      closeSync(fd);
      umount(dead, true); // when the cleanup under test failed: leave no mount behind
      rmSync(base, { recursive: true, force: true });
    }
  });

  test("with no tmpfs directory yet (no build since boot), cleaning up is a no-op", () => {
    expect(() => removeAbandonedTmpfs(() => false, join(tmpdir(), "memobuild-no-such-dir", "memobuild"))).not.toThrow();
  });

  test("when the mount is refused, the directory made for it is removed and the error is the mount's", () => {
    // Root without CAP_SYS_ADMIN may make the directory but not mount: run create() so.
    const base = mkdtempSync(join(tmpdir(), "memobuild-tmpfs-"));
    try {
      const module = resolve(import.meta.dir, "private-tmpfs.ts");
      const script = `const { PrivateTmpfs } = await import(${JSON.stringify(module)}); try { PrivateTmpfs.create(${JSON.stringify(base)}); } catch (e) { console.log(e.message); }`;
      const child = Bun.spawnSync(["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin", process.execPath, "-e", script], { stderr: "pipe" });
      expect(child.stderr.toString()).toBe("");
      expect(child.stdout.toString()).toMatch(/mount.*(EPERM|not permitted)/i);
      expect(readdirSync(base)).toEqual([]);
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });
});
