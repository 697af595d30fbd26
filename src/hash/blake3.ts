/**
 * BLAKE3, from `@napi-rs/blake-hash` (native, prebuilt, and embedded by `bun build --compile`;
 * about 4 GB/s on one core here, ten times the WASM builds). Every content hash and cache key in
 * MemoBuild goes through this module.
 */
import { Blake3Hasher, blake3 as blake3OneShot } from "@napi-rs/blake-hash";
import { closeSync, fstatSync, openSync, readSync } from "node:fs";

export { Blake3Hasher };

export const DIGEST_BYTES = 32;

export function blake3(data: Uint8Array | string): Buffer {
  return blake3OneShot(data);
}

export function blake3Hex(data: Uint8Array | string): string {
  return blake3OneShot(data).toString("hex");
}

/** Files up to this size are read whole; larger ones stream through a fixed buffer. */
const WHOLE_FILE_LIMIT = 4 * 1024 * 1024;
const CHUNK = 1024 * 1024;
let chunkBuffer: Buffer | undefined;
const SMALL_FILE_LIMIT = 64 * 1024;
let smallBuffer: Buffer | undefined;

/**
 * Hashes a file's content. Memory stays bounded by the chunk size whatever the file's size.
 * `path` may be a Buffer, so names that are not UTF-8 work. `size` is the size the caller's
 * own stat found (a context walk's): then the file is not stated again, which was one system
 * call in four of hashing 20,000 small files. Either way a file up to WHOLE_FILE_LIMIT is read
 * up to that size or its end, whichever comes first; a larger one to its end.
 */
export function hashFile(path: string | Buffer, size?: number): { digest: Buffer; size: number } {
  const fd = openSync(path, "r");
  try {
    return hashOpenFile(fd, size ?? fstatSync(fd).size);
  } finally {
    closeSync(fd);
  }
}

function hashOpenFile(fd: number, size: number): { digest: Buffer; size: number } {
  if (size <= WHOLE_FILE_LIMIT) {
    // Small files (most of a source tree) share one buffer: a fresh one per file was ~15% of
    // the CPU of hashing 10,000 files of 4 KiB.
    const data = size <= SMALL_FILE_LIMIT ? (smallBuffer ??= Buffer.allocUnsafe(SMALL_FILE_LIMIT)).subarray(0, size) : Buffer.allocUnsafe(size);
    let offset = 0;
    while (offset < size) {
      const read = readSync(fd, data, offset, size - offset, null);
      if (read === 0) break; // the file shrank while we read it
      offset += read;
    }
    return { digest: blake3OneShot(offset === size ? data : data.subarray(0, offset)), size: offset };
  }
  chunkBuffer ??= Buffer.allocUnsafe(CHUNK);
  const hasher = new Blake3Hasher();
  let total = 0;
  for (;;) {
    const read = readSync(fd, chunkBuffer, 0, CHUNK, null);
    if (read === 0) break;
    hasher.update(read === CHUNK ? chunkBuffer : chunkBuffer.subarray(0, read));
    total += read;
  }
  return { digest: hasher.digestBuffer(), size: total };
}
