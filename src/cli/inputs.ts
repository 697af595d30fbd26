/** Reading what `build`, `graph` and `explain` share: context, Dockerfile, build args. */
import { MAX_DOCKERFILE_BYTES } from "../frontend/parser.ts";
import { existsSync, realpathSync, statSync } from "node:fs";
import { HostFileError, isInside, kernelPath, readRegularFile } from "../util/host-file.ts";
import { isAbsolute, join, relative, resolve } from "node:path";
import { value, type Settings } from "../config/settings.ts";
import type { Command } from "commander";
import { UsageError } from "./errors.ts";
import { collect } from "./collect.ts";
import { gitContext, isGitUrl, stdinContext, stdinDockerfile } from "./context-source.ts";

export interface DockerfileInput {
  contextDir: string;
  /** The path as the user named it (or as derived from the context): used in messages. */
  displayPath: string;
  text: string;
}

/** The Dockerfile as a build takes it: its text, where it is (absolute, unless it came from stdin) and its context. */
export function dockerfileFacts(input: DockerfileInput) {
  return {
    contextDir: input.contextDir,
    dockerfileText: input.text,
    dockerfilePath: input.displayPath,
    dockerfileAbsolute: input.displayPath === "<stdin>" ? undefined : resolve(input.displayPath),
  };
}

/** The inputs `build`, `graph` and `explain` share: [context], -f, --target, --build-arg. */
export function dockerfileOptions(command: Command): Command {
  return command
    .argument("[context]", "build context directory (default: the config's context, else .)")
    .option("-f, --file <file>", "Dockerfile, relative to the working directory (default: CONTEXT/Dockerfile; - for stdin)")
    .option("--target <stage>", "the stage to build (default: the last)")
    .option("--build-arg <name=value>", "set a build-time variable (repeatable; NAME alone takes it from the environment)", collect);
}

/** The Dockerfile the settings name: -f (or the config's dockerfile), else CONTEXT/Dockerfile. */
export function readDockerfileFrom(settings: Settings): DockerfileInput {
  const context = value<string>(settings, "context");
  const file = value<string | undefined>(settings, "dockerfile");
  if (context === "-" || isGitUrl(context)) return readPreparedContext(context, file);
  const shown = (path: string) => (isAbsolute(path) && !relative(process.cwd(), path).startsWith("..") ? relative(process.cwd(), path) || "." : path);
  return readDockerfile(shown(context), file === undefined || file === "-" ? file : shown(file));
}


/**
 * `-f FILE` is relative to the working directory, as with docker build; `-f -` is stdin. A file
 * the user named may be a link (docker follows it); CONTEXT/Dockerfile, which only the
 * repository names, must resolve inside the context (a committed `Dockerfile -> /etc/shadow`
 * would print the file's first line in the parse error). Either must be a regular file, read up
 * to MAX_DOCKERFILE_BYTES (a link to /dev/zero or a FIFO is refused, not read forever).
 */
export function readDockerfile(context: string, file: string | undefined): DockerfileInput {
  const contextDir = resolve(context);
  if (!existsSync(contextDir) || !statSync(contextDir).isDirectory()) {
    throw new UsageError(`build context ${context} is not a directory`);
  }
  if (file === "-") return { contextDir, displayPath: "<stdin>", text: stdinDockerfile() };
  const displayPath = file ?? join(context, "Dockerfile");
  if (file === undefined) {
    const real = kernelPath(resolve(displayPath));
    if (!isInside(real, realpathSync(contextDir))) throw new UsageError(`cannot read Dockerfile ${displayPath}: it is a link out of the build context (to ${real}); name it with -f if that is meant`);
  }
  let text: string;
  try {
    text = readRegularFile(resolve(displayPath), { follow: true, limit: MAX_DOCKERFILE_BYTES, what: `Dockerfile ${displayPath}` }).toString("utf8");
  } catch (error) {
    if (!(error instanceof HostFileError)) throw new UsageError(`cannot read Dockerfile ${displayPath}: ${(error as Error).message}`);
    throw new UsageError(error.message.endsWith(" does not exist") ? `cannot read Dockerfile ${displayPath}: no such file` : error.message);
  }
  return { contextDir, displayPath, text };
}

/** `-` (stdin: a Dockerfile, or a tar of the context) and git URLs, made into a directory first. */
function readPreparedContext(context: string, file: string | undefined): DockerfileInput {
  if (context === "-" && file === "-") throw new UsageError("the context and the Dockerfile cannot both come from stdin (-)");
  const prepared = context === "-" ? stdinContext() : gitContext(context);
  if ("commit" in prepared) process.stderr.write(`memobuild: git context ${prepared.shown} at commit ${prepared.commit}\n`);
  if (prepared.dockerfileText !== undefined) {
    if (file !== undefined) throw new UsageError("stdin held a Dockerfile, so there is no context for -f to name a file in (send a tar of the context instead)");
    return { contextDir: prepared.dir, displayPath: "<stdin>", text: prepared.dockerfileText };
  }
  // -f names a file as the user sees it (from the working directory), else the context's own Dockerfile.
  return file === undefined ? { ...readDockerfile(prepared.dir, undefined), displayPath: `${prepared.shown}/Dockerfile` } : readDockerfile(prepared.dir, file);
}

/** `--build-arg K=V`; `--build-arg K` takes K from the environment (or is ignored if unset). */
export function parseBuildArgs(values: string[], env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const args: Record<string, string> = {};
  for (const value of values) {
    const eq = value.indexOf("=");
    const name = eq < 0 ? value : value.slice(0, eq);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw new UsageError(`invalid --build-arg "${value}": expected NAME=VALUE`);
    }
    if (eq >= 0) args[name] = value.slice(eq + 1);
    else if (env[name] !== undefined) args[name] = env[name]!;
  }
  return args;
}

