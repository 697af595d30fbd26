/**
 * Contexts that are not a directory, as buildx takes them: `-` (stdin holds a Dockerfile, and the
 * context is empty, or a tar — plain, gzip, bzip2 or xz — that is the context) and git URLs
 * (`https://host/o/r.git#ref:subdir`, `git@host:o/r.git`, `git://…`, `ssh://…`), fetched with git
 * into a scratch directory at the commit the ref names. Each becomes a private directory,
 * removed when the command ends; a tar is unpacked with the same containment as a layer.
 */
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readSync, realpathSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { archiveKindOf, decompressArchive } from "../executor/archive.ts";
import { MAX_DOCKERFILE_BYTES } from "../frontend/parser.ts";
import { Root } from "../rootfs/root.ts";
import { extractInto } from "../snapshot/extract.ts";
import { isInside } from "../util/host-file.ts";
import { limit, limitHint } from "../util/limits.ts";
import { terminalText } from "../util/terminal-text.ts";
import { UsageError } from "./errors.ts";

export interface PreparedContext {
  dir: string;
  /** A Dockerfile that came on stdin instead of a context. */
  dockerfileText?: string;
  /** How to name the context in messages. */
  shown: string;
}

const GIT_URL = /^(?:git:\/\/|ssh:\/\/|git@[^:/\s]+:|https?:\/\/\S+?\.git(?:#|$)|https?:\/\/\S+#)/;

export const isGitUrl = (spec: string) => GIT_URL.test(spec);

/** A private scratch directory, gone when this process ends. */
function scratch(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `memobuild-${label}-`));
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** `-`: stdin, a Dockerfile or a tar of the context. */
export function stdinContext(): PreparedContext {
  const dir = scratch("stdin");
  const file = join(dir, "stdin");
  const size = copyStdin(file, limit("unpackedBytes"));
  const fd = openSync(file, "r");
  try {
    if (archiveKindOf(fd) === undefined) {
      if (size > MAX_DOCKERFILE_BYTES) throw new UsageError(`stdin holds ${size} bytes, which is no tar and too large for a Dockerfile`);
      return { dir: mkdtempSync(join(dir, "empty-")), dockerfileText: readFileSync(file, "utf8"), shown: "-" };
    }
    const context = mkdtempSync(join(dir, "context-"));
    const tar = decompressArchive(fd, dir);
    try {
      Root.with(context, (root) => extractInto(tar.path, root, { whiteouts: false }));
    } finally {
      tar.remove();
    }
    return { dir: context, shown: "-" };
  } finally {
    closeSync(fd);
    rmSync(file, { force: true });
  }
}

/** Stdin, a chunk at a time, to `write`; more than `max` bytes is an error (a pipe from /dev/zero ends). */
function readStdin(max: number, write: (chunk: Buffer) => void, tooLarge: () => string): number {
  const chunk = Buffer.allocUnsafe(1 << 20);
  let total = 0;
  for (;;) {
    let n: number;
    try {
      n = readSync(0, chunk, 0, chunk.length, null);
    } catch (error) {
      // A non-blocking stdin with nothing yet: wait a moment rather than spin a core.
      if ((error as NodeJS.ErrnoException).code === "EAGAIN") {
        Bun.sleepSync(5);
        continue;
      }
      if ((error as NodeJS.ErrnoException).code === "EOF") break;
      throw error;
    }
    if (n === 0) break;
    total += n;
    if (total > max) throw new UsageError(tooLarge());
    write(chunk.subarray(0, n));
  }
  return total;
}

/** Stdin into `file`, at most `max` bytes. */
function copyStdin(file: string, max: number): number {
  const out = openSync(file, "wx", 0o600);
  try {
    return readStdin(max, (chunk) => writeSync(out, chunk), () => `stdin holds more than ${max} bytes ${limitHint("unpackedBytes")}`);
  } finally {
    closeSync(out);
  }
}

/** A Dockerfile on stdin (`-f -`), bounded as a file's is. */
export function stdinDockerfile(): string {
  const chunks: Buffer[] = [];
  readStdin(MAX_DOCKERFILE_BYTES, (chunk) => chunks.push(Buffer.from(chunk)), () => `the Dockerfile on stdin is larger than ${MAX_DOCKERFILE_BYTES} bytes`);
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * A git URL: fetched (only the commit the ref names, no history) into a scratch directory, and
 * the subdirectory after `:` as the context. Git asks nothing (no prompt), runs no hook of the
 * repository, and fetches no submodule; `.git` is not part of the context, as in BuildKit.
 */
export function gitContext(spec: string, what = "git context"): PreparedContext & { commit: string } {
  const hash = spec.indexOf("#", spec.indexOf("://") + 3);
  const url = hash < 0 ? spec : spec.slice(0, hash);
  const [ref = "", subdir = ""] = hash < 0 ? [] : spec.slice(hash + 1).split(":", 2);
  const dir = scratch("git");
  const git = (...args: string[]) => {
    const result = Bun.spawnSync(["git", "-c", "core.hooksPath=/dev/null", "-c", "protocol.file.allow=never", ...args], {
      cwd: dir,
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, GIT_TERMINAL_PROMPT: "0", GIT_CONFIG_NOSYSTEM: "1" },
    });
    if (result.exitCode !== 0) throw new UsageError(`${what} ${spec}: git ${args[0]} failed: ${terminalText(result.stderr.toString().trim().split("\n").slice(-3).join(" "), { max: 500 })}`);
    return result.stdout.toString().trim();
  };
  git("init", "--quiet");
  git("fetch", "--quiet", "--depth", "1", "--no-tags", "--", url, ref || "HEAD");
  git("checkout", "--quiet", "--detach", "FETCH_HEAD");
  const commit = git("rev-parse", "HEAD");
  rmSync(join(dir, ".git"), { recursive: true, force: true });
  const context = resolve(dir, subdir || ".");
  if (!existsSync(context) || !isInside(realpathSync(context), realpathSync(dir))) throw new UsageError(`${what} ${spec}: ${subdir} is not a directory of the repository`);
  return { dir: context, shown: `${url}${ref ? `#${ref}` : ""}${subdir ? `:${subdir}` : ""}`, commit };
}
