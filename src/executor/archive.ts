/**
 * Local archives for ADD: recognized by their first bytes as Docker does (plain tar, gzip,
 * bzip2, xz), and unpacked only when a tar is really inside — a compressed file that is not a
 * tar (`ADD notes.txt.gz /p/`) is copied as it is, as BuildKit does.
 */
import { readSync, rmSync } from "node:fs";
import { join } from "node:path";
import { constants as zlibConstants, gunzipSync } from "node:zlib";
import { UserError } from "../errors.ts";
import { randomHex } from "../util/random.ts";
import { limit, limitHint } from "../util/limits.ts";

export type ArchiveKind = "tar" | "gzip" | "bzip2" | "xz";

const TOOLS: Record<Exclude<ArchiveKind, "tar">, string> = { gzip: "gzip", bzip2: "bzip2", xz: "xz" };

function compressionOf(head: Buffer): Exclude<ArchiveKind, "tar"> | undefined {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return "gzip";
  if (head.length >= 3 && head.toString("latin1", 0, 3) === "BZh") return "bzip2";
  if (head.length >= 6 && head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return "xz";
  return undefined;
}

/** A tar header block: its checksum (bytes summed with the checksum field as spaces) matches. */
function isTarHeader(block: Buffer): boolean {
  if (block.length < 512) return false;
  const stored = parseInt(block.toString("latin1", 148, 156).replace(/[\0 ]+$/g, "").trim(), 8);
  if (!Number.isFinite(stored)) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i];
  return sum === stored && sum !== 0x20 * 8;
}

function readHead(fd: number, length: number): Buffer {
  const head = Buffer.alloc(length);
  const n = readSync(fd, head, 0, length, 0);
  return head.subarray(0, n);
}

/** The first bytes a compressed head decompresses to (partial input is fine). */
function decompressHead(kind: Exclude<ArchiveKind, "tar">, head: Buffer): Buffer {
  if (kind === "gzip") {
    try {
      return gunzipSync(head, { finishFlush: zlibConstants.Z_SYNC_FLUSH });
    } catch {
      return Buffer.alloc(0);
    }
  }
  const result = Bun.spawnSync([TOOLS[kind], "-dc"], { stdin: head, stdout: "pipe", stderr: "ignore" });
  return Buffer.from(result.stdout ?? new Uint8Array());
}

/** What kind of tar archive the open file is, or undefined when it is not a tar at all. */
export function archiveKindOf(fd: number): ArchiveKind | undefined {
  const head = readHead(fd, 64 * 1024);
  const compression = compressionOf(head);
  if (!compression) return isTarHeader(head.subarray(0, 512)) ? "tar" : undefined;
  if (compression !== "gzip" && !Bun.which(TOOLS[compression])) {
    throw new UserError(`ADD: unpacking a ${compression} archive needs the ${TOOLS[compression]} command, which is not installed`);
  }
  return isTarHeader(decompressHead(compression, head).subarray(0, 512)) ? compression : undefined;
}

/** The archive open as `fd`, as a plain tar file to read: the file itself, or a decompressed copy in `scratch`. */
export function decompressArchive(fd: number, scratch: string): { path: string; remove(): void } {
  const self = `/proc/self/fd/${fd}`;
  const kind = archiveKindOf(fd);
  if (kind === "tar" || kind === undefined) return { path: self, remove: () => {} };
  const out = join(scratch, `archive-${randomHex(6)}.tar`);
  // A file-size limit on the decompressor bounds what a small bomb can write (it gets SIGXFSZ).
  const maxBytes = limit("unpackedBytes");
  const result = Bun.spawnSync(["prlimit", `--fsize=${maxBytes}`, "--", TOOLS[kind], "-dc"], { stdin: Bun.file(self), stdout: Bun.file(out), stderr: "pipe" });
  if (result.exitCode !== 0) {
    rmSync(out, { force: true });
    if (result.signalCode === "SIGXFSZ" || result.exitCode === 128 + 25) {
      throw new UserError(`the ${kind} archive unpacks to more than ${maxBytes} bytes ${limitHint("unpackedBytes")}`);
    }
    throw new UserError(`cannot decompress the ${kind} archive: ${result.stderr.toString().trim() || `${TOOLS[kind]} failed`}`);
  }
  return { path: out, remove: () => rmSync(out, { force: true }) };
}
