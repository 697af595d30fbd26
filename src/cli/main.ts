/** The `memobuild` command line: one binary, one subcommand per job. */
import { Command, CommanderError } from "commander";
import packageJson from "../../package.json" with { type: "json" };
import { DockerfileError } from "../frontend/errors.ts";
import { diskFullError, UserError } from "../errors.ts";
import { BuildError } from "../solver/solver.ts";
import { registerBuild } from "./commands/build.ts";
import { registerCache } from "./commands/cache.ts";
import { registerContext } from "./commands/context.ts";
import { registerExplain } from "./commands/explain.ts";
import { registerImage } from "./commands/image.ts";
import { registerKey } from "./commands/key.ts";
import { registerRun } from "./commands/run.ts";
import { registerServe } from "./commands/serve.ts";
import { registerGraph } from "./commands/graph.ts";
import { registerConfig } from "./commands/config.ts";
import { registerInit } from "./commands/init.ts";
import { registerCompletion } from "./commands/completion.ts";
import { UsageError } from "./errors.ts";
import { log } from "../util/log.ts";
import { collect } from "./inputs.ts";
import { terminalText } from "../util/terminal-text.ts";

export const VERSION = packageJson.version;

/** Exit codes, as the README's table lists them. A failed RUN step exits 1. */
export const EXIT = { ok: 0, failed: 1, usage: 2, internal: 70 } as const;

export function createProgram(): Command {
  const program = new Command("memobuild")
    .description("Incremental, content-addressed container image builder")
    .version(VERSION, "-v, --version", "print the version")
    .helpOption("-h, --help", "show help")
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();
  registerInit(program);
  registerBuild(program);
  registerGraph(program);
  registerExplain(program);
  registerContext(program);
  registerImage(program);
  registerRun(program);
  registerCache(program);
  registerServe(program);
  registerKey(program);
  registerConfig(program);
  registerCompletion(program);
  const exitOverride = (command: Command) => {
    command.exitOverride();
    command.commands.forEach(exitOverride);
  };
  program.commands.forEach(exitOverride);
  // Repeatable options not given on the command line are empty lists.
  program.hook("preAction", (_program, command) => {
    for (const option of command.options) {
      const name = option.attributeName();
      if (option.parseArg === collect && command.getOptionValue(name) === undefined) command.setOptionValue(name, []);
    }
  });
  return program;
}

/** Runs the CLI; resolves to the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = createProgram();
  // Commander's own usage errors go through the same one format as every other error.
  program.configureOutput({ outputError: (text) => reportError(text.replace(/^error: /, "").trimEnd(), EXIT.usage) });
  for (const command of allCommands(program)) command.configureOutput({ outputError: (text) => reportError(text.replace(/^error: /, "").trimEnd(), EXIT.usage) });
  log().debug("command", { argv: argv.join(" ") });
  try {
    await program.parseAsync(argv, { from: "user" });
    return EXIT.ok;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT.ok : EXIT.usage; // already reported
    const { message, exitCode } = describeError(error);
    reportError(message, exitCode);
    return exitCode;
  }
}

function allCommands(command: Command): Command[] {
  return command.commands.flatMap((c) => [c, ...allCommands(c)]);
}

/** What an error says and the exit code it gives (see EXIT). */
function describeError(error: unknown): { message: string; exitCode: number } {
  if (error instanceof UsageError) return { message: error.message, exitCode: error.exitCode };
  if (error instanceof DockerfileError || error instanceof BuildError || error instanceof UserError) return { message: error.message, exitCode: EXIT.failed };
  const diskFull = diskFullError(error);
  if (diskFull) return { message: diskFull.message, exitCode: EXIT.failed };
  return { message: `internal error: ${(error as Error).stack ?? error}`, exitCode: EXIT.internal };
}

/**
 * The one error format: `memobuild: MESSAGE` on stderr (a Dockerfile's errors start with
 * `PATH:LINE:COL:` after it), or with MEMOBUILD_JSON_LOGS=1 one JSON line with level "error".
 */
function reportError(message: string, exitCode: number) {
  if (process.env.MEMOBUILD_JSON_LOGS === "1") log().error(message, { exitCode });
  // The last stop of every error: text from a server, a registry or an image it may quote is
  // printed as text, never obeyed by the terminal (its lines are kept).
  else process.stderr.write(`memobuild: ${terminalText(message, { multiline: true })}\n`);
}
