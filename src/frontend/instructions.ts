/**
 * Parse-tree nodes → typed instructions: flags checked, arguments validated and expanded.
 * Expansion goes through the `Expander` the planner passes in, so the planner decides which
 * variables are in scope and records which ones each instruction used.
 */
import { closest } from "../util/closest.ts";
import { DockerfileError, type SourceRange } from "./errors.ts";
import type { Node } from "./parser.ts";
import { parseMount, type Mount } from "./mounts.ts";

export type CommandLine = { form: "exec"; args: string[] } | { form: "shell"; text: string };

export interface InlineFile {
  /** The heredoc delimiter; it is also the file's name. */
  name: string;
  content: string;
}

interface Common {
  location: SourceRange;
}

export type Instruction = Common &
  (
    | { kind: "FROM"; image: string; stageName?: string; platform?: string }
    | {
        kind: "RUN";
        command: CommandLine;
        heredocs: InlineFile[];
        mounts: Mount[];
        network?: "default" | "none" | "host";
        /** insecure: a privileged container (needs --allow security.insecure). */
        security?: "sandbox" | "insecure";
      }
    | { kind: "CMD" | "ENTRYPOINT"; command: CommandLine }
    | { kind: "SHELL"; shell: string[] }
    | { kind: "ENV" | "LABEL"; pairs: [string, string][] }
    | { kind: "ARG"; args: { name: string; value?: string }[] }
    | { kind: "WORKDIR"; path: string }
    | { kind: "USER"; user: string }
    | { kind: "EXPOSE"; ports: string[] }
    | { kind: "VOLUME"; paths: string[] }
    | { kind: "STOPSIGNAL"; signal: string }
    | { kind: "MAINTAINER"; maintainer: string }
    | { kind: "HEALTHCHECK"; healthcheck: Healthcheck }
    | { kind: "ONBUILD"; trigger: string; parsed: Instruction }
    | ({ kind: "COPY"; from?: string; parents: boolean } & Transfer)
    | ({ kind: "ADD"; checksum?: string; keepGitDir: boolean; unpack?: boolean } & Transfer)
  );

export interface Transfer {
  sources: string[];
  inline: InlineFile[];
  dest: string;
  chown?: string;
  chmod?: string;
  link: boolean;
  excludes: string[];
}

export type Healthcheck =
  | { type: "NONE" }
  | {
      type: "CMD";
      /** Docker's form: ["CMD", args...] or ["CMD-SHELL", text]. */
      test: string[];
      intervalMs?: number;
      timeoutMs?: number;
      startPeriodMs?: number;
      startIntervalMs?: number;
      retries?: number;
    };

export type InstructionKind = Instruction["kind"];

export const INSTRUCTION_KINDS: readonly InstructionKind[] = [
  "FROM", "RUN", "CMD", "ENTRYPOINT", "SHELL", "ENV", "LABEL", "ARG", "WORKDIR", "USER",
  "EXPOSE", "VOLUME", "STOPSIGNAL", "MAINTAINER", "HEALTHCHECK", "ONBUILD", "COPY", "ADD",
];

/** Expansion of one word, and of a word into several; both may throw ExpansionError. */
export interface Expander {
  word(text: string): string;
  words(text: string): string[];
  /** A heredoc body: variables expand, quotes stay. */
  heredoc(text: string): string;
}

/** `9000-9002/udp` → one entry per port, as BuildKit stores them (nat.ParsePortSpecs). */
function exposedPorts(ctx: { error(message: string, word?: string): Error }, spec: string): string[] {
  const [range, protocol = "tcp"] = spec.toLowerCase().split("/");
  const [start, end = start] = range.split("-").map(Number);
  if (start > 65535 || end > 65535 || end < start) throw ctx.error(`invalid port range "${spec}": ports are 0-65535, the first no larger than the last`, spec);
  return Array.from({ length: end - start + 1 }, (_, i) => `${start + i}/${protocol}`);
}

/** Expands nothing: for ONBUILD triggers, which run later in another build. */
export const LITERAL: Expander = { word: (t) => t, words: (t) => [t], heredoc: (t) => t };

type FlagKind = "string" | "bool" | "strings";
const FLAGS: Partial<Record<InstructionKind, Record<string, FlagKind>>> = {
  FROM: { platform: "string" },
  RUN: { mount: "strings", network: "string", security: "string" },
  COPY: { from: "string", chown: "string", chmod: "string", link: "bool", parents: "bool", exclude: "strings" },
  ADD: {
    chown: "string", chmod: "string", link: "bool", exclude: "strings", checksum: "string",
    "keep-git-dir": "bool", unpack: "bool",
  },
  HEALTHCHECK: {
    interval: "string", timeout: "string", "start-period": "string", "start-interval": "string",
    retries: "string",
  },
};

type FlagValues = Record<string, string | boolean | string[] | undefined>;

/** Everything the conversion of one node needs to report errors at the right place. */
class NodeContext {
  constructor(
    readonly node: Node,
    readonly kind: InstructionKind,
    readonly file: string,
  ) {}

  get location(): SourceRange {
    const column = this.node.sourceLine.search(/\S/) + 1;
    return { file: this.file, line: this.node.startLine, column: Math.max(column, 1), endLine: this.node.endLine };
  }

  /** Points at `needle` on the instruction's first line when it is there. */
  locate(needle: string): SourceRange {
    const index = this.node.sourceLine.indexOf(needle);
    return index < 0 ? this.location : { ...this.location, column: index + 1 };
  }

  error(message: string, needle?: string): DockerfileError {
    return new DockerfileError(message, needle ? this.locate(needle) : this.location);
  }

  args(): string[] {
    const values: string[] = [];
    for (let n = this.node.next; n; n = n.next) values.push(n.value);
    return values;
  }

  get json(): boolean {
    return this.node.attributes.json === true;
  }

  /** Checks the node's `--flags` against what the instruction accepts. */
  flags(): FlagValues {
    const allowed = FLAGS[this.kind] ?? {};
    const values: FlagValues = {};
    for (const raw of this.node.flags) {
      const text = raw.startsWith("--") ? raw.slice(2) : raw;
      const eq = text.indexOf("=");
      const name = eq < 0 ? text : text.slice(0, eq);
      const value = eq < 0 ? undefined : text.slice(eq + 1);
      const type = allowed[name];
      if (!type) {
        const accepted = Object.keys(allowed).map((f) => `--${f}`);
        const hint = accepted.length ? ` (${this.kind} accepts ${accepted.join(", ")})` : ` (${this.kind} takes no flags)`;
        throw this.error(`unknown flag: --${name}${hint}`, `--${name}`);
      }
      if (type === "bool") {
        if (value !== undefined && !/^(true|false)$/i.test(value)) {
          throw this.error(`expecting boolean value for flag --${name}, not: ${value}`, `--${name}`);
        }
        values[name] = value === undefined || value.toLowerCase() === "true";
        continue;
      }
      if (value === undefined) throw this.error(`missing a value on flag: --${name}`, `--${name}`);
      if (type === "strings") {
        values[name] = [...((values[name] as string[] | undefined) ?? []), value];
      } else {
        if (values[name] !== undefined) throw this.error(`duplicate flag specified: --${name}`, `--${name}`);
        values[name] = value;
      }
    }
    return values;
  }
}

/** Converts one parse-tree node. `expander` supplies the variables in scope. */
export function toInstruction(node: Node, file: string, expander: Expander): Instruction {
  const kind = node.value.toUpperCase() as InstructionKind;
  if (!INSTRUCTION_KINDS.includes(kind)) {
    const ctx = new NodeContext(node, "RUN", file);
    const suggestion = closest(kind, INSTRUCTION_KINDS);
    throw ctx.error(`unknown instruction: ${node.value}${suggestion ? ` (did you mean ${suggestion}?)` : ""}`);
  }
  const ctx = new NodeContext(node, kind, file);
  try {
    return convert(ctx, expander);
  } catch (error) {
    if (error instanceof DockerfileError) throw error;
    throw ctx.error(`${kind}: ${(error as Error).message}`);
  }
}

function convert(ctx: NodeContext, x: Expander): Instruction {
  const flags = ctx.flags();
  const args = ctx.args();
  const location = ctx.location;
  const str = (name: string) => {
    const value = flags[name] as string | undefined;
    return value === undefined ? undefined : x.word(value);
  };
  const list = (name: string) => ((flags[name] as string[] | undefined) ?? []).map((v) => x.word(v));

  switch (ctx.kind) {
    case "FROM": {
      if (args.length !== 1 && !(args.length === 3 && args[1].toUpperCase() === "AS")) {
        throw ctx.error("FROM requires either one argument, or three: FROM <image> AS <name>");
      }
      const image = x.word(args[0]);
      if (image === "") throw ctx.error(`base name (${args[0]}) should not be blank`);
      const stageName = args.length === 3 ? args[2].toLowerCase() : undefined;
      if (stageName !== undefined && !/^[a-z][a-z0-9_.-]*$/.test(stageName)) {
        throw ctx.error(
          `invalid name for build stage: "${args[2]}", name can't start with a number or contain symbols`,
          args[2],
        );
      }
      return { kind: "FROM", location, image, stageName, platform: str("platform") };
    }
    case "RUN": {
      if (args.length === 0 || (!ctx.json && args[0].trim() === "")) {
        throw ctx.error("RUN requires at least one argument");
      }
      const network = str("network");
      if (network !== undefined && !["default", "none", "host"].includes(network)) {
        throw ctx.error(`invalid --network value "${network}": use default, none or host`, "--network");
      }
      const security = str("security");
      if (security !== undefined && security !== "sandbox" && security !== "insecure") {
        throw ctx.error(`invalid --security value "${security}": use sandbox or insecure`, "--security");
      }
      const mounts = list("mount").map((spec) => {
        try {
          return parseMount(spec);
        } catch (error) {
          throw ctx.error(`invalid --mount: ${(error as Error).message}`, "--mount");
        }
      });
      return {
        kind: "RUN",
        location,
        command: commandLine(ctx, args),
        // RUN heredoc bodies are not expanded here: the shell that runs them does that.
        heredocs: ctx.node.heredocs.map((h) => ({ name: h.name, content: h.content })),
        mounts,
        network: network as "default" | "none" | "host" | undefined,
        security: security as "sandbox" | "insecure" | undefined,
      };
    }
    case "CMD":
    case "ENTRYPOINT":
      if (!ctx.json && args.length === 0) throw ctx.error(`${ctx.kind} requires at least one argument`);
      return { kind: ctx.kind, location, command: commandLine(ctx, args) };
    case "SHELL":
      if (!ctx.json) throw ctx.error('SHELL requires the arguments to be in JSON form, e.g. SHELL ["/bin/sh", "-c"]');
      if (args.length === 0) throw ctx.error("SHELL requires at least one argument");
      return { kind: "SHELL", location, shell: args };
    case "ENV":
    case "LABEL": {
      if (args.length === 0) throw ctx.error(`${ctx.kind} requires at least one argument`);
      const pairs: [string, string][] = [];
      for (let i = 0; i + 1 < args.length; i += 3) {
        const key = x.word(args[i]);
        if (key === "") throw ctx.error(`${ctx.kind} names can not be blank`);
        pairs.push([key, x.word(args[i + 1])]);
      }
      return { kind: ctx.kind, location, pairs };
    }
    case "ARG": {
      if (args.length === 0) throw ctx.error("ARG requires at least one argument");
      return {
        kind: "ARG",
        location,
        args: args.map((word) => {
          const eq = word.indexOf("=");
          const name = eq < 0 ? word : word.slice(0, eq);
          if (name === "") throw ctx.error("ARG names can not be blank");
          if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
            throw ctx.error(`invalid ARG name "${name}": use letters, digits and _`, name);
          }
          // Defaults are expanded by the planner, in the scope where the ARG is declared.
          return { name, value: eq < 0 ? undefined : word.slice(eq + 1) };
        }),
      };
    }
    case "WORKDIR":
    case "USER":
    case "STOPSIGNAL":
    case "MAINTAINER": {
      if (args.length !== 1) throw ctx.error(`${ctx.kind} requires exactly one argument`);
      if (ctx.kind === "MAINTAINER") return { kind: "MAINTAINER", location, maintainer: args[0] };
      const value = x.word(args[0]);
      if (value === "") throw ctx.error(`${ctx.kind} can not be empty (${args[0]} expands to nothing)`);
      if (ctx.kind === "WORKDIR") return { kind: "WORKDIR", location, path: value };
      if (ctx.kind === "USER") return { kind: "USER", location, user: value };
      if (!isSignal(value)) throw ctx.error(`invalid signal: ${value}`);
      return { kind: "STOPSIGNAL", location, signal: value };
    }
    case "EXPOSE": {
      if (args.length === 0) throw ctx.error("EXPOSE requires at least one argument");
      const ports = args.flatMap((a) => x.words(a));
      for (const port of ports) {
        if (!/^\d+(-\d+)?(\/(tcp|udp|sctp))?$/i.test(port)) {
          throw ctx.error(`invalid port "${port}": use PORT[-PORT][/tcp|/udp|/sctp]`, port);
        }
      }
      return { kind: "EXPOSE", location, ports: ports.flatMap((p) => exposedPorts(ctx, p)) };
    }
    case "VOLUME": {
      if (args.length === 0) throw ctx.error("VOLUME requires at least one argument");
      const paths = args.map((a) => x.word(a));
      if (paths.some((p) => p.trim() === "")) throw ctx.error("VOLUME specified can not be an empty string");
      return { kind: "VOLUME", location, paths };
    }
    case "HEALTHCHECK":
      return { kind: "HEALTHCHECK", location, healthcheck: healthcheck(ctx, flags, args) };
    case "ONBUILD": {
      const child = ctx.node.next?.children[0];
      if (!child) throw ctx.error("ONBUILD requires at least one argument");
      const childKind = child.value.toUpperCase();
      if (childKind === "ONBUILD") throw ctx.error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
      if (childKind === "FROM" || childKind === "MAINTAINER") {
        throw ctx.error(`${childKind} isn't allowed as an ONBUILD trigger`);
      }
      const parsed = toInstruction(child, ctx.file, LITERAL);
      const trigger = ctx.node.original.trim().replace(/^onbuild\s+/i, "");
      return { kind: "ONBUILD", location, trigger, parsed };
    }
    case "COPY":
    case "ADD": {
      const transfer = transferArgs(ctx, x, args);
      const common = { ...transfer, chown: str("chown"), chmod: str("chmod"), link: flags.link === true, excludes: list("exclude") };
      // BuildKit reads any octal number (strconv.ParseUint base 8: "0", "7", "00000644") up to 7777.
      if (common.chmod !== undefined && !(/^[0-7]+$/.test(common.chmod) && parseInt(common.chmod, 8) <= 0o7777)) {
        throw ctx.error(`invalid --chmod value "${common.chmod}": use an octal mode from 0 to 7777, e.g. 0755`, "--chmod");
      }
      if (ctx.kind === "COPY") {
        return { kind: "COPY", location, ...common, from: str("from"), parents: flags.parents === true };
      }
      const checksum = str("checksum");
      if (checksum !== undefined && !/^sha(256|384|512):[0-9a-f]+$/.test(checksum)) {
        throw ctx.error(`invalid --checksum "${checksum}": use sha256:<hex>`, "--checksum");
      }
      return {
        kind: "ADD",
        location,
        ...common,
        checksum,
        keepGitDir: flags["keep-git-dir"] === true,
        unpack: flags.unpack as boolean | undefined,
      };
    }
  }
}

function commandLine(ctx: NodeContext, args: string[]): CommandLine {
  return ctx.json ? { form: "exec", args } : { form: "shell", text: args[0] ?? "" };
}

const HEREDOC_WORD = /^\d*<<-?(.+)$/;

/** COPY/ADD arguments: sources (files or heredocs) and the destination, expanded. */
function transferArgs(ctx: NodeContext, x: Expander, args: string[]) {
  if (args.length < 2) {
    throw ctx.error(
      `${ctx.kind} requires at least two arguments, but only ${args.length} was provided. Destination could not be determined.`,
    );
  }
  const heredocs = [...ctx.node.heredocs];
  const sources: string[] = [];
  const inline: InlineFile[] = [];
  for (const raw of args.slice(0, -1)) {
    if (!ctx.json && heredocs.length > 0 && HEREDOC_WORD.test(raw)) {
      const heredoc = heredocs.shift()!;
      inline.push({ name: heredoc.name, content: heredoc.expand ? x.heredoc(heredoc.content) : heredoc.content });
      continue;
    }
    const source = x.word(raw);
    if (source === "") throw ctx.error(`${ctx.kind} source ${raw} expands to an empty path`, raw);
    sources.push(source);
  }
  const dest = x.word(args[args.length - 1]);
  if (dest === "") throw ctx.error(`${ctx.kind} destination expands to an empty path`);
  return { sources, inline, dest };
}

function healthcheck(ctx: NodeContext, flags: FlagValues, args: string[]): Healthcheck {
  if (args.length === 0) throw ctx.error("HEALTHCHECK requires at least one argument: CMD <command> or NONE");
  const type = args[0].toUpperCase();
  if (type === "NONE") {
    if (args.length > 1) throw ctx.error("HEALTHCHECK NONE takes no arguments");
    if (ctx.node.flags.length > 0) throw ctx.error("HEALTHCHECK NONE takes no options", "--");
    return { type: "NONE" };
  }
  if (type !== "CMD") throw ctx.error(`unknown type "${args[0]}" in HEALTHCHECK (try CMD)`, args[0]);
  const rest = args.slice(1);
  if (rest.length === 0 || (!ctx.json && rest[0].trim() === "")) {
    throw ctx.error("missing command after HEALTHCHECK CMD");
  }
  const test = ctx.json ? ["CMD", ...rest] : ["CMD-SHELL", rest[0]];
  const duration = (name: string) => {
    const value = flags[name] as string | undefined;
    if (value === undefined) return undefined;
    const ms = parseDuration(value);
    if (ms === undefined) throw ctx.error(`invalid --${name} "${value}": use a duration such as 30s or 1m30s`, `--${name}`);
    if (ms !== 0 && ms < 1) throw ctx.error(`--${name} cannot be less than 1ms`, `--${name}`);
    return ms;
  };
  let retries: number | undefined;
  if (flags.retries !== undefined) {
    retries = Number(flags.retries);
    if (!Number.isInteger(retries)) throw ctx.error(`invalid --retries "${flags.retries}": use a whole number`, "--retries");
    if (retries < 0) throw ctx.error(`--retries cannot be negative (${retries})`, "--retries");
  }
  return {
    type: "CMD",
    test,
    intervalMs: duration("interval"),
    timeoutMs: duration("timeout"),
    startPeriodMs: duration("start-period"),
    startIntervalMs: duration("start-interval"),
    retries,
  };
}

const DURATION_UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, "µs": 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Go's time.ParseDuration, in milliseconds ("0" alone is allowed without a unit). */
export function parseDuration(text: string): number | undefined {
  if (text === "0") return 0;
  const pattern = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let consumed = 0;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    total += Number(match[1]) * DURATION_UNITS[match[2]];
    consumed = pattern.lastIndex;
  }
  return consumed === text.length && consumed > 0 ? total : undefined;
}

const SIGNALS = new Set(
  "ABRT ALRM BUS CHLD CLD CONT FPE HUP ILL INT IO IOT KILL PIPE POLL PROF PWR QUIT SEGV STKFLT STOP SYS TERM TRAP TSTP TTIN TTOU URG USR1 USR2 VTALRM WINCH XCPU XFSZ".split(" "),
);

function isSignal(value: string): boolean {
  if (/^\d+$/.test(value)) return Number(value) > 0 && Number(value) <= 64;
  const name = value.toUpperCase().replace(/^SIG/, "");
  return SIGNALS.has(name) || /^RTM(IN|AX)([+-]\d+)?$/.test(name);
}

