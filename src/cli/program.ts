/**
 * The Commander program. Each command's module (its flags, help and implementation) is loaded
 * only when that command runs: start-up pays for one command, not for the server, the
 * dashboard, the init wizard and the registry client together. `--help`, typo suggestions and
 * `completion` need every command's definition, so they load them all.
 */
import { Command } from "commander";
import { collect } from "./collect.ts";

type Register = (program: Command) => void;

/** Every command, in the order `--help` lists them. Static paths: `bun build` bundles each one. */
const COMMANDS: Record<string, () => Promise<Register>> = {
  init: async () => (await import("./commands/init.ts")).registerInit,
  build: async () => (await import("./commands/build.ts")).registerBuild,
  graph: async () => (await import("./commands/graph.ts")).registerGraph,
  explain: async () => (await import("./commands/explain.ts")).registerExplain,
  context: async () => (await import("./commands/context.ts")).registerContext,
  image: async () => (await import("./commands/image.ts")).registerImage,
  run: async () => (await import("./commands/run.ts")).registerRun,
  cache: async () => (await import("./commands/cache.ts")).registerCache,
  serve: async () => (await import("./commands/serve.ts")).registerServe,
  worker: async () => (await import("./commands/worker.ts")).registerWorker,
  key: async () => (await import("./commands/key.ts")).registerKey,
  verify: async () => (await import("./commands/verify.ts")).registerVerify,
  config: async () => (await import("./commands/config.ts")).registerConfig,
  completion: async () => (await import("./commands/completion.ts")).registerCompletion,
};

/** The commands `argv` needs defined: the one it names, or all (help, completion, a typo, none). */
export function commandsFor(argv: string[]): string[] {
  // The program's own options (-h, -v) take no value: the first other word is the command.
  const named = argv.find((arg) => !arg.startsWith("-"));
  return named !== undefined && named !== "completion" && Object.hasOwn(COMMANDS, named) ? [named] : Object.keys(COMMANDS);
}

/** The program with the commands `argv` needs (all of them when no argv is given). */
export async function createProgram(version: string, versionFlags: string, argv?: string[]): Promise<Command> {
  const program = new Command("memobuild")
    .description("Incremental, content-addressed container image builder")
    .version(version, versionFlags, "print the version")
    .helpOption("-h, --help", "show help")
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride();
  const registers = await Promise.all((argv ? commandsFor(argv) : Object.keys(COMMANDS)).map((name) => COMMANDS[name]()));
  for (const register of registers) register(program);
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

export function allCommands(command: Command): Command[] {
  return command.commands.flatMap((c) => [c, ...allCommands(c)]);
}
