/**
 * sha256 digests as OCI writes them (`sha256:<hex>`): of bytes, and of files read in chunks
 * (layers can be larger than memory). One place, so every check of a blob reads it the same way.
 */
import { closeSync, openSync, readSync } from "node:fs";
import { writeAll } from "../util/write-all.ts";

const CHUNK = 1024 * 1024;

export function sha256Digest(bytes: Uint8Array | string): string {
  return `sha256:${new Bun.CryptoHasher("sha256").update(bytes).digest("hex")}`;
}

/**
 * The digest of a file (a path, or an open descriptor the caller closes); with `copyTo`, the
 * file is copied there in the same pass. With `maxBytes`, undefined as soon as more than that
 * was read (a file of an image may claim a size and be endless).
 */
export function sha256FileSync(path: string | number, copyTo?: string, maxBytes = Infinity): string | undefined {
  const hasher = new Bun.CryptoHasher("sha256");
  const fd = typeof path === "number" ? path : openSync(path, "r");
  const out = copyTo === undefined ? undefined : openSync(copyTo, "wx", 0o644);
  try {
    const chunk = Buffer.allocUnsafe(CHUNK);
    let total = 0;
    for (let n; (n = readSync(fd, chunk)) > 0; ) {
      total += n;
      if (total > maxBytes) return undefined;
      hasher.update(chunk.subarray(0, n));
      if (out !== undefined) writeAll(out, chunk.subarray(0, n));
    }
  } finally {
    if (typeof path !== "number") closeSync(fd);
    if (out !== undefined) closeSync(out);
  }
  return `sha256:${hasher.digest("hex")}`;
}

/** The digest of a file, streamed without blocking the event loop for long. */
export async function sha256File(path: string): Promise<string> {
  const hasher = new Bun.CryptoHasher("sha256");
  for await (const chunk of Bun.file(path).stream()) hasher.update(chunk);
  return `sha256:${hasher.digest("hex")}`;
}
