import type { Command } from "commander";
import { defaultAnswers, runInit } from "../../init/init.ts";
import { Cancelled, clackPrompter, intro, outro } from "../../init/wizard.ts";
import { UsageError } from "../errors.ts";
import { collect } from "../collect.ts";

interface InitFlags {
  yes?: boolean;
  file?: string;
  target?: string;
  tag: string[];
  buildArg: string[];
  remote?: string;
  remoteToken?: string;
  sign?: boolean;
  force?: boolean;
}

export function registerInit(program: Command) {
  program
    .command("init")
    .summary("set up a project: memobuild.json, .dockerignore, the remote cache")
    .description(
      "Ask, on the terminal, which Dockerfile, stage, image names and build args the project builds, what the " +
        ".dockerignore should leave out, and which cache server to share results through (checked before it is saved); " +
        "then write memobuild.json (with a JSON Schema for editors) and the token to the user config, never to the project. " +
        "--yes takes every default without asking.",
    )
    .option("-y, --yes", "ask nothing: take the defaults and the flags given")
    .option("-f, --file <file>", "the Dockerfile, relative to the project")
    .option("--target <stage>", "the stage to build")
    .option("-t, --tag <ref>", "an image name (repeatable)", collect)
    .option("--build-arg <name=value>", "a build arg to record (repeatable)", collect)
    .option("--remote <url>", "the cache server to share results through (checked before it is saved)")
    .option("--remote-token <token>", "its token (saved to the user config, never to the project)")
    .option("--sign", "sign uploaded results with a key in the user config directory (made if missing)")
    .option("--force", "replace an existing memobuild.json")
    .action(async (flags: InitFlags) => {
      const interactive = !flags.yes;
      // clack waits forever for keys that a closed or piped stdin never sends.
      if (interactive && !(process.stdin.isTTY && process.stdout.isTTY)) {
        throw new UsageError("memobuild init asks its questions on a terminal, and this is not one: run `memobuild init --yes` (with -f, -t, --remote ... as needed) to take the defaults");
      }
      const preset = {
        dockerfile: flags.file,
        target: flags.target,
        tags: flags.tag.length ? flags.tag : undefined,
        buildArgs: flags.buildArg.length ? flags.buildArg : undefined,
        remote: flags.remote,
        remoteToken: flags.remoteToken,
        sign: flags.sign,
        force: flags.force,
      };
      if (!interactive) {
        const result = await runInit(process.cwd(), preset, defaultAnswers((m) => process.stderr.write(`warning: ${m}\n`)));
        for (const file of result.written) process.stderr.write(`wrote ${file}\n`);
        return;
      }
      intro("memobuild init");
      try {
        const result = await runInit(process.cwd(), preset, clackPrompter);
        outro(`wrote ${result.written.join(", ")}\n  next: memobuild build   (memobuild config shows every setting and where it comes from)`);
      } catch (error) {
        if (error instanceof Cancelled) throw new UsageError(error.message, 130);
        throw error;
      }
    });
}
