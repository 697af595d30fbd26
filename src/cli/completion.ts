/**
 * Shell completion scripts, generated from the program's own commands and options, so they
 * never drift from `--help`: commands, subcommands (`image ls`), each one's flags, and
 * `--progress`/`--output type=` values.
 */
import type { Command } from "commander";

interface Entry {
  /** The command path after `memobuild`: [] for the program, ["image", "ls"]... */
  path: string[];
  summary: string;
  flags: { long?: string; short?: string; description: string }[];
  subcommands: string[];
}

function entries(program: Command): Entry[] {
  const out: Entry[] = [];
  const visit = (command: Command, path: string[]) => {
    out.push({
      path,
      summary: command.summary() || command.description().split(". ")[0] || "",
      flags: command.options.map((o) => ({ long: o.long, short: o.short, description: o.description })),
      subcommands: command.commands.map((c) => c.name()),
    });
    for (const sub of command.commands) visit(sub, [...path, sub.name()]);
  };
  visit(program, []);
  return out;
}

const VALUES: Record<string, string[]> = {
  "--progress": ["auto", "tty", "plain", "json", "quiet"],
  "--output": ["type=oci,dest=", "type=oci-archive,dest=", "type=docker-archive,dest=", "type=registry", "type=local,dest=", "type=tar,dest="],
  "--network": ["default", "none", "host"],
  "--format": ["text", "dot", "mermaid", "json"],
};

const quote = (text: string) => `'${text.replace(/'/g, "'\\''")}'`;

export function bashCompletion(program: Command): string {
  const cases = entries(program)
    .map((e) => `    ${quote(e.path.join(" "))}) words=${quote([...e.subcommands, ...e.flags.flatMap((f) => [f.long, f.short].filter(Boolean) as string[])].join(" "))} ;;`)
    .join("\n");
  const values = Object.entries(VALUES).map(([flag, list]) => `    ${flag}) COMPREPLY=($(compgen -W ${quote(list.join(" "))} -- "$cur")); return ;;`).join("\n");
  return `# memobuild completion for bash: eval "$(memobuild completion bash)"
_memobuild() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]} path="" words i
  case "$prev" in
${values}
  esac
  # The command path: the words before the cursor that are commands, not flags or values.
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "\${COMP_WORDS[i]}" in -*) ;; *) _memobuild_is_command "\${path:+$path }\${COMP_WORDS[i]}" && path="\${path:+$path }\${COMP_WORDS[i]}" ;; esac
  done
  case "$path" in
${cases}
    *) words="" ;;
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
  [ \${#COMPREPLY[@]} -eq 0 ] && [[ "$cur" != -* ]] && COMPREPLY=($(compgen -f -- "$cur"))
  return 0
}
_memobuild_is_command() {
  case "$1" in
${entries(program).filter((e) => e.path.length).map((e) => `    ${quote(e.path.join(" "))}) return 0 ;;`).join("\n")}
  esac
  return 1
}
complete -o filenames -F _memobuild memobuild
`;
}

export function zshCompletion(program: Command): string {
  const cases = entries(program)
    .map((e) => {
      const items = [...e.subcommands.map((s) => `${s}:${entries(program).find((x) => x.path.join(" ") === [...e.path, s].join(" "))?.summary ?? ""}`), ...e.flags.flatMap((f) => [f.long, f.short].filter(Boolean).map((flag) => `${flag}:${f.description}`))];
      return `    ${quote(e.path.join(" "))}) items=(${items.map((i) => quote(i.replace(/:/g, (m, offset) => (offset === i.indexOf(":") ? m : "\\:")))).join(" ")}) ;;`;
    })
    .join("\n");
  return `#compdef memobuild
# memobuild completion for zsh: memobuild completion zsh > "\${fpath[1]}/_memobuild"
_memobuild() {
  local path="" word
  local -a items
  for word in \${words[2,CURRENT-1]}; do
    [[ $word == -* ]] && continue
    case "\${path:+$path }$word" in
${entries(program).filter((e) => e.path.length).map((e) => `      ${quote(e.path.join(" "))}) path="\${path:+$path }$word" ;;`).join("\n")}
    esac
  done
  case "$path" in
${cases}
  esac
  _describe 'memobuild' items
  _files
}
compdef _memobuild memobuild
`;
}

export function fishCompletion(program: Command): string {
  const lines = ["# memobuild completion for fish: memobuild completion fish > ~/.config/fish/completions/memobuild.fish", "complete -c memobuild -f"];
  for (const e of entries(program)) {
    const condition = e.path.length === 0 ? "__fish_use_subcommand" : `__fish_seen_subcommand_from ${e.path.at(-1)}`;
    for (const sub of e.subcommands) {
      const summary = entries(program).find((x) => x.path.join(" ") === [...e.path, sub].join(" "))?.summary ?? "";
      lines.push(`complete -c memobuild -n ${quote(e.path.length === 0 ? condition : `${condition}; and not __fish_seen_subcommand_from ${e.subcommands.join(" ")}`)} -a ${sub} -d ${quote(summary)}`);
    }
    if (e.path.length === 0) continue;
    for (const flag of e.flags) {
      const names = [flag.long ? `-l ${flag.long.slice(2)}` : "", flag.short ? `-s ${flag.short.slice(1)}` : ""].filter(Boolean).join(" ");
      const values = flag.long && VALUES[flag.long] ? ` -x -a ${quote(VALUES[flag.long]!.join(" "))}` : "";
      lines.push(`complete -c memobuild -n ${quote(condition)} ${names}${values} -d ${quote(flag.description)}`);
    }
  }
  return lines.join("\n") + "\n";
}
