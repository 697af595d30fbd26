/**
 * Tar for image layers: a writer that emits exactly the entries it is given (ustar headers,
 * PAX records when a field does not fit) and a reader for ustar, PAX and GNU long names.
 *
 * Own code rather than node-tar: layers need precise control of whiteout entries, owners,
 * modes, hardlinks and timestamps, and extraction needs its own containment checks (node-tar's
 * `preservePaths`, needed to keep absolute symlinks, also turns its path checks off).
 * Names are byte strings (see context/paths.ts).
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { UserError } from "../errors.ts";

export type TarEntryType = "file" | "dir" | "symlink" | "hardlink" | "char" | "block" | "fifo";

export interface TarEntry {
  /** Relative path as a byte string, without a leading "./" or "/"; directories without "/". */
  name: string;
  type: TarEntryType;
  /** Permission and special bits. */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** Seconds since the epoch. */
  mtime: number;
  /** Symlink target or hardlink target (a name in the same archive). */
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** Extended attributes (SCHILY.xattr.*), byte-string values. */
  xattrs?: Record<string, string>;
}

const BLOCK = 512;
const TYPE_FLAG: Record<TarEntryType, string> = { file: "0", hardlink: "1", symlink: "2", char: "3", block: "4", dir: "5", fifo: "6" };
const FLAG_TYPE: Record<string, TarEntryType> = { "0": "file", "\0": "file", "7": "file", "1": "hardlink", "2": "symlink", "3": "char", "4": "block", "5": "dir", "6": "fifo" };

function writeString(header: Buffer, text: string, offset: number, length: number) {
  header.write(text, offset, Math.min(length, text.length), "latin1");
}

function writeOctal(header: Buffer, value: number, offset: number, length: number) {
  header.write(value.toString(8).padStart(length - 1, "0") + "\0", offset, length, "latin1");
}

function paxRecord(key: string, value: string): string {
  // "%d %s=%s\n", where the length counts itself; lengths are in bytes.
  const body = ` ${key}=${value}\n`;
  const bodyBytes = Buffer.byteLength(body, "latin1");
  let length = bodyBytes + 1;
  while (String(length).length + bodyBytes !== length) length = String(length).length + bodyBytes;
  return `${length}${body}`;
}

function header(name: string, entry: { type: string; mode: number; uid: number; gid: number; size: number; mtime: number; linkname?: string; devmajor?: number; devminor?: number }): Buffer {
  const block = Buffer.alloc(BLOCK);
  writeString(block, name, 0, 100);
  writeOctal(block, entry.mode & 0o7777, 100, 8);
  writeOctal(block, entry.uid, 108, 8);
  writeOctal(block, entry.gid, 116, 8);
  writeOctal(block, entry.size, 124, 12);
  writeOctal(block, Math.max(0, Math.floor(entry.mtime)), 136, 12);
  block.fill(0x20, 148, 156); // checksum field counts as spaces
  block.write(entry.type, 156, 1, "latin1");
  writeString(block, entry.linkname ?? "", 157, 100);
  block.write("ustar\0" + "00", 257, 8, "latin1");
  writeOctal(block, entry.devmajor ?? 0, 329, 8);
  writeOctal(block, entry.devminor ?? 0, 337, 8);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += block[i];
  block.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, 8, "latin1");
  return block;
}

const MAX_OCTAL_8 = 0o7777777;
const MAX_OCTAL_12 = 0o77777777777;

/** Writes entries to a sink; content is supplied by the caller right after each header. */
export class TarWriter {
  constructor(private readonly sink: (chunk: Uint8Array) => void) {}

  /** Writes an entry's header (and its PAX record when needed). Then call `content()` for files. */
  add(entry: TarEntry) {
    const name = entry.type === "dir" ? `${entry.name}/` : entry.name;
    const pax: string[] = [];
    if (name.length > 100) pax.push(paxRecord("path", name));
    if ((entry.linkname?.length ?? 0) > 100) pax.push(paxRecord("linkpath", entry.linkname!));
    if (entry.size > MAX_OCTAL_12) pax.push(paxRecord("size", String(entry.size)));
    if (entry.uid > MAX_OCTAL_8) pax.push(paxRecord("uid", String(entry.uid)));
    if (entry.gid > MAX_OCTAL_8) pax.push(paxRecord("gid", String(entry.gid)));
    for (const [key, value] of Object.entries(entry.xattrs ?? {}).sort()) pax.push(paxRecord(`SCHILY.xattr.${key}`, value));
    if (pax.length > 0) {
      const body = Buffer.from(pax.join(""), "latin1");
      this.sink(header("PaxHeaders/" + name.slice(0, 80), { type: "x", mode: 0o644, uid: 0, gid: 0, size: body.length, mtime: entry.mtime }));
      this.sink(body);
      this.pad(body.length);
    }
    this.sink(
      header(name.slice(0, 100), {
        type: TYPE_FLAG[entry.type],
        mode: entry.mode,
        uid: Math.min(entry.uid, MAX_OCTAL_8),
        gid: Math.min(entry.gid, MAX_OCTAL_8),
        size: entry.type === "file" ? Math.min(entry.size, MAX_OCTAL_12) : 0,
        mtime: entry.mtime,
        linkname: entry.linkname?.slice(0, 100),
        devmajor: entry.devmajor,
        devminor: entry.devminor,
      }),
    );
  }

  /** Content of the file just added; `size` bytes in total, in as many chunks as you like. */
  content(chunk: Uint8Array) {
    this.sink(chunk);
  }

  /** Pads the content of the file just added to a whole block. */
  pad(size: number) {
    const remainder = size % BLOCK;
    if (remainder !== 0) this.sink(new Uint8Array(BLOCK - remainder));
  }

  finish() {
    this.sink(new Uint8Array(BLOCK * 2));
  }
}

/** A tar that breaks the format; the message says what and at which byte offset. */
export class TarFormatError extends UserError {}

/**
 * PAX, GNU long-name and long-link records are read into memory: at most this many bytes each
 * (Go's archive/tar, which BuildKit uses, has the same limit).
 */
export const MAX_SPECIAL_ENTRY = 1024 * 1024;

function readString(block: Buffer, offset: number, length: number): string {
  const end = block.indexOf(0, offset);
  return block.toString("latin1", offset, end < 0 || end > offset + length ? offset + length : end);
}

/** A numeric header field: octal digits (space or NUL padded), or GNU base-256; never negative. */
function readOctal(block: Buffer, offset: number, length: number, field: string, at: number): number {
  if (block[offset] & 0x80) {
    if (block[offset] === 0xff) throw new TarFormatError(`negative ${field} in the tar header at offset ${at}`);
    let value = block[offset] & 0x7f;
    for (let i = offset + 1; i < offset + length; i++) value = value * 256 + block[i];
    if (!Number.isSafeInteger(value)) throw new TarFormatError(`${field} too large in the tar header at offset ${at}`);
    return value;
  }
  const text = readString(block, offset, length).replace(/^[ \0]+|[ \0]+$/g, "");
  if (!/^[0-7]*$/.test(text)) throw new TarFormatError(`${field} ${JSON.stringify(text)} is not an octal number in the tar header at offset ${at}`);
  return text === "" ? 0 : parseInt(text, 8);
}

/** A PAX number: decimal digits (mtime may carry a fraction); anything else is refused. */
function paxNumber(pax: Record<string, string>, key: string, at: number, fraction = false): number | undefined {
  const text = pax[key];
  if (text === undefined) return undefined;
  if (!(fraction ? /^\d+(\.\d+)?$/ : /^\d+$/).test(text)) throw new TarFormatError(`PAX ${key}=${JSON.stringify(text.slice(0, 40))} is not a number (entry at offset ${at})`);
  const value = Math.floor(Number(text));
  if (!Number.isSafeInteger(value)) throw new TarFormatError(`PAX ${key} is too large (entry at offset ${at})`);
  return value;
}

/** PAX records, `LENGTH KEY=VALUE\n` each; a length that does not frame a record is refused. */
function parsePax(body: string, at: number): Record<string, string> {
  const records: Record<string, string> = {};
  let position = 0;
  while (position < body.length) {
    if (body.charCodeAt(position) === 0) break; // NUL padding after the last record
    const space = body.indexOf(" ", position);
    const digits = space < 0 ? "" : body.slice(position, space);
    const length = /^\d{1,7}$/.test(digits) ? Number(digits) : NaN;
    const end = position + length;
    if (!(length > digits.length + 1) || end > body.length || body[end - 1] !== "\n") throw new TarFormatError(`malformed PAX record at offset ${at + position}`);
    const record = body.slice(space + 1, end - 1);
    const eq = record.indexOf("=");
    if (eq <= 0) throw new TarFormatError(`PAX record without a key at offset ${at + position}`);
    records[record.slice(0, eq)] = record.slice(eq + 1);
    position = end;
  }
  return records;
}

/**
 * Reads a tar file entry by entry; `readContent` streams the current file's data. A tar already
 * in memory (a layer the cache server compares) is read the same way.
 */
export class TarReader {
  private readonly fd: number | undefined;
  private readonly bytes: Uint8Array | undefined;
  private position = 0;
  private remaining = 0;
  private padding = 0;

  constructor(source: string | Uint8Array) {
    if (typeof source === "string") this.fd = openSync(source, "r");
    else this.bytes = source;
  }

  close() {
    if (this.fd !== undefined) closeSync(this.fd);
  }

  /** Reads at most `length` bytes at `position` into `buffer` at `offset`; 0 at the end. */
  private readAt(buffer: Buffer, offset: number, length: number, position: number): number {
    if (this.fd !== undefined) return readSync(this.fd, buffer, offset, length, position);
    const end = Math.min(this.bytes!.length, position + length);
    if (end <= position) return 0;
    buffer.set(this.bytes!.subarray(position, end), offset);
    return end - position;
  }

  private archiveSize(): number {
    return this.fd !== undefined ? fstatSync(this.fd).size : this.bytes!.length;
  }

  private read(length: number): Buffer {
    const buffer = Buffer.alloc(length);
    let offset = 0;
    while (offset < length) {
      const n = this.readAt(buffer, offset, length - offset, this.position);
      if (n === 0) throw new TarFormatError("unexpected end of archive");
      offset += n;
      this.position += n;
    }
    return buffer;
  }

  /**
   * The next header block, or undefined where the archive ends at a block boundary: archives may
   * end without their zero blocks. Ending inside a header, or before the content just skipped,
   * is a truncated archive (Go's archive/tar: io.ErrUnexpectedEOF), never a clean end.
   */
  private readHeader(): Buffer | undefined {
    const block = Buffer.alloc(BLOCK);
    let filled = 0;
    while (filled < BLOCK) {
      const n = this.readAt(block, filled, BLOCK - filled, this.position + filled);
      if (n === 0) break;
      filled += n;
    }
    if (filled === BLOCK) {
      this.position += BLOCK;
      return block;
    }
    if (filled > 0) throw new TarFormatError(`the archive ends inside the header at offset ${this.position}`);
    const size = this.archiveSize();
    if (size < this.position) throw new TarFormatError(`the archive ends at offset ${size}, inside the content of its last entry`);
    return undefined;
  }

  private skipContent() {
    this.position += this.remaining + this.padding;
    this.remaining = 0;
    this.padding = 0;
  }

  /** The next entry, or undefined at the end of the archive. */
  next(): TarEntry | undefined {
    this.skipContent();
    let pax: Record<string, string> = {};
    let longName: string | undefined;
    let longLink: string | undefined;
    for (;;) {
      const block = this.readHeader();
      if (!block || block.every((b) => b === 0)) return undefined;
      const at = this.position - BLOCK;
      const stored = readOctal(block, 148, 8, "checksum", at);
      block.fill(0x20, 148, 156);
      let sum = 0;
      for (let i = 0; i < BLOCK; i++) sum += block[i];
      if (sum !== stored) throw new TarFormatError(`bad header checksum at offset ${at}`);
      // "\0" stays itself (not "0"): as in Go's archive/tar, an old-style entry ending in "/" is a directory.
      const flag = String.fromCharCode(block[156]);
      const size = readOctal(block, 124, 12, "size", at);
      const paddedSize = Math.ceil(size / BLOCK) * BLOCK;
      if (flag === "x" || flag === "g" || flag === "L" || flag === "K") {
        if (size > MAX_SPECIAL_ENTRY) throw new TarFormatError(`a ${flag === "L" || flag === "K" ? "GNU long name" : "PAX"} record of ${size} bytes at offset ${at} is over the limit of ${MAX_SPECIAL_ENTRY}`);
        const body = this.read(size).toString("latin1");
        this.position += paddedSize - size;
        if (flag === "x") pax = { ...pax, ...parsePax(body, at + BLOCK) };
        else if (flag === "L") longName = body.replace(/\0+$/, "");
        else if (flag === "K") longLink = body.replace(/\0+$/, "");
        continue; // global headers ("g") carry nothing a layer needs
      }
      const type = FLAG_TYPE[flag];
      if (!type) throw new TarFormatError(`unsupported tar entry type "${flag}"`);
      const prefix = block.subarray(257, 263).toString("latin1") === "ustar\0" ? readString(block, 345, 155) : "";
      let name = pax.path ?? longName ?? (prefix ? `${prefix}/${readString(block, 0, 100)}` : readString(block, 0, 100));
      const xattrs: Record<string, string> = {};
      for (const [key, value] of Object.entries(pax)) if (key.startsWith("SCHILY.xattr.")) xattrs[key.slice(13)] = value;
      const entry: TarEntry = {
        name,
        type,
        mode: readOctal(block, 100, 8, "mode", at) & 0o7777,
        uid: paxNumber(pax, "uid", at) ?? readOctal(block, 108, 8, "uid", at),
        gid: paxNumber(pax, "gid", at) ?? readOctal(block, 116, 8, "gid", at),
        size: paxNumber(pax, "size", at) ?? size,
        mtime: paxNumber(pax, "mtime", at, true) ?? readOctal(block, 136, 12, "mtime", at),
        linkname: pax.linkpath ?? longLink ?? readString(block, 157, 100),
        devmajor: readOctal(block, 329, 8, "devmajor", at),
        devminor: readOctal(block, 337, 8, "devminor", at),
        xattrs: Object.keys(xattrs).length ? xattrs : undefined,
      };
      if (entry.type === "dir" || name.endsWith("/")) {
        name = name.replace(/\/+$/, "");
        entry.name = name;
        if (entry.type === "file" && flag !== "0") entry.type = "dir";
      }
      // As in Go's archive/tar (BuildKit's reader): links, devices, FIFOs and directories are
      // header-only whatever size they declare, so the next block is the next header for both.
      const dataSize = entry.type === "file" ? entry.size : 0;
      this.remaining = dataSize;
      this.padding = Math.ceil(dataSize / BLOCK) * BLOCK - dataSize;
      return entry;
    }
  }

  /** Reads the current entry's content in chunks of at most `chunkSize` bytes. */
  *readContent(chunkSize = 1024 * 1024): Generator<Buffer> {
    while (this.remaining > 0) {
      const chunk = this.read(Math.min(chunkSize, this.remaining));
      this.remaining -= chunk.length;
      yield chunk;
    }
    this.position += this.padding;
    this.padding = 0;
  }
}
