/**
 * Text from elsewhere (a cache server, a registry, an image) made safe for a terminal. Such text
 * is data, but a terminal obeys what is in it: escape sequences set the window title, clear the
 * screen or move the cursor, a carriage return or a newline starts a fake line ("✔ pushed"), and
 * bidirectional overrides reorder what is read. Every string from another party that is printed
 * passes through `terminalText` first (the sites are listed in terminal-text.test.ts).
 */

// ESC-introduced sequences, whole: CSI (ESC [ … final), OSC (ESC ] … BEL or ST), the string
// sequences DCS/SOS/PM/APC (ESC P|X|^|_ … ST), then any other two-character escape.
const ESCAPES = [
  /\x1b\[[0-?]*[ -/]*[@-~]?/g,
  /\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?/g,
  /\x1b[PX^_][^\x1b]*(?:\x1b\\)?/g,
  /\x1b[\s\S]?/g,
  // Their one-byte C1 forms: CSI (0x9b) and OSC (0x9d).
  /\x9b[0-?]*[ -/]*[@-~]?/g,
  /\x9d[^\x07\x9c]*(?:\x07|\x9c)?/g,
];
/** C0 and C1 controls and DEL; bidirectional embeddings, overrides and isolates. */
const CONTROLS = /[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

export interface TerminalTextOptions {
  /** Keep line breaks (a multi-line message); otherwise the text is one line. */
  multiline?: boolean;
  /** At most this many characters (an ellipsis says more was cut). */
  max?: number;
}

export function terminalText(value: unknown, options: TerminalTextOptions = {}): string {
  let text = String(value ?? "");
  for (const pattern of ESCAPES) text = text.replace(pattern, "");
  text = text.replace(CONTROLS, (c) => (c === "\n" && options.multiline ? "\n" : c === "\n" || c === "\t" || c === "\r" ? " " : ""));
  if (options.max !== undefined && text.length > options.max) text = `${text.slice(0, options.max)}…`;
  return text;
}
