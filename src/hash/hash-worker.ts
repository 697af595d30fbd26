/**
 * Worker side of the parallel file hasher: hashes the files it is sent and posts back their
 * digests (packed, transferred) and sizes, or the first error with its index.
 */
import { hashFile } from "./blake3.ts";

declare const self: Worker;

export interface HashRequest {
  paths: (string | Uint8Array)[];
  /** Each file's size as the caller's stat found it (see hashFile). */
  sizes: number[];
}

export interface HashResponse {
  digests: ArrayBuffer;
  sizes: Float64Array;
  error?: { index: number; code?: string; message: string };
}

self.onmessage = (event: MessageEvent<HashRequest>) => {
  const { paths, sizes: expected } = event.data;
  const digests = new Uint8Array(paths.length * 32);
  const sizes = new Float64Array(paths.length);
  let error: HashResponse["error"];
  for (let i = 0; i < paths.length; i++) {
    try {
      const path = paths[i];
      const result = hashFile(typeof path === "string" ? path : Buffer.from(path), expected[i]);
      digests.set(result.digest, i * 32);
      sizes[i] = result.size;
    } catch (cause) {
      error = { index: i, code: (cause as NodeJS.ErrnoException).code, message: (cause as Error).message };
      break;
    }
  }
  const response: HashResponse = { digests: digests.buffer, sizes, error };
  self.postMessage(response, [digests.buffer, sizes.buffer]);
};
