/** `memobuild context ls|digest` end to end, through the compiled binary. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { memobuildBinary, runMemobuild } from "./support/binary.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-ctx-e2e-"));
const context = join(work, "project");
const cacheDir = join(work, "cache");
afterAll(() => rmSync(work, { recursive: true, force: true }));

function write(relative: string, content = relative) {
  const full = join(context, relative);
  mkdirSync(join(full, ".."), { recursive: true });
  writeFileSync(full, content);
}
const memobuild = (...args: string[]) => runMemobuild([...args, "--cache-dir", cacheDir], { cwd: work });
const digestOf = (...args: string[]) => {
  const result = memobuild("context", "digest", "project", ...args);
  expect(result.exitCode).toBe(0);
  return result.stdout.trim();
};

beforeAll(() => {
  write("src/main.sh", "echo main\n");
  write("src/lib/util.sh", "echo util\n");
  write("node_modules/dep/index.js");
  write("logs/build.log");
  write("logs/keep.log");
  write("with space.txt");
  write(".dockerignore", "# dependencies\nnode_modules\nlogs\n!logs/keep.log\n");
  symlinkSync("src/main.sh", join(context, "entry"));
});

describe("memobuild context ls", () => {
  test("lists what a build would see", () => {
    const result = memobuild("context", "ls", "project");
    expect(result.stderr).toBe("");
    expect(result.stdout).toBe(
      [".dockerignore", "entry -> src/main.sh", "logs/", "logs/keep.log", "src/", "src/lib/", "src/lib/util.sh", "src/main.sh", '"with space.txt"', ""].join("\n"),
    );
  });

  test("--excluded says which line excluded what", () => {
    const result = memobuild("context", "ls", "project", "--excluded");
    expect(result.stdout).toBe(
      ["logs/build.log  excluded by project/.dockerignore:3 (logs)", "node_modules/  excluded by project/.dockerignore:2 (node_modules)", ""].join("\n"),
    );
  });

  test("--why explains paths, existing or not", () => {
    const result = memobuild("context", "ls", "project", "--why", "node_modules/x/y.js", "--why", "logs/keep.log", "--why", "src/new.sh");
    expect(result.stdout).toBe(
      [
        "node_modules/x/y.js: excluded by project/.dockerignore:2 (node_modules)",
        "logs/keep.log: included: re-included by project/.dockerignore:4 (!logs/keep.log)",
        "src/new.sh: included: no pattern in project/.dockerignore matches it",
        "",
      ].join("\n"),
    );
  });

  test("--json and --long", () => {
    const rows = JSON.parse(memobuild("context", "ls", "project", "--json").stdout);
    expect(rows.find((r: { path: string }) => r.path === "src/main.sh")).toEqual({
      path: "src/main.sh",
      type: "file",
      mode: "0644",
      size: 10,
      digest: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
    expect(memobuild("context", "ls", "project", "-l").stdout).toMatch(/^symlink +0777 +0 +-{16}  entry -> src\/main.sh$/m);
  });

  test("<Dockerfile>.dockerignore beside -f wins", () => {
    write("docker/app.Dockerfile", "FROM scratch\n");
    write("docker/app.Dockerfile.dockerignore", "src\n");
    const result = memobuild("context", "ls", "project", "-f", "project/docker/app.Dockerfile");
    const lines = result.stdout.split("\n");
    expect(lines).toContain("node_modules/dep/index.js");
    expect(lines).not.toContain("src/main.sh");
    rmSync(join(context, "docker"), { recursive: true });
  });
});

describe("memobuild context digest", () => {
  test("touch changes nothing; an edit, a rename or chmod does", () => {
    const first = digestOf();
    expect(first).toMatch(/^blake3:[0-9a-f]{64}$/);
    utimesSync(join(context, "src/main.sh"), new Date(2000, 0, 1), new Date(2000, 0, 1));
    expect(digestOf()).toBe(first);
    chmodSync(join(context, "src/main.sh"), 0o755);
    const chmodded = digestOf();
    expect(chmodded).not.toBe(first);
    chmodSync(join(context, "src/main.sh"), 0o644);
    expect(digestOf()).toBe(first);
    write("src/main.sh", "echo MAIN\n"); // same size
    expect(digestOf()).not.toBe(first);
    write("src/main.sh", "echo main\n");
    expect(digestOf()).toBe(first);
  });

  test("a selection's digest ignores files outside it", () => {
    const src = digestOf("src");
    write("with space.txt", "changed");
    expect(digestOf("src")).toBe(src);
    expect(digestOf("src", "--chown", "1000:1000")).not.toBe(src);
    expect(digestOf("src", "--exclude", "lib")).not.toBe(src);
  });

  test("the summary says how much was read", () => {
    Bun.sleepSync(150); // past the racy window of files earlier tests wrote, so the next look trusts its rows
    digestOf();
    const result = memobuild("context", "digest", "project");
    expect(result.stderr).toMatch(/^\d+ file\(s\), [\d.]+ \w+; 0 hashed \(0 B\), \d+ unchanged since the last look; \d+ ms\n$/);
  });

  test("errors: a missing source, a source outside, a bad pattern", () => {
    expect(memobuild("context", "digest", "project", "nope").stderr).toBe('memobuild: source "nope" not found in the build context\n');
    expect(memobuild("context", "digest", "project", "node_modules/dep").stderr).toBe(
      'memobuild: source "node_modules/dep" not found in the build context (.dockerignore excludes it)\n',
    );
    expect(memobuild("context", "digest", "project", "../etc").stderr).toBe('memobuild: source "../etc" is outside the build context\n');
    const bad = mkdtempSync(join(work, "bad-"));
    writeFileSync(join(bad, ".dockerignore"), "ok\n!\n");
    const result = runMemobuild(["context", "ls", bad, "--cache-dir", cacheDir]);
    expect(result.stderr).toBe(`memobuild: ${join(bad, ".dockerignore")}:2: illegal exclusion pattern: "!"\n`);
    expect(result.exitCode).toBe(1);
  });

  test("a file given where the context directory goes says what is expected", () => {
    const file = memobuild("context", "digest", "project/src/main.sh");
    expect(file.exitCode).toBe(2);
    expect(file.stderr).toBe("memobuild: project/src/main.sh is a file, and the first argument is the build context directory: `memobuild context digest DIR [SOURCE...]` (e.g. `memobuild context digest . project/src/main.sh` for that file's digest)\n");
    expect(memobuild("context", "ls", "nowhere").stderr).toBe("memobuild: build context nowhere does not exist\n");
  });

  test("an unreadable file is an error naming it", () => {
    // Root reads everything, so run as nobody over a context nobody owns but one file.
    const dir = mkdtempSync(join(work, "unreadable-"));
    writeFileSync(join(dir, "ok.txt"), "ok");
    writeFileSync(join(dir, "secret.txt"), "secret");
    chmodSync(dir, 0o755);
    chmodSync(join(dir, "secret.txt"), 0o600);
    const nobodyCache = mkdtempSync(join(tmpdir(), "memobuild-nobody-"));
    chownSync(nobodyCache, 65534, 65534);
    chmodSync(work, 0o755);
    const result = Bun.spawnSync(
      ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", memobuildBinary(), "context", "digest", dir, "--cache-dir", nobodyCache],
      { stdout: "pipe", stderr: "pipe" },
    );
    rmSync(nobodyCache, { recursive: true, force: true });
    expect(result.stderr.toString()).toBe("memobuild: cannot read secret.txt in the build context: permission denied\n");
    expect(result.exitCode).toBe(1);
  });
});
