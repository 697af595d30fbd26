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
import { UsageError } from "./errors.ts";
import { collect } from "./inputs.ts";

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
  try {
    await program.parseAsync(argv, { from: "user" });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and --version exit 0; commander already printed the usage error.
      return error.exitCode === 0 ? 0 : EXIT.usage;
    }
    if (error instanceof DockerfileError) {
      process.stderr.write(`${error.message}\n`);
      return 1;
    }
    if (error instanceof BuildError) {
      process.stderr.write(`error: ${error.message}\n`);
      return error.exitCode;
    }
    if (error instanceof UserError) {
      process.stderr.write(`memobuild: ${error.message}\n`);
      return 1;
    }
    if (error instanceof UsageError) {
      process.stderr.write(`memobuild: ${error.message}\n`);
      return error.exitCode;
    }
    const diskFull = diskFullError(error);
    if (diskFull) {
      process.stderr.write(`memobuild: ${diskFull.message}\n`);
      return 1;
    }
    process.stderr.write(`memobuild: internal error: ${(error as Error).stack ?? error}\n`);
    return EXIT.internal;
  }
}
