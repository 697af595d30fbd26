import { afterAll, describe, expect, test } from "bun:test";
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gitInfo, parseConfig, projectName } from "./git.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-git-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function git(dir: string, ...args: string[]): string {
  const run = Bun.spawnSync(["git", "-C", dir, "-c", "user.email=t@example.com", "-c", "user.name=t", ...args], { env: { ...process.env, GIT_CONFIG_GLOBAL: "/dev/null" } });
  if (run.exitCode !== 0) throw new Error(`git ${args.join(" ")}: ${run.stderr.toString()}`);
  return run.stdout.toString().trim();
}

/** Ten seconds ago, a quarter into its second. */
const PAST = Math.floor(Date.now() / 1000) - 10 + 0.25;

/** A repository with a commit on branch `feature/x`, a remote with a credential, and a subdirectory. */
function repository(name: string): { dir: string; commit: string } {
  const dir = join(work, name);
  mkdirSync(join(dir, "app"), { recursive: true });
  git(dir, "init", "-q", "-b", "feature/x");
  writeFileSync(join(dir, "app", "main.c"), "int main() {}\n");
  writeFileSync(join(dir, "README"), "hello\n");
  symlinkSync("README", join(dir, "link"));
  git(dir, "add", ".");
  git(dir, "commit", "-qm", "first");
  git(dir, "remote", "add", "origin", "https://ci-bot:ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/acme/widget.git");
  // Older than now: the files are not "racily clean" (a rewrite within the index's second).
  for (const file of ["app/main.c", "README"]) utimesSync(join(dir, file), PAST, PAST);
  git(dir, "update-index", "--refresh");
  return { dir, commit: git(dir, "rev-parse", "HEAD") };
}

describe("gitInfo (without running git)", () => {
  test("branch, commit, remote without its credential, clean; from a subdirectory too; the project is the remote's name", () => {
    const { dir, commit } = repository("plain");
    const info = gitInfo(join(dir, "app"));
    expect(info).toEqual({ branch: "feature/x", commit, repository: "https://github.com/acme/widget.git", dirty: false });
    expect(projectName(join(dir, "app"), info)).toBe("widget");
    expect(projectName(join(dir, "app"), undefined)).toBe("app");
    expect(projectName("/x", { repository: "git@gitlab.example.com:group/sub/tool.git" })).toBe("tool");
  });

  test("dirty: a tracked file changed or removed; not a touched file with the same bytes, nor an untracked file", () => {
    const { dir } = repository("dirty");
    writeFileSync(join(dir, "untracked"), "new\n");
    utimesSync(join(dir, "README"), new Date(), new Date());
    expect(gitInfo(dir)?.dirty).toBe(false);
    appendFileSync(join(dir, "app", "main.c"), "// more\n");
    expect(gitInfo(dir)?.dirty).toBe(true);
    git(dir, "checkout", "-q", "app/main.c");
    rmSync(join(dir, "link"));
    expect(gitInfo(dir)?.dirty).toBe(true);
    git(dir, "checkout", "-q", "link");
    // index version 4 compresses its paths
    git(dir, "update-index", "--index-version", "4");
    expect(gitInfo(dir)?.dirty).toBe(false);
    writeFileSync(join(dir, "README"), "HELLO\n"); // same size
    expect(gitInfo(dir)?.dirty).toBe(true);
  });

  test("dirty: a same-size edit within the same second (told by its nanoseconds, when git recorded them)", () => {
    const { dir } = repository("same-second");
    writeFileSync(join(dir, "README"), "HELLO\n");
    utimesSync(join(dir, "README"), PAST + 0.25, PAST + 0.25);
    expect(gitInfo(dir)?.dirty).toBe(true);
  });

  test("files to hash past the budget leave dirty unknown (a build never waits long on it)", () => {
    const { dir } = repository("budget");
    writeFileSync(join(dir, "README"), "HELLO\n"); // same size, new mtime: only its content can tell
    expect(gitInfo(dir, { hashBudget: 3 })?.dirty).toBeUndefined();
    expect(gitInfo(dir)?.dirty).toBe(true);
  });

  test("packed refs, a detached HEAD, a linked worktree", () => {
    const { dir, commit } = repository("packed");
    git(dir, "pack-refs", "--all");
    expect(gitInfo(dir)).toMatchObject({ branch: "feature/x", commit });
    git(dir, "checkout", "-q", "--detach");
    const detached = gitInfo(dir)!;
    expect(detached.branch).toBeUndefined();
    expect(detached.commit).toBe(commit);
    git(dir, "checkout", "-q", "feature/x");
    const linked = join(work, "linked");
    git(dir, "worktree", "add", "-q", "-b", "other", linked);
    expect(gitInfo(linked)).toMatchObject({ branch: "other", commit, repository: "https://github.com/acme/widget.git", dirty: false });
    // Named through a link (as /tmp often is): the same checkout.
    symlinkSync(linked, join(work, "linked-by-link"));
    expect(gitInfo(join(work, "linked-by-link"))).toMatchObject({ branch: "other", commit });
  });

  test("outside a repository: nothing", () => {
    const dir = mkdtempSync(join(work, "none-"));
    expect(gitInfo(dir)).toBeUndefined();
  });

  test("config: sections with subsections, quotes, escapes and comments", () => {
    const config = parseConfig('[core]\n\tbare = false ; comment\n[remote "up\\"stream"]\n  URL = "https://h/x y.git" # c\n[branch "main"]\nremote=up"stream\n');
    expect(config.get("core")?.get("bare")).toBe("false");
    expect(config.get('remote.up"stream')?.get("url")).toBe("https://h/x y.git");
    expect(config.get("branch.main")?.get("remote")).toBe("upstream");
  });
});
