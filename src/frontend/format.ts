/**
 * Canonical text of an expanded instruction: what `memobuild graph` shows and what step keys
 * hash. Heredoc bodies are included, so editing one changes the text.
 */
import type { CommandLine, Instruction, InlineFile } from "./instructions.ts";
import { formatMount } from "./mounts.ts";

/** Quotes a word only when it needs it, so plain text stays readable. */
function word(text: string): string {
  return text !== "" && /^[^\s"'\\$`]+$/.test(text) ? text : JSON.stringify(text);
}

function command(line: CommandLine): string {
  return line.form === "exec" ? JSON.stringify(line.args) : line.text;
}

function heredocs(files: InlineFile[]): string {
  return files.map((f) => `\n${f.content}${f.name}`).join("");
}

function flag(name: string, value: string | boolean | undefined): string[] {
  if (value === undefined || value === false) return [];
  return value === true ? [`--${name}`] : [`--${name}=${word(value)}`];
}

export function formatInstruction(instruction: Instruction): string {
  const parts: string[] = [instruction.kind];
  switch (instruction.kind) {
    case "FROM":
      parts.push(...flag("platform", instruction.platform), word(instruction.image));
      if (instruction.stageName) parts.push("AS", instruction.stageName);
      break;
    case "RUN":
      parts.push(...instruction.mounts.map((m) => `--mount=${formatMount(m)}`), ...flag("network", instruction.network), ...flag("security", instruction.security === "insecure" ? "insecure" : undefined));
      parts.push(command(instruction.command));
      return parts.join(" ") + heredocs(instruction.heredocs);
    case "CMD":
    case "ENTRYPOINT":
      parts.push(command(instruction.command));
      break;
    case "SHELL":
      parts.push(JSON.stringify(instruction.shell));
      break;
    case "ENV":
    case "LABEL":
      parts.push(...instruction.pairs.map(([k, v]) => `${word(k)}=${word(v)}`));
      break;
    case "ARG":
      parts.push(...instruction.args.map((a) => (a.value === undefined ? a.name : `${a.name}=${word(a.value)}`)));
      break;
    case "WORKDIR":
      parts.push(word(instruction.path));
      break;
    case "USER":
      parts.push(word(instruction.user));
      break;
    case "STOPSIGNAL":
      parts.push(instruction.signal);
      break;
    case "MAINTAINER":
      parts.push(instruction.maintainer);
      break;
    case "EXPOSE":
      parts.push(...instruction.ports);
      break;
    case "VOLUME":
      parts.push(JSON.stringify(instruction.paths));
      break;
    case "HEALTHCHECK": {
      const h = instruction.healthcheck;
      if (h.type === "NONE") {
        parts.push("NONE");
        break;
      }
      const ms = (name: string, value?: number) => (value === undefined ? [] : [`--${name}=${value}ms`]);
      parts.push(
        ...ms("interval", h.intervalMs),
        ...ms("timeout", h.timeoutMs),
        ...ms("start-period", h.startPeriodMs),
        ...ms("start-interval", h.startIntervalMs),
        ...(h.retries === undefined ? [] : [`--retries=${h.retries}`]),
        "CMD",
        h.test[0] === "CMD-SHELL" ? h.test[1] : JSON.stringify(h.test.slice(1)),
      );
      break;
    }
    case "ONBUILD":
      parts.push(instruction.trigger);
      break;
    case "COPY":
    case "ADD": {
      if (instruction.kind === "COPY") parts.push(...flag("from", instruction.from), ...flag("parents", instruction.parents));
      else parts.push(...flag("checksum", instruction.checksum), ...flag("keep-git-dir", instruction.keepGitDir), ...flag("unpack", instruction.unpack));
      parts.push(
        ...flag("chown", instruction.chown),
        ...flag("chmod", instruction.chmod),
        ...flag("link", instruction.link),
        ...instruction.excludes.map((e) => `--exclude=${word(e)}`),
        ...instruction.inline.map((f) => `<<${f.name}`),
        ...instruction.sources.map(word),
        word(instruction.dest),
      );
      return parts.join(" ") + heredocs(instruction.inline);
    }
  }
  return parts.join(" ");
}
