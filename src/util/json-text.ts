/**
 * JSON from files that may hold anything (a config file linked to a token file, a layout's
 * index.json): parsed, and when it is not JSON, the error says where (line and column), never
 * what is there. JSON.parse's own messages quote the text ("Unexpected identifier "ghp_…"").
 */
import { UserError } from "../errors.ts";

export class JsonTextError extends UserError {}

/** Parses `text`; a mistake is reported as "WHAT: not valid JSON (line L, column C)". */
export function parseJsonText(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new JsonTextError(`${what}: not valid JSON (${position(text, errorOffset(text))}); its content is not shown`);
  }
}

function position(text: string, offset: number): string {
  const before = text.slice(0, offset);
  const line = before.split("\n").length;
  return `line ${line}, column ${offset - before.lastIndexOf("\n")}`;
}

/** The offset of the first character where `text` stops being JSON (RFC 8259), by a small scanner. */
export function errorOffset(text: string): number {
  let at = 0;
  const fail = (): never => {
    throw at;
  };
  const space = () => {
    while (at < text.length && " \t\n\r".includes(text[at])) at++;
  };
  const literal = (word: string) => {
    for (const ch of word) if (text[at++] !== ch) (at--, fail());
  };
  const string = () => {
    at++; // the opening quote
    for (;;) {
      const ch = text[at];
      if (ch === undefined || ch < " ") fail();
      if (ch === '"') return void at++;
      if (ch !== "\\") { at++; continue; }
      at++;
      if (text[at] === "u") {
        at++;
        for (let i = 0; i < 4; i++, at++) if (!/[0-9a-fA-F]/.test(text[at] ?? "")) fail();
      } else if ('"\\/bfnrt'.includes(text[at] ?? "x")) at++;
      else fail();
    }
  };
  const number = () => {
    const match = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(at, at + 400));
    if (!match || match[0] === "" || match[0] === "-") fail();
    at += match![0].length;
  };
  const list = (close: string, item: () => void) => {
    at++;
    space();
    if (text[at] === close) return void at++;
    for (;;) {
      item();
      space();
      if (text[at] === close) return void at++;
      if (text[at] !== ",") fail();
      at++;
    }
  };
  let depth = 0;
  const value = (): void => {
    space();
    // JSON.parse refused the text already; past this depth only the place is wanted, not a stack overflow.
    if (++depth > 2000) fail();
    const ch = text[at];
    if (ch === "{") list("}", () => (space(), text[at] === '"' ? string() : fail(), space(), text[at] === ":" ? at++ : fail(), value()));
    else if (ch === "[") list("]", value);
    else if (ch === '"') string();
    else if (ch === "t") literal("true");
    else if (ch === "f") literal("false");
    else if (ch === "n") literal("null");
    else if (ch === "-" || (ch >= "0" && ch <= "9")) number();
    else fail();
    depth--;
  };
  try {
    value();
    space();
    if (at < text.length) fail();
    return text.length;
  } catch (offset) {
    if (typeof offset !== "number") throw offset;
    return Math.min(offset, text.length);
  }
}
