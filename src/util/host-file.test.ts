import { afterAll, describe, expect, test } from "bun:test";
import { lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HostFileError, readRegularFile, temporaryName, writeFileAtomic } from "./host-file.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-host-file-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let n = 0;
const dir = () => mkdtempSync(join(work, `case${++n}-`));

describe("writeFileAtomic", () => {
  test("a link at the destination is replaced, never written through; the mode is exact whatever the umask", () => {
    const d = dir();
    const victim = join(d, "victim");
    writeFileSync(victim, "precious", { mode: 0o644 });
    symlinkSync(victim, join(d, "out"));
    const umask = process.umask(0o077);
    try {
      writeFileAtomic(join(d, "out"), "new", 0o644);
    } finally {
      process.umask(umask);
    }
    expect(readFileSync(victim, "utf8")).toBe("precious");
    expect(lstatSync(join(d, "out")).isFile()).toBe(true);
    expect(statSync(join(d, "out")).mode & 0o777).toBe(0o644);
    expect(readFileSync(join(d, "out"), "utf8")).toBe("new");
    expect(readdirSync(d).sort()).toEqual(["out", "victim"]); // no temporary file left
  });

  test("a writer that fails leaves the old file and no temporary file", () => {
    const d = dir();
    writeFileSync(join(d, "out"), "old");
    expect(() =>
      writeFileAtomic(join(d, "out"), (fd) => {
        writeFileSync(fd, "half");
        throw new Error("disk on fire");
      }),
    ).toThrow("disk on fire");
    expect(readFileSync(join(d, "out"), "utf8")).toBe("old");
    expect(readdirSync(d)).toEqual(["out"]);
  });

  test("a missing directory is a clear error", () => {
    const d = dir();
    expect(() => writeFileAtomic(join(d, "no/such/out"), "x")).toThrow(new HostFileError(`cannot write ${join(d, "no/such/out")}: ${join(d, "no/such")} does not exist`));
  });

  test("temporary names are hidden, random and fit in a name even for the longest destination", () => {
    const a = temporaryName("image.tar");
    expect(a).toMatch(/^\.image\.tar\.[0-9a-f]{16}\.tmp$/);
    expect(temporaryName("image.tar")).not.toBe(a);
    expect(a).not.toContain(String(process.pid));
    const long = "é".repeat(127); // 254 bytes
    expect(Buffer.byteLength(temporaryName(long))).toBeLessThanOrEqual(255);
    const d = dir();
    writeFileAtomic(join(d, long), "x");
    expect(readFileSync(join(d, long), "utf8")).toBe("x");
  });
});

describe("readRegularFile", () => {
  test("a link is refused unless following is asked for; a device, a FIFO and a directory are refused without reading or waiting", () => {
    const d = dir();
    symlinkSync("/dev/zero", join(d, "zero"));
    expect(() => readRegularFile(join(d, "zero"), { limit: 1024, what: "memobuild.json" })).toThrow(new HostFileError("memobuild.json is a symbolic link: not followed (name the file itself)"));
    expect(() => readRegularFile(join(d, "zero"), { limit: 1024, follow: true })).toThrow(`${join(d, "zero")} is a character device, not a regular file: not reading it`);
    expect(Bun.spawnSync(["mkfifo", join(d, "fifo")]).exitCode).toBe(0);
    expect(() => readRegularFile(join(d, "fifo"), { limit: 1024 })).toThrow("is a FIFO, not a regular file");
    expect(() => readRegularFile(d, { limit: 1024 })).toThrow("is a directory, not a regular file");
    expect(() => readRegularFile(join(d, "missing"), { limit: 1024 })).toThrow(`${join(d, "missing")} does not exist`);
  });

  test("the limit counts bytes read, not what stat says", () => {
    const d = dir();
    writeFileSync(join(d, "big"), Buffer.alloc(1025, 1));
    expect(() => readRegularFile(join(d, "big"), { limit: 1024 })).toThrow("is larger than 1024 bytes: not reading it");
    expect(readRegularFile(join(d, "big"), { limit: 1025 }).length).toBe(1025);
    // procfs says 0 bytes and has more: all of it is read, within the limit.
    expect(statSync("/proc/self/status").size).toBe(0);
    expect(readRegularFile("/proc/self/status", { limit: 1 << 20 }).toString()).toContain("Name:");
    expect(() => readRegularFile("/proc/self/status", { limit: 16 })).toThrow("is larger than 16 bytes");
  });
});
