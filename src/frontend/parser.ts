/**
 * Dockerfile parser: text → a tree of nodes with the same shape as BuildKit's parser
 * (frontend/dockerfile/parser), so that every BuildKit testfile gives the same tree.
 *
 * Why not `dockerfile-ast`: it is an editor AST (ranges for a language server) whose rules for
 * comments inside continuations, empty continuation lines, escaped trailing escapes and invalid
 * JSON differ from BuildKit's. Matching BuildKit exactly is the point of this module, and the
 * conformance suite (../shared/conformance/buildkit-parser) is the judge.
 */
import { expand } from "./shell-lex.ts";
import { DockerfileError, type SourceRange } from "./errors.ts";

/** The largest Dockerfile read (a Dockerfile is text; a bigger "file" is a mistake or an attack). */
export const MAX_DOCKERFILE_BYTES = 16 * 1024 * 1024;

export interface Heredoc {
  /** The delimiter word with quotes removed. */
  name: string;
  /** The body, every line ending in "\n" (tabs already stripped for `<<-`). */
  content: string;
  /** False when the delimiter was quoted: the body is taken literally. */
  expand: boolean;
  /** `<<-`: leading tabs are stripped from body lines and the terminator. */
  chomp: boolean;
  fileDescriptor: number;
}

/** One instruction, or (in `next`) one of its arguments, as BuildKit models it. */
export interface Node {
  value: string;
  next?: Node;
  children: Node[];
  heredocs: Heredoc[];
  /** `json: true` when the arguments were a JSON array. */
  attributes: { json?: boolean };
  /** The logical line, continuations joined. */
  original: string;
  flags: string[];
  startLine: number;
  endLine: number;
  /** The first physical line of the instruction, for column numbers in errors. */
  sourceLine: string;
  comments: string[];
}

export interface Directive {
  name: string;
  value: string;
  line: number;
}

export interface ParseResult {
  file: string;
  children: Node[];
  escapeToken: string;
  directives: Directive[];
  warnings: { message: string; line: number }[];
}

const KNOWN_DIRECTIVES = new Set(["escape", "syntax", "check"]);
const DIRECTIVE_PATTERN = /^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$/;
const WHITESPACE = /[\t\v\f\r ]+/;
const HEREDOC_PATTERN = /^(\d*)<<(-?)([^<]*)$/;

type ArgumentParser = (rest: string, state: ParserState) => { next?: Node; json?: boolean };

class ParserState {
  escapeToken = "\\";
  continuation = ParserState.continuationPattern("\\");
  directivesDone = false;
  readonly directives: Directive[] = [];
  /** Where the instruction being parsed starts (ONBUILD parses a nested instruction). */
  location: SourceRange = { file: "", line: 0 };
  sourceLine = "";

  /**
   * A line continues when it ends in the escape token (trailing blanks allowed), unless that
   * token is itself escaped; a line holding only the token continues too.
   */
  static continuationPattern(token: string): RegExp {
    const t = token === "\\" ? "\\\\" : token;
    return new RegExp(`([^${t}])${t}[ \\t]*$|^${t}[ \\t]*$`);
  }

  /** Parser directives are only recognised before the first non-directive line. */
  directive(line: string, lineNumber: number, file: string) {
    if (this.directivesDone) return;
    const match = DIRECTIVE_PATTERN.exec(line);
    const name = match?.[1].toLowerCase();
    if (!match || !KNOWN_DIRECTIVES.has(name!)) {
      this.directivesDone = true;
      return;
    }
    if (this.directives.some((d) => d.name === name)) {
      throw new DockerfileError(`only one ${name} parser directive can be used`, { file, line: lineNumber });
    }
    const value = match[2];
    if (name === "escape") {
      if (value !== "`" && value !== "\\") {
        throw new DockerfileError(`invalid escape token '${value}' does not match \` or \\`, {
          file,
          line: lineNumber,
        });
      }
      this.escapeToken = value;
      this.continuation = ParserState.continuationPattern(value);
    }
    this.directives.push({ name: name!, value, line: lineNumber });
  }
}

const isSpace = (ch: string) => /^\s$/u.test(ch);
const trimLeft = (text: string) => text.replace(/^\s+/u, "");
const trimNewline = (text: string) => text.replace(/[\r\n]+$/, "");
const isComment = (line: string) => trimLeft(line).startsWith("#");

/** Splits into lines that keep their "\n" (heredoc bodies need it). */
function splitLines(text: string): string[] {
  const lines: string[] = [...(text.match(/[^\n]*\n|[^\n]+$/g) ?? [])];
  if (lines[0]?.startsWith("\uFEFF")) lines[0] = lines[0].slice(1);
  return lines;
}

/**
 * Parses a Dockerfile. `file` is the path as the user named it; it appears in every error.
 * Throws DockerfileError with a location.
 */
export function parseDockerfile(text: string, file = "Dockerfile"): ParseResult {
  const state = new ParserState();
  const lines = splitLines(text);
  const children: Node[] = [];
  const warnings: ParseResult["warnings"] = [];
  let comments: string[] = [];
  let index = 0; // next line to read; also the 1-based number of the line just read

  const processLine = (raw: string, stripLeft: boolean): string => {
    let line = trimNewline(raw);
    if (stripLeft) line = trimLeft(line);
    state.directive(line, index, file);
    return isComment(line) ? "" : line;
  };

  while (index < lines.length) {
    const raw = lines[index++];
    if (isComment(raw)) {
      const comment = trimNewline(trimLeft(raw).slice(1)).trim();
      comments = comment === "" ? [] : [...comments, comment];
    }
    const firstLine = processLine(raw, true);
    const startLine = index;
    let [line, complete] = trimContinuation(firstLine, state);
    if (complete && line === "") continue;

    let emptyContinuation = false;
    while (!complete && index < lines.length) {
      const physical = lines[index++];
      const continued = processLine(physical, false);
      if (isComment(physical)) continue; // comments inside a continued line vanish
      if (trimLeft(continued) === "") {
        emptyContinuation = true;
        continue;
      }
      let part: string;
      [part, complete] = trimContinuation(continued, state);
      line += part;
    }
    if (emptyContinuation) {
      warnings.push({ message: "empty continuation line", line: startLine });
    }

    const location: SourceRange = { file, line: startLine, endLine: index };
    state.location = location;
    state.sourceLine = trimNewline(raw);
    const node = nodeFromLine(line, state, comments, location, state.sourceLine);
    if (canContainHeredoc(node) && line.includes("<<")) {
      for (const heredoc of heredocsFromLine(line, location)) {
        let terminated = false;
        while (index < lines.length) {
          const bodyLine = lines[index++];
          let candidate = trimNewline(bodyLine);
          if (heredoc.chomp) candidate = candidate.replace(/^\t+/, "");
          if (candidate === heredoc.name) {
            terminated = true;
            break;
          }
          heredoc.content += heredoc.chomp ? bodyLine.replace(/^\t+/, "") : bodyLine;
        }
        if (!terminated) {
          throw new DockerfileError(`unterminated heredoc: no line "${heredoc.name}" ends it`, {
            ...location,
            endLine: index,
          });
        }
        node.heredocs.push(heredoc);
      }
      node.endLine = index;
    }
    children.push(node);
    comments = [];
  }

  if (children.length === 0) {
    throw new DockerfileError("file with no instructions", { file, line: Math.max(index, 1) });
  }
  return { file, children, escapeToken: state.escapeToken, directives: state.directives, warnings };
}

function trimContinuation(line: string, state: ParserState): [string, boolean] {
  if (state.continuation.test(line)) return [line.replace(state.continuation, "$1"), false];
  return [line, true];
}

function newNode(value: string, next?: Node): Node {
  return {
    value,
    next,
    children: [],
    heredocs: [],
    attributes: {},
    original: "",
    flags: [],
    startLine: 0,
    endLine: 0,
    sourceLine: "",
    comments: [],
  };
}

function nodeFromLine(
  line: string,
  state: ParserState,
  comments: string[],
  location: SourceRange,
  sourceLine: string,
): Node {
  const { command, flags, args } = splitCommand(line);
  const parseArguments = ARGUMENT_PARSERS[command.toLowerCase()] ?? (() => ({}));
  let parsed: ReturnType<ArgumentParser>;
  try {
    parsed = parseArguments(args, state);
  } catch (error) {
    if (error instanceof DockerfileError) throw error;
    throw new DockerfileError((error as Error).message, location);
  }
  const node = newNode(command, parsed.next);
  node.original = line;
  node.flags = flags;
  node.attributes = parsed.json ? { json: true } : {};
  node.comments = comments;
  node.startLine = location.line;
  node.endLine = location.endLine ?? location.line;
  node.sourceLine = sourceLine;
  if (node.next) propagateLocation(node.next, node);
  return node;
}

/** ONBUILD's child node shares its parent's lines. */
function propagateLocation(node: Node | undefined, parent: Node) {
  for (let n = node; n; n = n.next) {
    for (const child of n.children) {
      child.startLine = parent.startLine;
      child.endLine = parent.endLine;
      child.sourceLine = parent.sourceLine;
      propagateLocation(child.next, parent);
    }
  }
}

/** `CMD --flag=x args` → command, flags (each `--name[=value]`), the rest. */
function splitCommand(line: string): { command: string; flags: string[]; args: string } {
  const [command, rest] = splitOnce(line.trim(), WHITESPACE);
  if (rest === undefined) return { command, flags: [], args: "" };
  const { flags, remainder } = extractFlags(rest);
  return { command, flags, args: remainder.trim() };
}

function splitOnce(text: string, separator: RegExp): [string, string?] {
  const match = separator.exec(text);
  if (!match) return [text];
  return [text.slice(0, match.index), text.slice(match.index + match[0].length)];
}

/** Reads leading `--flag` words (quotes and `\` allowed inside them); `--` ends the flags. */
function extractFlags(line: string): { flags: string[]; remainder: string } {
  const flags: string[] = [];
  let pos = 0;
  for (;;) {
    while (pos < line.length && isSpace(line[pos])) pos++;
    if (pos >= line.length) return { flags, remainder: "" };
    if (!line.startsWith("--", pos)) return { flags, remainder: line.slice(pos) };
    let word = "";
    let quote = "";
    let quotedSomething = false;
    for (; pos < line.length; pos++) {
      const ch = line[pos];
      if (quote) {
        if (ch === quote) quote = "";
        else if (ch === "\\" && pos + 1 < line.length) word += line[++pos];
        else if (ch !== "\\") word += ch;
        continue;
      }
      if (isSpace(ch)) break;
      if (ch === "'" || ch === '"') {
        quote = ch;
        quotedSomething = true;
      } else if (ch === "\\") {
        if (pos + 1 < line.length) word += line[++pos];
      } else {
        word += ch;
      }
    }
    if (word === "--") return { flags, remainder: line.slice(pos) };
    if (word.length > 0 || quotedSomething) flags.push(word);
  }
}

/**
 * Splits on whitespace outside quotes, keeping quotes and escapes in the words (they are
 * removed later by expansion). The escape token escapes anything outside single quotes.
 */
export function parseWords(rest: string, escapeToken: string): string[] {
  const words: string[] = [];
  const chars = Array.from(rest);
  let word = "";
  let inWord = false;
  let quote = "";
  let blankOk = false;
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i];
    if (!inWord) {
      if (isSpace(ch)) continue;
      inWord = true;
    }
    if (quote === "") {
      if (isSpace(ch)) {
        if (blankOk || word.length > 0) words.push(word);
        word = "";
        blankOk = false;
        inWord = false;
        continue;
      }
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOk = true;
      }
      if (ch === escapeToken) {
        if (i + 1 === chars.length) continue; // an escape at the end is dropped
        word += ch + chars[++i];
        continue;
      }
      word += ch;
      continue;
    }
    if (ch === quote) {
      quote = "";
    } else if (ch === escapeToken && quote !== "'") {
      if (i + 1 === chars.length) {
        quote = "";
        continue;
      }
      word += ch;
      i++;
      word += chars[i];
      continue;
    }
    word += ch;
  }
  if (inWord && (blankOk || word.length > 0)) words.push(word);
  return words;
}

function chain(values: string[]): Node | undefined {
  let head: Node | undefined;
  for (let i = values.length - 1; i >= 0; i--) head = newNode(values[i], head);
  return head;
}

const parseString: ArgumentParser = (rest) => (rest === "" ? {} : { next: newNode(rest) });

const parseWhitespaceDelimited: ArgumentParser = (rest) =>
  rest === "" ? {} : { next: chain(rest.split(WHITESPACE)) };

class NotStringArrayError extends Error {
  constructor() {
    super("when using JSON array syntax, arrays must be comprised of strings only");
  }
}

/** A JSON array of strings, or undefined when the text is not a JSON array at all. */
function parseJsonArray(rest: string): string[] | undefined {
  const text = trimLeft(rest);
  if (!text.startsWith("[")) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!Array.isArray(parsed)) return undefined;
  if (!parsed.every((item) => typeof item === "string")) throw new NotStringArrayError();
  return parsed as string[];
}

/** RUN, CMD, ENTRYPOINT, SHELL: a JSON array (exec form) or the whole rest (shell form). */
const parseMaybeJson: ArgumentParser = (rest) => {
  if (rest === "") return {};
  const array = parseJsonArray(rest);
  if (array) return { next: chain(array), json: true };
  return { next: newNode(rest) };
};

/** COPY, ADD, VOLUME: a JSON array or whitespace-separated words. */
const parseMaybeJsonToList: ArgumentParser = (rest, state) => {
  const array = parseJsonArray(rest);
  if (array) return { next: chain(array), json: true };
  return parseWhitespaceDelimited(rest, state);
};

/** ENV and LABEL: `key value` (old form) or `key=value ...`; nodes are key, value, separator. */
function parseNameValue(rest: string, instruction: string, state: ParserState) {
  const words = parseWords(rest, state.escapeToken);
  if (words.length === 0) return {};
  if (!words[0].includes("=")) {
    const [key, value] = splitOnce(rest, WHITESPACE);
    if (value === undefined || value === "") {
      throw new Error(`${instruction} must have two arguments`);
    }
    return { next: chain([key, value, ""]) };
  }
  const values: string[] = [];
  for (const word of words) {
    const eq = word.indexOf("=");
    if (eq < 0) {
      throw new Error(`Syntax error - can't find = in ${JSON.stringify(word)}. Must be of the form: name=value`);
    }
    values.push(word.slice(0, eq), word.slice(eq + 1), "=");
  }
  return { next: chain(values) };
}

/** ARG: words, each `name` or `name=value`. */
const parseNameOrNameValue: ArgumentParser = (rest, state) => ({
  next: chain(parseWords(rest, state.escapeToken)),
});

/** HEALTHCHECK: a type word (CMD, NONE, …) then a command in either form. */
const parseHealthcheck: ArgumentParser = (rest, state) => {
  const [type, command] = splitOnce(rest, /\s+/u);
  if (type === "") return {};
  const parsed = parseMaybeJson(command ?? "", state);
  return { next: newNode(type, parsed.next), json: parsed.json };
};

/** ONBUILD: the rest is an instruction of its own. */
const parseOnbuild: ArgumentParser = (rest, state) => {
  if (rest === "") return {};
  const child = nodeFromLine(rest, state, [], state.location, state.sourceLine);
  const holder = newNode("");
  holder.children = [child];
  return { next: holder };
};

const ARGUMENT_PARSERS: Record<string, ArgumentParser> = {
  add: parseMaybeJsonToList,
  arg: parseNameOrNameValue,
  cmd: parseMaybeJson,
  copy: parseMaybeJsonToList,
  entrypoint: parseMaybeJson,
  env: (rest, state) => parseNameValue(rest, "ENV", state),
  expose: parseWhitespaceDelimited,
  from: parseWhitespaceDelimited,
  healthcheck: parseHealthcheck,
  label: (rest, state) => parseNameValue(rest, "LABEL", state),
  maintainer: parseString,
  onbuild: parseOnbuild,
  run: parseMaybeJson,
  shell: parseMaybeJson,
  stopsignal: parseString,
  user: parseString,
  volume: parseMaybeJsonToList,
  workdir: parseString,
};

const HEREDOC_INSTRUCTIONS = new Set(["add", "copy", "run"]);

function canContainHeredoc(node: Node): boolean {
  let target = node;
  if (target.value.toLowerCase() === "onbuild" && target.next?.children[0]) {
    target = target.next.children[0];
  }
  return HEREDOC_INSTRUCTIONS.has(target.value.toLowerCase()) && !target.attributes.json;
}

/** Finds `<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF` words in an instruction line. */
function heredocsFromLine(line: string, location: SourceRange): Heredoc[] {
  const noVariables = () => undefined;
  let words: string[];
  try {
    words = expand(line, noVariables, { rawQuotes: true, rawEscapes: true }).words;
  } catch {
    return [];
  }
  const heredocs: Heredoc[] = [];
  for (const word of words) {
    const match = HEREDOC_PATTERN.exec(word);
    if (!match) continue;
    const [, fd, chomp, rest] = match;
    if (rest === "") {
      throw new DockerfileError(`heredoc "${word}" has no delimiter word`, location);
    }
    let name: string;
    try {
      name = expand(rest, noVariables).word;
    } catch (error) {
      throw new DockerfileError(`invalid heredoc delimiter ${rest}: ${(error as Error).message}`, location);
    }
    if (name === "") throw new DockerfileError(`heredoc "${word}" has an empty delimiter`, location);
    heredocs.push({
      name,
      content: "",
      expand: name === rest,
      chomp: chomp === "-",
      fileDescriptor: fd === "" ? 0 : Number(fd),
    });
  }
  return heredocs;
}

/** Go's strconv.Quote, so dumps compare with BuildKit's `result` files. */
export function goQuote(text: string): string {
  let out = '"';
  for (const ch of text) {
    const code = ch.codePointAt(0)!;
    if (ch === '"' || ch === "\\") out += "\\" + ch;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\x07") out += "\\a";
    else if (ch === "\b") out += "\\b";
    else if (ch === "\f") out += "\\f";
    else if (ch === "\v") out += "\\v";
    else if (code < 0x20 || code === 0x7f) out += "\\x" + code.toString(16).padStart(2, "0");
    else if (/^[\p{C}\p{Zl}\p{Zp}]$/u.test(ch) || (/^\p{Z}$/u.test(ch) && ch !== " ")) {
      out += code > 0xffff ? "\\U" + code.toString(16).padStart(8, "0") : "\\u" + code.toString(16).padStart(4, "0");
    } else out += ch;
  }
  return out + '"';
}

/** BuildKit's dump of one instruction: `(cmd ["--flag"] "arg" "arg")`. */
export function dumpNode(node: Node): string {
  return `(${dumpInner(node)})`;
}

function dumpInner(node: Node): string {
  let text = node.value.toLowerCase();
  if (node.flags.length > 0) text += ` [${node.flags.map(goQuote).join(" ")}]`;
  for (const child of node.children) text += `(${dumpInner(child)})\n`;
  for (let n = node.next; n; n = n.next) {
    text += n.children.length > 0 ? " " + dumpInner(n) : " " + goQuote(n.value);
  }
  return text.trim();
}
