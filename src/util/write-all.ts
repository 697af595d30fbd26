import { writeSync } from "node:fs";

/**
 * Writes every byte: writeSync may write fewer than asked (a disk that fills up mid-write
 * returns a short count first and ENOSPC only on the next call), and a short write ignored is
 * a silently truncated file.
 */
export function writeAll(fd: number, bytes: Uint8Array) {
  for (let offset = 0; offset < bytes.length; ) offset += writeSync(fd, bytes, offset, bytes.length - offset);
}
