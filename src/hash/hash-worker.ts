/**
 * Worker side of the parallel file hasher (parallel.ts): hashes each batch it is sent and posts
 * back its digests (packed, transferred) and sizes, or the first error with its index; then
 * counts the batch in the shared `finished` counter, which the main thread reads while it is
 * busy to know when this worker needs more.
 */
import { hashFile } from "./blake3.ts";

declare const self: Worker;

export interface HashRequest {
  batch: number;
  paths: (string | Uint8Array)[];
  /** Each file's size as the caller's stat found it (see hashFile). */
  sizes: number[];
  /** Sent with the first batch: one Int32 of shared memory, the number of batches finished. */
  finished?: Int32Array;
}

export interface HashResponse {
  batch: number;
  digests: ArrayBuffer;
  sizes: Float64Array;
  error?: { index: number; code?: string; message: string };
}

let finished: Int32Array | undefined;

self.onmessage = (event: MessageEvent<HashRequest>) => {
  const { batch, paths, sizes: expected } = event.data;
  finished ??= event.data.finished;
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
  const response: HashResponse = { batch, digests: digests.buffer, sizes, error };
  self.postMessage(response, [digests.buffer, sizes.buffer]);
  if (finished) Atomics.add(finished, 0, 1);
};
