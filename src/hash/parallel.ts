/**
 * Hashes many files on all cores: the main thread takes one share, Bun workers the others.
 * Shares are balanced by bytes (largest files first to the least-loaded share). Small jobs stay
 * on the main thread, where starting workers would cost more than it saves.
 */
import { availableParallelism } from "node:os";
import { hashFile } from "./blake3.ts";
import type { HashRequest, HashResponse } from "./hash-worker.ts";

export interface FileToHash {
  /** What fs calls take: a string, or a Buffer for names that are not UTF-8. */
  path: string | Buffer;
  /** Its size as the caller's stat found it: for balancing the shares, and read up to (see hashFile). */
  size: number;
}

export interface HashedFile {
  digest: Buffer;
  size: number;
}

/** Raised with the index of the file that could not be read. */
export class FileHashError extends Error {
  constructor(
    readonly index: number,
    readonly code: string | undefined,
    message: string,
  ) {
    super(message);
  }
}

/** Below these, one thread is faster than several. */
const PARALLEL_MIN_BYTES = 32 * 1024 * 1024;
const PARALLEL_MIN_FILES = 2000;

export async function hashFiles(files: FileToHash[], threads = availableParallelism()): Promise<HashedFile[]> {
  const totalBytes = files.reduce((sum, f) => sum + f.size, 0);
  const shareCount = Math.min(threads, 8);
  if (shareCount < 2 || (totalBytes < PARALLEL_MIN_BYTES && files.length < PARALLEL_MIN_FILES)) {
    return hashShare(files, files.map((_, i) => i));
  }

  const order = files.map((_, i) => i).sort((a, b) => files[b].size - files[a].size);
  const shares: number[][] = Array.from({ length: shareCount }, () => []);
  const loads = new Array<number>(shareCount).fill(0);
  for (const index of order) {
    let lightest = 0;
    for (let s = 1; s < shareCount; s++) if (loads[s] < loads[lightest]) lightest = s;
    shares[lightest].push(index);
    // A file costs its bytes plus a fixed overhead for opening it.
    loads[lightest] += files[index].size + 16 * 1024;
  }

  const results = new Array<HashedFile>(files.length);
  const workers = shares.slice(1).map((share) => runWorker(files, share, results));
  try {
    const own = hashShare(files, shares[0]);
    shares[0].forEach((index, i) => (results[index] = own[i]));
    await Promise.all(workers);
  } catch (error) {
    await Promise.allSettled(workers);
    throw error;
  }
  return results;
}

function hashShare(files: FileToHash[], share: number[]): HashedFile[] {
  return share.map((index) => {
    try {
      return hashFile(files[index].path, files[index].size);
    } catch (error) {
      throw new FileHashError(index, (error as NodeJS.ErrnoException).code, (error as Error).message);
    }
  });
}

/**
 * Inside the compiled binary, bundled workers are addressed by their path in the project (they
 * are extra entry points of `bun build --compile`); from source, relative to this module.
 */
const WORKER_URL = import.meta.url.startsWith("file:///$bunfs/")
  ? "./src/hash/hash-worker.ts"
  : new URL("./hash-worker.ts", import.meta.url).href;

function runWorker(files: FileToHash[], share: number[], results: HashedFile[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER_URL);
    worker.onmessage = (event: MessageEvent<HashResponse>) => {
      const { digests, sizes, error } = event.data;
      const bytes = Buffer.from(digests);
      const done = error ? error.index : share.length;
      for (let i = 0; i < done; i++) results[share[i]] = { digest: bytes.subarray(i * 32, i * 32 + 32), size: sizes[i] };
      worker.terminate();
      if (error) reject(new FileHashError(share[error.index], error.code, error.message));
      else resolve();
    };
    worker.onerror = (event) => {
      worker.terminate();
      reject(new Error(`hash worker failed: ${event.message}`));
    };
    worker.postMessage({ paths: share.map((index) => files[index].path), sizes: share.map((index) => files[index].size) } satisfies HashRequest);
  });
}
