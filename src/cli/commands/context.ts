import { Command } from "commander";
import { formatBytes } from "../../util/sizes.ts";
import { statSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { resolveCacheDir, statCacheFile } from "../../config/cache-dir.ts";
import { loadContext, ignoreFileFor, readIgnoreFile, type BuildContext, type ContextEntry } from "../../context/context.ts";
import { IgnoreMatcher, parseIgnoreFile } from "../../context/dockerignore.ts";
import { displayPath, quotePath } from "../../context/paths.ts";
import { UsageError } from "../errors.ts";
import { collect } from "../collect.ts";

interface CommonOptions {
  file?: string;
  cacheDir?: string;
}

/** The Dockerfile whose `<name>.dockerignore` may apply: -f FILE, else CONTEXT/Dockerfile. */
function dockerfileFor(context: string, file?: string): string {
  return resolve(file ?? join(context, "Dockerfile"));
}

async function load(context: string, options: CommonOptions): Promise<BuildContext> {
  const contextDir = resolve(context);
  checkContextArgument(context);
  const ctx = await loadContext({
    contextDir,
    dockerfile: dockerfileFor(context, options.file),
    statCacheFile: statCacheFile(resolveCacheDir(options.cacheDir), contextDir),
  });
  for (const warning of ctx.warnings) process.stderr.write(`warning: ${warning}\n`);
  return ctx;
}

function describeEntry(entry: ContextEntry): string {
  if (entry.type === "dir") return `${quotePath(entry.path)}/`;
  if (entry.type === "symlink") return `${quotePath(entry.path)} -> ${quotePath(entry.linkTarget ?? "")}`;
  return quotePath(entry.path);
}


function parseOwner(value: string | undefined): { uid: number; gid: number } | undefined {
  if (value === undefined) return undefined;
  const match = /^(\d+)(?::(\d+))?$/.exec(value);
  if (!match) throw new UsageError(`invalid --chown "${value}": use UID[:GID] (numbers)`);
  return { uid: Number(match[1]), gid: Number(match[2] ?? match[1]) };
}

export function registerContext(program: Command) {
  const context = program
    .command("context")
    .summary("show what a build would send and the context's digest")
    .description(
      "Inspect the build context: which files a build sees after .dockerignore (or <Dockerfile>.dockerignore " +
        "beside the Dockerfile), why a path is or is not included, and BLAKE3 content digests.",
    );

  context
    .command("ls")
    .summary("list the files a build would see")
    .argument("[context]", "build context directory", ".")
    .option("-f, --file <file>", "Dockerfile (its <name>.dockerignore beside it wins over .dockerignore)")
    .option("-l, --long", "show type, mode, size and content digest")
    .option("--excluded", "list what .dockerignore excludes instead, with the pattern that decided it")
    .option("--why <path>", "explain why PATH is included or excluded (repeatable; need not exist)", collect)
    .option("--json", "print JSON")
    .option("--cache-dir <dir>", "cache directory (default: $MEMOBUILD_CACHE_DIR or ~/.cache/memobuild)")
    .action(async (contextArg: string, options: CommonOptions & { long?: boolean; excluded?: boolean; why: string[]; json?: boolean }) => {
      if (options.why.length > 0) return explainPaths(contextArg, options);
      const ctx = await load(contextArg, options);
      if (options.excluded) {
        const rows = ctx.excluded.map((e) => ({
          path: displayPath(e.path),
          type: e.type,
          pattern: e.decidedBy ? (e.decidedBy.exclusion ? "!" : "") + e.decidedBy.pattern : undefined,
          source: e.decidedBy?.source ? `${e.decidedBy.source.file}:${e.decidedBy.source.line}` : undefined,
        }));
        if (options.json) return void process.stdout.write(JSON.stringify(rows, null, 2) + "\n");
        for (const [i, e] of ctx.excluded.entries()) {
          const name = quotePath(e.path) + (e.type === "dir" ? "/" : "");
          process.stdout.write(`${name}  excluded by ${rows[i].source} (${rows[i].pattern})\n`);
        }
        return;
      }
      if (options.json) {
        const rows = ctx.entries.map((e) => ({
          path: e.name,
          type: e.type,
          mode: "0" + e.mode.toString(8),
          size: e.size,
          ...(e.linkTarget !== undefined ? { target: displayPath(e.linkTarget) } : {}),
          ...(e.contentDigest ? { digest: Buffer.from(e.contentDigest).toString("hex") } : {}),
        }));
        return void process.stdout.write(JSON.stringify(rows, null, 2) + "\n");
      }
      const lines = ctx.entries.map((e) => {
        if (!options.long) return describeEntry(e);
        const digest = e.contentDigest ? Buffer.from(e.contentDigest).toString("hex").slice(0, 16) : "-".repeat(16);
        return `${e.type.padEnd(7)} ${("0" + e.mode.toString(8)).padStart(5)} ${String(e.size).padStart(10)}  ${digest}  ${describeEntry(e)}`;
      });
      process.stdout.write(lines.join("\n") + (lines.length ? "\n" : ""));
    });

  context
    .command("digest")
    .summary("print the BLAKE3 digest of the context, or of what some COPY sources select")
    .argument("[context]", "build context directory", ".")
    .argument("[sources...]", "COPY sources (paths or wildcards, relative to the context); default: the whole context")
    .option("-f, --file <file>", "Dockerfile (its <name>.dockerignore beside it wins over .dockerignore)")
    .option("--exclude <pattern>", "exclude pattern, as COPY --exclude (repeatable)", collect)
    .option("--chown <uid:gid>", "digest the files as owned by UID:GID (as COPY --chown would land them)")
    .option("--cache-dir <dir>", "cache directory (default: $MEMOBUILD_CACHE_DIR or ~/.cache/memobuild)")
    .action(async (contextArg: string, sources: string[], options: CommonOptions & { exclude: string[]; chown?: string }) => {
      const owner = parseOwner(options.chown);
      const started = performance.now();
      const ctx = await load(contextArg, options);
      const selection = sources.length || options.exclude.length || owner ? ctx.select(sources.length ? sources : ["."], { excludes: options.exclude, owner }) : undefined;
      const digest = selection ? selection.digest : ctx.digest();
      const ms = performance.now() - started;
      const files = (selection ? selection.entries : ctx.entries).filter((e) => e.type === "file");
      const bytes = files.reduce((sum, e) => sum + e.size, 0);
      process.stdout.write(`blake3:${digest}\n`);
      process.stderr.write(
        `${files.length} file(s), ${formatBytes(bytes)}; ${ctx.stats.hashed} hashed (${formatBytes(ctx.stats.bytesHashed)}), ` +
          `${ctx.stats.fromCache} unchanged since the last look; ${ms.toFixed(0)} ms\n`,
      );
    });
}

/** The first argument is the context directory; a file there is a likely mix-up, said plainly. */
function checkContextArgument(context: string) {
  const stat = statSync(resolve(context), { throwIfNoEntry: false });
  if (!stat) throw new UsageError(`build context ${context} does not exist`);
  if (!stat.isDirectory()) {
    throw new UsageError(`${context} is a file, and the first argument is the build context directory: \`memobuild context digest DIR [SOURCE...]\` (e.g. \`memobuild context digest . ${context}\` for that file's digest)`);
  }
}

/** `context ls --why PATH`: which .dockerignore line decides PATH, without walking anything. */
function explainPaths(contextArg: string, options: CommonOptions & { why: string[] }) {
  const contextDir = resolve(contextArg);
  checkContextArgument(contextArg);
  const ignoreFile = ignoreFileFor(contextDir, dockerfileFor(contextArg, options.file));
  const shown = ignoreFile ? (relative(process.cwd(), ignoreFile).startsWith("..") ? ignoreFile : relative(process.cwd(), ignoreFile)) : undefined;
  const patterns = ignoreFile ? parseIgnoreFile(readIgnoreFile(ignoreFile, shown!), shown) : [];
  const matcher = new IgnoreMatcher(patterns);
  for (const path of options.why) {
    const cleaned = path.replace(/^\.?\/+/, "").replace(/\/+$/, "");
    const { excluded, decidedBy } = matcher.match(cleaned);
    const where = decidedBy?.source ? `${decidedBy.source.file}:${decidedBy.source.line}` : "";
    const pattern = decidedBy ? (decidedBy.exclusion ? "!" : "") + decidedBy.pattern : "";
    let reason: string;
    if (!ignoreFile) reason = "included: there is no .dockerignore";
    else if (!decidedBy) reason = `included: no pattern in ${shown} matches it`;
    else if (excluded) reason = `excluded by ${where} (${pattern})`;
    else reason = `included: re-included by ${where} (${pattern})`;
    process.stdout.write(`${cleaned}: ${reason}\n`);
  }
}
