/** The `memobuild` command line: one binary, one subcommand per job. */
import packageJson from "../../package.json" with { type: "json" };
import { DockerfileError } from "../frontend/errors.ts";
import { diskFullError, UserError } from "../errors.ts";
import { UsageError } from "./errors.ts";
import { log } from "../util/log.ts";
import { terminalText } from "../util/terminal-text.ts";

export const VERSION = packageJson.version;
const VERSION_FLAGS = "-v, --version";

/** Exit codes, as the README's table lists them. A failed RUN step exits 1. */
export const EXIT = { ok: 0, failed: 1, usage: 2, internal: 70 } as const;

/** Runs the CLI; resolves to the process exit code. */
export async function main(argv: string[]): Promise<number> {
  // The version alone needs no parser: loading Commander (or even process.stdout, a Node
  // stream) costs more than printing it.
  if (argv.length === 1 && VERSION_FLAGS.split(", ").includes(argv[0])) return printVersion();
  quietOnClosedPipe();
  const { allCommands, createProgram } = await import("./program.ts");
  const { CommanderError } = await import("commander");
  const program = await createProgram(VERSION, VERSION_FLAGS, argv);
  // Commander's own usage errors go through the same one format as every other error.
  const outputError = (text: string) => reportError(text.replace(/^error: /, "").trimEnd(), EXIT.usage);
  for (const command of [program, ...allCommands(program)]) command.configureOutput({ outputError });
  log().debug("command", { argv: argv.join(" ") });
  try {
    await program.parseAsync(argv, { from: "user" });
    return EXIT.ok;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? EXIT.ok : EXIT.usage; // already reported
    const { message, exitCode } = await describeError(error);
    reportError(message, exitCode);
    return exitCode;
  }
}

async function printVersion(): Promise<number> {
  try {
    await Bun.write(Bun.stdout, `${VERSION}\n`);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EPIPE") throw error;
  }
  return EXIT.ok;
}

/** `memobuild cache ls | head`: a reader that goes away is not an error. */
function quietOnClosedPipe() {
  const quiet = (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw error;
  };
  process.stdout.on("error", quiet);
  process.on("uncaughtException", quiet);
}

/** What an error says and the exit code it gives (see EXIT). */
async function describeError(error: unknown): Promise<{ message: string; exitCode: number }> {
  if (error instanceof UsageError) return { message: error.message, exitCode: error.exitCode };
  if (error instanceof DockerfileError || error instanceof UserError) return { message: error.message, exitCode: EXIT.failed };
  const diskFull = diskFullError(error);
  if (diskFull) return { message: diskFull.message, exitCode: EXIT.failed };
  // Only a command that loaded the solver can throw its errors: importing it here costs nothing then.
  const { BuildError } = await import("../solver/solver.ts");
  if (error instanceof BuildError) return { message: error.message, exitCode: EXIT.failed };
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
