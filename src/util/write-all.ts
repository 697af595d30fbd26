import { writeSync } from "node:fs";

/**
 * Writes every byte: writeSync may write fewer than asked (a disk that fills up mid-write
 * returns a short count first and ENOSPC only on the next call), and a short write ignored is
 * a silently truncated file. A non-blocking descriptor (Bun leaves stdout a non-blocking pipe:
 * `build -o - | tar x`) answers EAGAIN while the reader is behind: wait a moment and go on.
 */
export function writeAll(fd: number, bytes: Uint8Array) {
  for (let offset = 0; offset < bytes.length; ) {
    try {
      offset += writeSync(fd, bytes, offset, bytes.length - offset);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EAGAIN") throw error;
      Bun.sleepSync(1);
    }
  }
}
