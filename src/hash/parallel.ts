/**
 * Hashes many files on all cores: the main thread and Bun workers take batches from one queue.
 * Files may be added while the caller still finds them (a context walk adds each file it has
 * not hashed before as it goes): once enough work is queued, a worker starts and hashes while
 * the walk goes on, so the walk no longer leaves the other cores idle. When the caller is done
 * adding, it hashes from the queue itself and hands batches to each worker that runs short.
 * Small jobs stay on the main thread, where starting workers would cost more than it saves.
 */
import { availableParallelism } from "node:os";
import { hashFile } from "./blake3.ts";
import type { HashRequest, HashResponse } from "./hash-worker.ts";

export interface FileToHash {
  /** What fs calls take: a string, or a Buffer for names that are not UTF-8. */
  path: string | Buffer;
  /** Its size as the caller's stat found it: for sizing batches, and read up to (see hashFile). */
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
/** A batch: small enough that the last ones balance the threads, large enough that messages are few. */
const BATCH_BYTES = 4 * 1024 * 1024;
const BATCH_FILES = 256;
/** A file costs its bytes plus a fixed overhead for opening it. */
const FILE_COST = 16 * 1024;
/** A worker is given another batch when it has fewer than this many left. */
const WORKER_BACKLOG = 2;

/**
 * Inside the compiled binary, bundled workers are addressed by their path in the project (they
 * are extra entry points of `bun build --compile`); from source, relative to this module.
 */
const WORKER_URL = import.meta.url.startsWith("file:///$bunfs/")
  ? "./src/hash/hash-worker.ts"
  : new URL("./hash-worker.ts", import.meta.url).href;

/** One worker thread and the batches sent to it. */
class PoolWorker {
  private readonly worker = new Worker(WORKER_URL);
  /** Batches the worker has finished, counted by the worker itself (read without waiting for its messages). */
  private readonly finished = new Int32Array(new SharedArrayBuffer(4));
  private sent = 0;
  private readonly pending = new Map<number, { indexes: number[]; resolve: () => void; reject: (error: Error) => void }>();
  readonly done: Promise<void>[] = [];

  constructor(private readonly results: HashedFile[]) {
    this.worker.onmessage = (event: MessageEvent<HashResponse>) => this.received(event.data);
    this.worker.onerror = (event) => {
      const error = new Error(`hash worker failed: ${event.message}`);
      for (const batch of this.pending.values()) batch.reject(error);
      this.pending.clear();
    };
  }

  /** Batches sent and not yet finished. */
  get backlog(): number {
    return this.sent - Atomics.load(this.finished, 0);
  }

  send(files: FileToHash[], indexes: number[]) {
    const batch = this.sent++;
    const done = new Promise<void>((resolve, reject) => this.pending.set(batch, { indexes, resolve, reject }));
    // Awaited in finish(); a batch that fails after the main thread itself failed is not news.
    done.catch(() => {});
    this.done.push(done);
    const request: HashRequest = {
      batch,
      paths: indexes.map((i) => files[i].path),
      sizes: indexes.map((i) => files[i].size),
      finished: batch === 0 ? this.finished : undefined,
    };
    this.worker.postMessage(request);
  }

  private received({ batch, digests, sizes, error }: HashResponse) {
    const { indexes, resolve, reject } = this.pending.get(batch)!;
    this.pending.delete(batch);
    const bytes = Buffer.from(digests);
    const done = error ? error.index : indexes.length;
    for (let i = 0; i < done; i++) this.results[indexes[i]] = { digest: bytes.subarray(i * 32, i * 32 + 32), size: sizes[i] };
    if (error) reject(new FileHashError(indexes[error.index], error.code, error.message));
    else resolve();
  }

  terminate() {
    this.worker.terminate();
  }
}

/**
 * A queue of files to hash, filled with add() and emptied by finish(), which resolves with
 * every file's digest in the order they were added.
 */
export class HashPool {
  private readonly files: FileToHash[] = [];
  private readonly results: HashedFile[] = [];
  /** Indexes of the files not yet taken, from `head` on: the main thread takes from the head, batches leave from the end. */
  private readonly queue: number[] = [];
  private head = 0;
  private queuedBytes = 0;
  private readonly workers: PoolWorker[] = [];

  constructor(private readonly threads = availableParallelism()) {}

  /** Queues a file; returns its index in finish()'s result. */
  add(file: FileToHash): number {
    this.queue.push(this.files.push(file) - 1);
    this.queuedBytes += file.size;
    if (this.workers.length === 0 && this.worthWorkers()) this.startWorkers();
    this.feedWorkers();
    return this.files.length - 1;
  }

  /** Hashes what is left on this thread and the workers; throws FileHashError for a file that cannot be read. */
  async finish(): Promise<HashedFile[]> {
    if (this.workers.length === 0 && this.worthWorkers()) this.startWorkers();
    try {
      while (this.head < this.queue.length) {
        this.feedWorkers();
        if (this.head >= this.queue.length) break;
        const index = this.queue[this.head++];
        this.results[index] = this.hashHere(index);
      }
      await Promise.all(this.workers.flatMap((worker) => worker.done));
      return this.results;
    } finally {
      for (const worker of this.workers) worker.terminate();
    }
  }

  /** Stops the workers of a pool that will not be finished (the walk filling it failed). */
  abandon() {
    for (const worker of this.workers) worker.terminate();
  }

  private worthWorkers(): boolean {
    const count = this.queue.length - this.head;
    return Math.min(this.threads, 8) > 1 && (this.queuedBytes >= PARALLEL_MIN_BYTES || count >= PARALLEL_MIN_FILES);
  }

  private startWorkers() {
    for (let i = 1; i < Math.min(this.threads, 8); i++) this.workers.push(new PoolWorker(this.results));
  }

  /** Gives each worker that is running short a batch from the tail of the queue. */
  private feedWorkers() {
    for (const worker of this.workers) {
      while (worker.backlog < WORKER_BACKLOG && this.head < this.queue.length) worker.send(this.files, this.takeBatch());
    }
  }

  private takeBatch(): number[] {
    const indexes: number[] = [];
    let cost = 0;
    while (this.head < this.queue.length && indexes.length < BATCH_FILES && cost < BATCH_BYTES) {
      const index = this.queue.pop()!;
      indexes.push(index);
      cost += this.files[index].size + FILE_COST;
      this.queuedBytes -= this.files[index].size;
    }
    return indexes;
  }

  private hashHere(index: number): HashedFile {
    this.queuedBytes -= this.files[index].size;
    try {
      return hashFile(this.files[index].path, this.files[index].size);
    } catch (error) {
      throw new FileHashError(index, (error as NodeJS.ErrnoException).code, (error as Error).message);
    }
  }
}

/** Hashes `files` (see HashPool); the results are in their order. */
export function hashFiles(files: FileToHash[], threads = availableParallelism()): Promise<HashedFile[]> {
  const pool = new HashPool(threads);
  for (const file of files) pool.add(file);
  return pool.finish();
}
