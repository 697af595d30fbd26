/**
 * Context paths are kept as "byte strings": one JS character per byte of the file name (the
 * `latin1` encoding), so names that are not valid UTF-8 survive unchanged. They are turned into
 * Buffers for file-system calls and decoded as UTF-8 only for display and pattern matching.
 */
import { posix } from "node:path";
import { keepOutOfFTL } from "../util/jit.ts";

/**
 * Joins a root directory and a relative byte-string path for fs calls: a plain string when
 * every byte is ASCII (the common, cheaper case), a Buffer otherwise.
 */
export function fsPath(root: Buffer, relative: string, rootText = root.toString("latin1")): string | Buffer {
  if (relative === "") return root;
  if (ASCII.test(relative) && ASCII.test(rootText)) return `${rootText}/${relative}`;
  return Buffer.concat([root, Buffer.from("/"), Buffer.from(relative, "latin1")]);
}

export function rootBuffer(directory: string): Buffer {
  return Buffer.from(directory, "utf8");
}

const ASCII = /^[\x00-\x7f]*$/;
const decoder = new TextDecoder("utf-8", { fatal: false });

/** The UTF-8 reading of a byte-string path (invalid bytes become U+FFFD, as Go's runes do). */
export function displayPath(raw: string): string {
  return ASCII.test(raw) ? raw : decoder.decode(Buffer.from(raw, "latin1"));
}

/** A byte-string from text the user typed (UTF-8). */
export function rawFromText(text: string): string {
  return ASCII.test(text) ? text : Buffer.from(text, "utf8").toString("latin1");
}

/** For messages: plain when printable, JSON-quoted when it holds control or invalid bytes. */
export function quotePath(raw: string): string {
  const text = displayPath(raw);
  return /[\x00-\x1f\x7f\uFFFD]/.test(text) || text.includes(" ") ? JSON.stringify(text) : text;
}

/**
 * Cleans a path the user gave relative to the context (`./a/../b/` → `b`, `/x` → `x`) and
 * reports when it leaves the context. "" means the context root.
 */
export function cleanContextPath(path: string): { path: string; outside: boolean } {
  const normalized = posix.normalize("/" + path);
  const withoutRoot = normalized.replace(/^\/+/, "").replace(/\/+$/, "");
  // posix.normalize("/..") is "/", so detect escapes on the relative form instead.
  const relative = posix.normalize(path.replace(/^\/+/, "") || ".");
  const outside = relative === ".." || relative.startsWith("../");
  return { path: withoutRoot, outside };
}

// Called once per entry of a context (see util/jit.ts).
keepOutOfFTL(displayPath);
