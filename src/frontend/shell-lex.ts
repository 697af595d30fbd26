/**
 * Word expansion with BuildKit's semantics (moby/buildkit frontend/dockerfile/shell).
 *
 * This is not a shell: it understands quotes, the escape token and `$VAR` / `${VAR…}`
 * parameter expansion, and nothing else (no command substitution, no globbing). Written here
 * because no library implements BuildKit's exact quoting rules; the conformance suites in
 * ../shared/conformance/buildkit-shell decide correctness.
 */

/** Variables visible to an expansion. `undefined` means unset; "" means set but empty. */
import { RE2JS } from "re2js";
export type EnvLookup = (name: string) => string | undefined;

export interface LexOptions {
  /** `\` by default; the `# escape=` directive may change it to a backtick. */
  escapeToken?: string;
  /** Keep quote characters in the output (used to find heredoc words). */
  rawQuotes?: boolean;
  /** Keep escape tokens in the output. */
  rawEscapes?: boolean;
  /** Treat quotes as ordinary characters (heredoc bodies: variables expand, quotes stay). */
  skipQuotes?: boolean;
}

export interface WordResult {
  /** The expanded word (ProcessWord). */
  word: string;
  /** The expansion split into words (ProcessWords). */
  words: string[];
  /** Names of the variables the expansion looked up and found set. */
  matched: Set<string>;
  /** Names of the variables it looked up and found unset. */
  unmatched: Set<string>;
  /** Of those, the ones read plainly ($NAME, ${NAME}), without a default or alternative to fall back on. */
  undefinedPlain: Set<string>;
}

export class ExpansionError extends Error {}

export function envFromMap(map: ReadonlyMap<string, string> | Record<string, string>): EnvLookup {
  if (map instanceof Map) return (name) => map.get(name);
  const record = map as Record<string, string>;
  return (name) => (Object.hasOwn(record, name) ? record[name] : undefined);
}

/** Expands one word: quotes removed, variables substituted, whitespace kept. */
export function expandWord(source: string, env: EnvLookup, options: LexOptions = {}): string {
  return expand(source, env, options).word;
}

/** Expands and splits into words the way a shell's field splitting would. */
export function expandWords(source: string, env: EnvLookup, options: LexOptions = {}): string[] {
  return expand(source, env, options).words;
}

export function expand(source: string, env: EnvLookup, options: LexOptions = {}): WordResult {
  // Most words have nothing to expand; they need no lexer (this halves planning time).
  const escapeToken = options.escapeToken ?? "\\";
  if (!source.includes("$") && !source.includes(escapeToken) && !/['"]/.test(source)) {
    const words = source.split(/\s+/u).filter((w) => w !== "");
    return { word: source, words, matched: new Set(), unmatched: new Set(), undefinedPlain: new Set() };
  }
  const lexer = new WordLexer(source, env, options);
  try {
    const { word, words } = lexer.processUntil(undefined, lexer.rawEscapes);
    return { word, words, matched: lexer.matched, unmatched: lexer.unmatched, undefinedPlain: lexer.undefinedPlain };
  } catch (error) {
    if (error instanceof ExpansionError) {
      throw new ExpansionError(`failed to process ${JSON.stringify(source)}: ${error.message}`);
    }
    throw error;
  }
}

const isSpace = (ch: string) => /^\s$/u.test(ch);
const isDigit = (ch: string) => /^\p{Nd}$/u.test(ch);
const isNameChar = (ch: string) => /^[\p{L}\p{Nd}_]$/u.test(ch);
const SPECIAL_PARAMETERS = new Set(["@", "*", "#", "?", "-", "$", "!", "0"]);

/** Collects output both as one string and as shell-split words. */
class WordCollector {
  words: string[] = [];
  private current = "";
  private inWord = false;

  /** A character that field splitting may break on. */
  addChar(ch: string) {
    if (isSpace(ch)) {
      if (this.inWord && this.current.length > 0) {
        this.words.push(this.current);
        this.current = "";
        this.inWord = false;
      }
    } else {
      this.addRawChar(ch);
    }
  }
  /** A character that is part of the word whatever it is (escaped or quoted). */
  addRawChar(ch: string) {
    this.current += ch;
    this.inWord = true;
  }
  addString(text: string) {
    for (const ch of text) this.addChar(ch);
  }
  addRawString(text: string) {
    this.current += text;
    this.inWord = true;
  }
  finish(): string[] {
    if (this.current.length > 0) {
      this.words.push(this.current);
      this.current = "";
      this.inWord = false;
    }
    return this.words;
  }
}

class WordLexer {
  private readonly chars: string[];
  private pos = 0;
  readonly escapeToken: string;
  readonly rawQuotes: boolean;
  readonly rawEscapes: boolean;
  readonly skipQuotes: boolean;
  readonly matched = new Set<string>();
  readonly unmatched = new Set<string>();
  readonly undefinedPlain = new Set<string>();

  constructor(
    source: string,
    private readonly env: EnvLookup,
    options: LexOptions,
  ) {
    this.chars = Array.from(source);
    this.escapeToken = options.escapeToken ?? "\\";
    this.rawQuotes = options.rawQuotes ?? false;
    this.rawEscapes = options.rawEscapes ?? false;
    this.skipQuotes = options.skipQuotes ?? false;
  }

  private peek(): string | undefined {
    return this.chars[this.pos];
  }
  private next(): string | undefined {
    return this.chars[this.pos++];
  }

  /** A plain reference: a name with nothing to fall back on when it is unset. */
  private plain(name: string): string {
    const value = this.lookup(name);
    if (value === undefined) this.undefinedPlain.add(name);
    return value ?? "";
  }

  private lookup(name: string): string | undefined {
    const value = this.env(name);
    if (value === undefined) this.unmatched.add(name);
    else this.matched.add(name);
    return value;
  }

  /** Reads until `stop` (consumed) or the end of input when `stop` is undefined. */
  processUntil(stop: string | undefined, rawEscapes: boolean): { word: string; words: string[] } {
    let result = "";
    const words = new WordCollector();
    while (this.peek() !== undefined) {
      const ch = this.peek()!;
      if (stop !== undefined && ch === stop) {
        this.next();
        return { word: result, words: words.finish() };
      }
      if (ch === "$" || (!this.skipQuotes && (ch === "'" || ch === '"'))) {
        const text = ch === "'" ? this.singleQuoted() : ch === '"' ? this.doubleQuoted() : this.dollar();
        result += text;
        if (ch === "$") words.addString(text);
        else words.addRawString(text);
        continue;
      }
      let current = this.next()!;
      if (current === this.escapeToken) {
        if (rawEscapes) {
          words.addRawChar(current);
          result += current;
        }
        const escaped = this.next();
        if (escaped === undefined) break; // an escape at the very end is dropped
        current = escaped;
        words.addRawChar(current);
      } else {
        words.addChar(current);
      }
      result += current;
    }
    if (stop !== undefined) {
      throw new ExpansionError(`unexpected end of statement while looking for matching ${stop}`);
    }
    return { word: result, words: words.finish() };
  }

  /** '…': everything literal, no escapes at all. */
  private singleQuoted(): string {
    let result = "";
    const open = this.next()!;
    if (this.rawQuotes) result += open;
    for (;;) {
      const ch = this.next();
      if (ch === undefined) {
        throw new ExpansionError("unexpected end of statement while looking for matching single-quote");
      }
      if (ch === "'") {
        if (this.rawQuotes) result += ch;
        return result;
      }
      result += ch;
    }
  }

  /** "…": `$` expands; the escape token only escapes `"`, `$` and itself. */
  private doubleQuoted(): string {
    let result = "";
    const open = this.next()!;
    if (this.rawQuotes) result += open;
    for (;;) {
      const ch = this.peek();
      if (ch === undefined) {
        throw new ExpansionError("unexpected end of statement while looking for matching double-quote");
      }
      if (ch === '"') {
        this.next();
        if (this.rawQuotes) result += ch;
        return result;
      }
      if (ch === "$") {
        result += this.dollar();
        continue;
      }
      let current = this.next()!;
      if (current === this.escapeToken) {
        if (this.rawEscapes) result += current;
        const following = this.peek();
        if (following === undefined) continue; // a trailing escape is dropped
        if (following === '"' || following === "$" || following === this.escapeToken) {
          current = this.next()!;
        }
      }
      result += current;
    }
  }

  private dollar(): string {
    this.next(); // the '$'
    if (this.peek() !== "{") {
      const name = this.name();
      if (name === "") return "$";
      return this.plain(name);
    }
    this.next(); // the '{'
    const first = this.peek();
    if (first === undefined) throw new ExpansionError("syntax error: missing '}'");
    if (first === "{" || first === "}" || first === ":") {
      throw new ExpansionError("syntax error: bad substitution");
    }
    const name = this.name();
    let modifier = this.next();
    if (modifier === undefined) throw new ExpansionError("syntax error: missing '}'");
    if (modifier === "}") return this.plain(name);

    if (modifier === "/") return this.substitute(name);

    let modifierText = modifier;
    let nullIsUnset = false;
    if (modifier === ":") {
      nullIsUnset = true;
      modifier = this.next();
      if (modifier === undefined) throw new ExpansionError("syntax error: missing '}'");
      modifierText += modifier;
    } else if (!"+-?#%".includes(modifier)) {
      throw new ExpansionError(`unsupported modifier (${modifierText}) in substitution`);
    }
    const isTrim = modifier === "#" || modifier === "%";
    if (nullIsUnset && isTrim) {
      throw new ExpansionError(`unsupported modifier (${modifierText}) in substitution`);
    }
    let word: string;
    try {
      word = this.processUntil("}", isTrim).word;
    } catch (error) {
      if (this.peek() === undefined) throw new ExpansionError("syntax error: missing '}'");
      throw error;
    }
    const value = this.lookup(name);
    const unsetOrNull = value === undefined || (nullIsUnset && value === "");
    switch (modifier) {
      case "-":
        return unsetOrNull ? word : value!;
      case "+":
        return unsetOrNull ? "" : word;
      case "?":
        if (value === undefined) throw new ExpansionError(`${name}: ${word || "is not allowed to be unset"}`);
        if (nullIsUnset && value === "") {
          throw new ExpansionError(`${name}: ${word || "is not allowed to be empty"}`);
        }
        return value;
      case "#":
      case "%": {
        // `#`/`%` remove the shortest match, `##`/`%%` the longest.
        const greedy = word.startsWith(modifier);
        const pattern = greedy ? word.slice(1) : word;
        return modifier === "#"
          ? trimPrefix(pattern, value ?? "", greedy)
          : trimSuffix(pattern, value ?? "", greedy);
      }
      default:
        throw new ExpansionError(`unsupported modifier (${modifierText}) in substitution`);
    }
  }

  /** `${name/pattern/replacement}` and `${name//pattern/replacement}`. */
  private substitute(name: string): string {
    const replaceAll = this.peek() === "/";
    if (replaceAll) this.next();
    let pattern: string;
    let replacement: string;
    try {
      pattern = this.processUntil("/", true).word;
    } catch (error) {
      if (this.peek() === undefined) throw new ExpansionError("syntax error: missing '/' in ${}");
      throw error;
    }
    try {
      replacement = this.processUntil("}", true).word;
    } catch (error) {
      if (this.peek() === undefined) throw new ExpansionError("syntax error: missing '}'");
      throw error;
    }
    const value = this.lookup(name) ?? "";
    const matcher = shellPatternToRegExp(pattern, true, false).matcher(value);
    return replaceAll ? matcher.replaceAll(() => replacement) : matcher.replaceFirst(() => replacement);
  }

  /** A variable name: letters, digits and `_`; or all digits; or one special parameter. */
  private name(): string {
    let name = "";
    while (this.peek() !== undefined) {
      const ch = this.peek()!;
      if (name === "" && isDigit(ch)) {
        while (this.peek() !== undefined && isDigit(this.peek()!)) name += this.next();
        return name;
      }
      if (name === "" && SPECIAL_PARAMETERS.has(ch)) {
        return this.next()!;
      }
      if (!isNameChar(ch)) break;
      name += this.next();
    }
    return name;
  }
}

/**
 * Converts a shell pattern (`*`, `?`, `\` escapes) to a regular expression, run by RE2JS: the
 * pattern comes from a Dockerfile, and `a*a*a*…b` would take a backtracking engine (JS RegExp)
 * exponential time; RE2 is linear, as Go's regexp that BuildKit uses.
 */
function shellPatternToRegExp(pattern: string, greedy: boolean, anchored: boolean): RE2JS {
  let out = anchored ? "^" : "";
  const chars = Array.from(pattern);
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i];
    if (ch === "*") {
      out += greedy ? ".*" : ".*?";
    } else if (ch === "?") {
      out += ".";
    } else if (ch === "\\") {
      // `\}` inside ${} only escapes the brace for the lexer; it is not part of the pattern.
      if (chars[i + 1] === "}") continue;
      const escaped = chars[++i];
      if (escaped !== "*" && escaped !== "?" && escaped !== "\\") {
        throw new ExpansionError(`invalid pattern (${pattern}) in substitution: invalid escape '\\${escaped ?? ""}'`);
      }
      out += "\\" + escaped;
    } else {
      out += ch.replace(/[[\]{}.+()|^$/]/g, "\\$&");
    }
  }
  return RE2JS.compile(out);
}

function trimPrefix(pattern: string, value: string, greedy: boolean): string {
  const matcher = shellPatternToRegExp(pattern, greedy, true).matcher(value);
  return matcher.find() ? value.slice(matcher.end()) : value;
}

/** Reverses a pattern while keeping each escape before the character it escapes. */
function reversePattern(pattern: string): string {
  const chars = Array.from(pattern);
  const tokens: string[] = [];
  for (let i = 0; i < chars.length; i++) {
    if (chars[i] === "\\" && i !== chars.length - 1) tokens.push(chars[i] + chars[++i]);
    else tokens.push(chars[i]);
  }
  return tokens.reverse().join("");
}

const reverseString = (text: string) => Array.from(text).reverse().join("");

/** The shortest (or longest) matching suffix is the matching prefix of the reversed value. */
function trimSuffix(pattern: string, value: string, greedy: boolean): string {
  return reverseString(trimPrefix(reversePattern(pattern), reverseString(value), greedy));
}
