/**
 * `.dockerignore` with Docker's semantics (moby/patternmatcher and its ignorefile reader):
 * patterns are cleaned and anchored at the context root, `*` and `?` never cross `/`, `**`
 * spans directories, a path is excluded when it or a parent directory matches, patterns apply
 * in order and the last match wins, and `!` re-includes.
 *
 * Written here rather than taken from `@balena/dockerignore` because the walker and
 * `memobuild context ls` need two things that library does not expose: which pattern (and
 * line) decided a path, and whether an exception could match below an excluded directory.
 */
import { RE2JS } from "re2js";
import { posix } from "node:path";

export interface IgnorePattern {
  /** The cleaned pattern, without the leading `!`. */
  pattern: string;
  exclusion: boolean;
  /** Where it came from, for messages: `FILE:LINE`. */
  source?: { file: string; line: number };
}

export class IgnorePatternError extends Error {}

const UTF8_BOM = "\uFEFF";

/** Parses a .dockerignore file's text into patterns, the way Docker's ignorefile reader does. */
export function parseIgnoreFile(text: string, file = ".dockerignore"): IgnorePattern[] {
  const patterns: IgnorePattern[] = [];
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, index) => {
    const line = index === 0 && raw.startsWith(UTF8_BOM) ? raw.slice(1) : raw;
    if (line.startsWith("#")) return;
    let pattern = line.trim();
    if (pattern === "") return;
    const exclusion = pattern.startsWith("!");
    if (exclusion) pattern = pattern.slice(1).trim();
    if (pattern.length > 0) {
      pattern = posix.normalize(pattern);
      if (pattern.length > 1 && pattern.endsWith("/")) pattern = pattern.slice(0, -1);
      if (pattern.length > 1 && pattern.startsWith("/")) pattern = pattern.slice(1);
    }
    patterns.push({ pattern, exclusion, source: { file, line: index + 1 } });
  });
  return patterns;
}

/** Go's filepath.Clean for a relative-or-absolute slash path. */
function cleanPath(path: string): string {
  if (path === "") return ".";
  let cleaned = posix.normalize(path);
  if (cleaned.length > 1 && cleaned.endsWith("/")) cleaned = cleaned.slice(0, -1);
  return cleaned;
}

/** Go's filepath.Dir: everything before the last slash, cleaned ("a/b/" → "a/b"). */
function goDir(path: string): string {
  const slash = path.lastIndexOf("/");
  return cleanPath(slash < 0 ? "" : path.slice(0, slash + 1));
}

type MatchType = "exact" | "prefix" | "suffix" | "regexp";

const REGEXP_SPECIAL = new Set([".", "+", "(", ")", "|", "{", "}", "$"]);

class CompiledPattern {
  readonly cleaned: string;
  readonly exclusion: boolean;
  readonly dirs: string[];
  readonly matchType: MatchType;
  /** RE2JS, not RegExp: Docker matches with Go's linear-time regexp, and a pattern like `a*a*a*…b` would make a backtracking engine take exponential time on every path. */
  readonly regexp?: RE2JS;
  /** The same pattern matching the path or any parent directory of it, in one linear pass. */
  readonly regexpOrParent?: RE2JS;

  constructor(readonly origin: IgnorePattern) {
    this.exclusion = origin.exclusion;
    this.cleaned = cleanPath(origin.pattern);
    this.dirs = this.cleaned.split("/");
    const { matchType, source } = translate(this.cleaned);
    this.matchType = matchType;
    if (matchType === "regexp") {
      try {
        this.regexp = RE2JS.compile(source);
        this.regexpOrParent = RE2JS.compile(`${source.slice(0, -1)}(?:/(?s:.*))?$`);
      } catch (error) {
        throw new IgnorePatternError(`invalid pattern ${JSON.stringify(origin.pattern)}: ${(error as Error).message}`);
      }
    }
  }

  match(path: string): boolean {
    switch (this.matchType) {
      case "exact":
        return path === this.cleaned;
      case "prefix":
        return path.startsWith(this.cleaned.slice(0, -2));
      case "suffix": {
        const suffix = this.cleaned.slice(2);
        if (path.endsWith(suffix)) return true;
        // `**/foo` matches "foo" at the root too.
        return suffix.startsWith("/") && path === suffix.slice(1);
      }
      case "regexp":
        return this.regexp!.matches(path);
    }
  }
}

/** Translates a pattern to a regular expression, noting when a cheaper comparison suffices. */
function translate(pattern: string): { matchType: MatchType; source: string } {
  const chars = Array.from(pattern);
  let source = "^";
  let matchType: MatchType = "exact";
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i];
    if (ch === "*") {
      if (chars[i + 1] === "*") {
        const atStart = i === 0;
        i++;
        if (chars[i + 1] === "/") i++; // `**/` is treated as `**`
        if (i + 1 >= chars.length) {
          // `**` at the end accepts everything below, as .gitignore does.
          if (matchType === "exact") matchType = "prefix";
          else {
            source += ".*";
            matchType = "regexp";
          }
        } else {
          // Non-capturing: with hundreds of groups, RE2 copies every capture per step.
          source += "(?:.*/)?";
          matchType = "regexp";
        }
        if (atStart) matchType = "suffix";
      } else {
        source += "[^/]*";
        matchType = "regexp";
      }
    } else if (ch === "?") {
      source += "[^/]";
      matchType = "regexp";
    } else if (REGEXP_SPECIAL.has(ch)) {
      source += "\\" + ch;
    } else if (ch === "\\") {
      if (i + 1 < chars.length) {
        source += "\\" + chars[++i];
        matchType = "regexp";
      } else {
        source += "\\\\";
      }
    } else if (ch === "[" || ch === "]") {
      source += ch;
      matchType = "regexp";
    } else if (ch === "^") {
      // Go's regexp reads a bare ^ as an anchor that cannot match here; keep that behaviour.
      source += "^";
    } else {
      source += ch;
    }
  }
  return { matchType, source: source + "$" };
}

export interface MatchResult {
  excluded: boolean;
  /** The last pattern that matched the path or a parent, if any. */
  decidedBy?: IgnorePattern;
}

export class IgnoreMatcher {
  private readonly patterns: CompiledPattern[];
  readonly hasExclusions: boolean;

  constructor(patterns: IgnorePattern[]) {
    this.patterns = patterns.map((p) => {
      const where = p.source ? `${p.source.file}:${p.source.line}: ` : "";
      if (p.exclusion && p.pattern === "") {
        throw new IgnorePatternError(`${where}illegal exclusion pattern: "!"`);
      }
      try {
        return new CompiledPattern(p);
      } catch (error) {
        throw new IgnorePatternError(`${where}${(error as Error).message}`);
      }
    });
    this.hasExclusions = this.patterns.some((p) => p.exclusion);
  }

  get empty(): boolean {
    return this.patterns.length === 0;
  }

  /** Docker's MatchesOrParentMatches: `path` is slash-separated and relative to the root. */
  match(path: string): MatchResult {
    let excluded = false;
    let decidedBy: IgnorePattern | undefined;
    const parent = goDir(path);
    const parentDirs = parent === "." ? [] : parent.split("/");
    for (const pattern of this.patterns) {
      // An exclusion only matters once something matched; an inclusion only before.
      if (pattern.exclusion !== excluded) continue;
      let matched = pattern.match(path);
      if (!matched && pattern.regexpOrParent && parentDirs.length > 0) {
        // The parents are exactly the prefixes of `parent` that end before a slash (or at its
        // end): one pass over `parent` instead of one per parent, n×m rather than n×m×depth.
        matched = pattern.regexpOrParent.matches(parent);
      }
      for (let i = 0; !matched && !pattern.regexpOrParent && i < parentDirs.length; i++) matched = pattern.match(parentDirs.slice(0, i + 1).join("/"));
      if (matched) {
        excluded = !pattern.exclusion;
        decidedBy = pattern.origin;
      }
    }
    return { excluded, decidedBy };
  }

  /**
   * Whether an exception (`!pattern`) could re-include something below the excluded directory
   * `dir`: the walker must then descend into it instead of skipping it.
   */
  exceptionCouldMatchBelow(dir: string): boolean {
    const components = dir.split("/");
    return this.patterns.some((p) => {
      if (!p.exclusion) return false;
      for (let i = 0; i < components.length; i++) {
        const part = p.dirs[i];
        if (part === undefined) return false; // shorter than dir: it matches dir or a parent only
        if (part.includes("**")) return true;
        if (/[*?[\\]/.test(part)) {
          if (!componentMatches(part, components[i])) return false;
        } else if (part !== components[i]) return false;
      }
      return p.dirs.length > components.length;
    });
  }
}

/**
 * Whether one component of a pattern matches one path component. A component that is no
 * regular expression on its own (`a[/]b` split at its slash) might match: say so, and the
 * walker descends (it only costs a look).
 */
function componentMatches(part: string, component: string): boolean {
  try {
    return RE2JS.compile(translate(part).source).matches(component);
  } catch {
    return true;
  }
}
