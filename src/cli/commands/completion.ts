import type { Command } from "commander";
import { bashCompletion, fishCompletion, zshCompletion } from "../completion.ts";
import { UsageError } from "../errors.ts";

export function registerCompletion(program: Command) {
  program
    .command("completion")
    .summary("print a shell completion script: bash, zsh or fish")
    .description(
      "Print the completion script for a shell. bash: eval \"$(memobuild completion bash)\" in ~/.bashrc; " +
        "zsh: memobuild completion zsh > \"${fpath[1]}/_memobuild\"; fish: memobuild completion fish > ~/.config/fish/completions/memobuild.fish",
    )
    .argument("<shell>", "bash, zsh or fish")
    .action((shell: string) => {
      const make = { bash: bashCompletion, zsh: zshCompletion, fish: fishCompletion }[shell];
      if (!make) throw new UsageError(`completion ${shell}: use bash, zsh or fish`);
      process.stdout.write(make(program));
    });
}
