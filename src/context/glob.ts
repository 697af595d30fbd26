/**
 * COPY source wildcards with the rules of Go's path/filepath.Match on Unix, which BuildKit uses
 * to expand them (and its `containsWildcards` to decide whether a path is a pattern at all):
 *
 *   `*` any run of bytes without `/`;  `?` one character (UTF-8 rune), not `/`;
 *   `[...]` one character in the class, `[^...]` one not in it (`!` is an ordinary character);
 *   `lo-hi` a range (an empty range such as `c-a` matches nothing, it is not an error);
 *   `\c` the character c, inside or outside a class.
 *
 * A malformed pattern (a class that is empty, unclosed, starts with `-` or `]`, or a range with a
 * missing end; a trailing `\`) is refused as a whole, as Go's ErrBadPattern, wherever it stands.
 * Patterns and names are compared as bytes, characters decoded as Go decodes runes, so names
 * that are not valid UTF-8 match as they do in BuildKit. Matching is a linear scan per `*` (no
 * backtracking engine): the pattern is the Dockerfile's.
 */

const SLASH = 0x2f;
const BACKSLASH = 0x5c;
const RUNE_ERROR = 0xfffd;

export class BadPatternError extends Error {}

type Token = { kind: "byte"; byte: number } | { kind: "char" } | { kind: "class"; negated: boolean; ranges: number[] };

/** A run of tokens and whether a `*` comes before it (Go's "chunk"). */
interface Chunk {
  star: boolean;
  tokens: Token[];
}

export interface Glob {
  /** Whether `name` (text, or the raw bytes of a file name) matches. */
  matches(name: string | Uint8Array): boolean;
  /** The same for a byte string (one character per byte, as context paths are kept). */
  matchesRaw(name: string): boolean;
}

/** True when `path` is a pattern for BuildKit: a `*`, `?` or `[` that no `\` escapes. */
export function hasWildcards(path: string): boolean {
  for (let i = 0; i < path.length; i++) {
    if (path[i] === "\\") i++;
    else if (path[i] === "*" || path[i] === "?" || path[i] === "[") return true;
  }
  return false;
}

/**
 * Splits a cleaned relative path where BuildKit does: the components before the first one with a
 * wildcard are a plain path (escapes and all), the rest is the pattern ("" when there is none).
 */
export function splitWildcards(path: string): { prefix: string; pattern: string } {
  const parts = path.split("/");
  const first = parts.findIndex(hasWildcards);
  if (first < 0) return { prefix: path, pattern: "" };
  return { prefix: parts.slice(0, first).join("/"), pattern: parts.slice(first).join("/") };
}

/** Compiles `pattern`; throws BadPatternError (with the reason) when Go's Match would. */
export function compileGlob(pattern: string | Uint8Array): Glob {
  const chunks = scanChunks(byteString(pattern));
  const matchesRaw = (name: string) => matchChunks(chunks, name);
  return { matches: (name) => matchesRaw(byteString(name)), matchesRaw };
}

/** Text as its UTF-8 bytes, or bytes as they are, one character per byte. */
function byteString(value: string | Uint8Array): string {
  return (typeof value === "string" ? Buffer.from(value, "utf8") : Buffer.from(value.buffer, value.byteOffset, value.byteLength)).toString("latin1");
}

/** Leading stars, then bytes up to the next `*` outside a class: Go's scanChunk, repeated. */
function scanChunks(pattern: string): Chunk[] {
  const chunks: Chunk[] = [];
  let i = 0;
  while (i < pattern.length) {
    let star = false;
    while (i < pattern.length && pattern.charCodeAt(i) === 0x2a) {
      star = true;
      i++;
    }
    let end = i;
    let inClass = false;
    for (; end < pattern.length; end++) {
      const c = pattern.charCodeAt(end);
      if (c === BACKSLASH && end + 1 < pattern.length) end++;
      else if (c === 0x5b) inClass = true;
      else if (c === 0x5d) inClass = false;
      else if (c === 0x2a && !inClass) break;
    }
    chunks.push({ star, tokens: parseChunk(pattern.slice(i, end)) });
    i = end;
  }
  return chunks;
}

function parseChunk(chunk: string): Token[] {
  const tokens: Token[] = [];
  for (let i = 0; i < chunk.length; ) {
    const c = chunk.charCodeAt(i);
    if (c === 0x3f) {
      tokens.push({ kind: "char" });
      i++;
    } else if (c === 0x5b) {
      i = parseClass(chunk, i + 1, tokens);
    } else if (c === BACKSLASH) {
      if (i + 1 >= chunk.length) throw new BadPatternError("a trailing \\ escapes nothing");
      tokens.push({ kind: "byte", byte: chunk.charCodeAt(i + 1) });
      i += 2;
    } else {
      tokens.push({ kind: "byte", byte: c });
      i++;
    }
  }
  return tokens;
}

/** The class that starts at `i` (after its `[`); returns the index after its `]`. */
function parseClass(chunk: string, i: number, tokens: Token[]): number {
  const negated = chunk.charCodeAt(i) === 0x5e;
  if (negated) i++;
  const ranges: number[] = [];
  while (!(chunk.charCodeAt(i) === 0x5d && ranges.length > 0)) {
    const lo = classChar(chunk, i);
    let hi = lo;
    i = lo.next;
    if (chunk.charCodeAt(i) === 0x2d) {
      hi = classChar(chunk, i + 1);
      i = hi.next;
    }
    ranges.push(lo.rune, hi.rune);
  }
  tokens.push({ kind: "class", negated, ranges });
  return i + 1;
}

/** One character of a class (Go's getEsc): escaped or plain, never a bare `-` or `]`, never last. */
function classChar(chunk: string, i: number): { rune: number; next: number } {
  if (i >= chunk.length) throw new BadPatternError("unclosed [");
  const c = chunk.charCodeAt(i);
  if (c === 0x2d || c === 0x5d) throw new BadPatternError(`"${chunk[i]}" where a character of a [class] is expected (escape it with \\)`);
  if (c === BACKSLASH && ++i >= chunk.length) throw new BadPatternError("unclosed [");
  const [rune, size] = runeAt(chunk, i);
  if (rune === RUNE_ERROR && size === 1) throw new BadPatternError("a [class] holds bytes that are not UTF-8");
  if (i + size >= chunk.length) throw new BadPatternError("unclosed [");
  return { rune, next: i + size };
}

function matchChunks(chunks: Chunk[], name: string): boolean {
  let pos = 0;
  for (let k = 0; k < chunks.length; k++) {
    const { star, tokens } = chunks[k];
    const last = k === chunks.length - 1;
    // A trailing star takes the rest of the name unless a slash is in it.
    if (star && tokens.length === 0) return name.indexOf("/", pos) < 0;
    let next = matchTokens(tokens, name, pos);
    if (next >= 0 && (!last || next === name.length)) {
      pos = next;
      continue;
    }
    if (!star) return false;
    // The star takes one more byte each time (never a slash); the first fit wins, as in Go.
    next = -1;
    for (let skip = pos; skip < name.length && name.charCodeAt(skip) !== SLASH; skip++) {
      const after = matchTokens(tokens, name, skip + 1);
      if (after >= 0 && (!last || after === name.length)) {
        next = after;
        break;
      }
    }
    if (next < 0) return false;
    pos = next;
  }
  return pos === name.length;
}

/** Where `tokens` matched at `pos` of `name` end, or -1. */
function matchTokens(tokens: Token[], name: string, pos: number): number {
  for (const token of tokens) {
    if (pos >= name.length) return -1;
    if (token.kind === "byte") {
      if (name.charCodeAt(pos) !== token.byte) return -1;
      pos++;
      continue;
    }
    if (token.kind === "char" && name.charCodeAt(pos) === SLASH) return -1;
    const [rune, size] = runeAt(name, pos);
    pos += size;
    if (token.kind === "class" && inClass(token.ranges, rune) === token.negated) return -1;
  }
  return pos;
}

function inClass(ranges: number[], rune: number): boolean {
  for (let r = 0; r < ranges.length; r += 2) if (ranges[r] <= rune && rune <= ranges[r + 1]) return true;
  return false;
}

/**
 * The rune at `i` and its length in bytes, as Go's utf8.DecodeRune: an invalid, overlong,
 * surrogate or truncated sequence is U+FFFD of length 1.
 */
export function decodeRune(bytes: Uint8Array, i: number): [number, number] {
  return runeAt(Buffer.from(bytes).toString("latin1"), i);
}

/** decodeRune over a byte string. */
function runeAt(bytes: string, i: number): [number, number] {
  const b0 = bytes.charCodeAt(i);
  if (b0 < 0x80) return [b0, 1];
  const size = b0 >= 0xc2 && b0 <= 0xdf ? 2 : b0 >= 0xe0 && b0 <= 0xef ? 3 : b0 >= 0xf0 && b0 <= 0xf4 ? 4 : 0;
  if (size === 0 || i + size > bytes.length) return [RUNE_ERROR, 1];
  // The second byte's allowed range excludes overlong forms, surrogates and values past U+10FFFF.
  const lo = b0 === 0xe0 ? 0xa0 : b0 === 0xf0 ? 0x90 : 0x80;
  const hi = b0 === 0xed ? 0x9f : b0 === 0xf4 ? 0x8f : 0xbf;
  const b1 = bytes.charCodeAt(i + 1);
  if (b1 < lo || b1 > hi) return [RUNE_ERROR, 1];
  let rune = b0 & (size === 2 ? 0x1f : size === 3 ? 0x0f : 0x07);
  for (let k = 1; k < size; k++) {
    const b = bytes.charCodeAt(i + k);
    if ((b & 0xc0) !== 0x80) return [RUNE_ERROR, 1];
    rune = (rune << 6) | (b & 0x3f);
  }
  return [rune, size];
}
