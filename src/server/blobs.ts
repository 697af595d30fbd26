/**
 * Where the cache server keeps blob bytes. `BlobStore` is what Storage needs (the index says
 * which blobs exist; this holds their bytes); `DirectoryBlobs` keeps them under the data
 * directory (the default), `S3Blobs` (blobs-s3.ts) in an S3-compatible bucket for replicas.
 *
 * An upload is written as it arrives and becomes visible only by `commit()`, which Storage calls
 * once the body's BLAKE3 matched its name: a partial or wrong body is never a blob anyone reads.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { mkdir, open, rename, rm, type FileHandle } from "node:fs/promises";
import { join } from "node:path";

/** What a Response may be made of. */
export type Body = ConstructorParameters<typeof Response>[0];

export interface BlobUpload {
  write(chunk: Uint8Array): Promise<void>;
  /** Makes the bytes written the blob (only after they were verified). */
  commit(): Promise<void>;
  /** Drops what was written: nothing of it is ever visible. */
  abandon(): Promise<void>;
}

export interface BlobStore {
  /** Whether the store answers (readiness). */
  ping(): Promise<void>;
  begin(hash: string): Promise<BlobUpload>;
  /** A blob's bytes, whole (for small blobs kept in memory). */
  read(hash: string): Promise<Uint8Array>;
  /** A blob's bytes as a response body, streamed from the store. */
  body(hash: string): Body;
  /** A short-lived URL the client may fetch the blob from directly (stores that have one). */
  presign?(hash: string, seconds: number): string;
  delete(hash: string): Promise<void>;
  /** Blob names stored (for checks against the index). */
  names(): Promise<string[]>;
  /** Uploads left unfinished (for checks: a crash leaves none that count). */
  leftovers(): Promise<string[]>;
}

export class DirectoryBlobs implements BlobStore {
  private readonly blobDir: string;
  private readonly tmpDir: string;

  constructor(dataDir: string) {
    this.blobDir = join(dataDir, "blobs");
    this.tmpDir = join(dataDir, "tmp");
    mkdirSync(this.blobDir, { recursive: true });
    // Uploads cut off by a crash or a kill are discarded whole.
    rmSync(this.tmpDir, { recursive: true, force: true });
    // Stryker disable next-line ObjectLiteral,BooleanLiteral: its parent was made just above
    mkdirSync(this.tmpDir, { recursive: true });
  }

  async ping() {
    statSync(this.blobDir);
  }

  blobPath(hash: string): string {
    return join(this.blobDir, hash.slice(0, 2), hash);
  }

  /**
   * An upload streams to tmp/ (asynchronous disk work: downloads keep flowing while uploads
   * land) and appears by rename once synced.
   */
  async begin(hash: string): Promise<BlobUpload> {
    const temp = join(this.tmpDir, `${hash}-${process.hrtime.bigint()}`);
    const file: FileHandle = await open(temp, "w", 0o600);
    let closed = false;
    const close = async () => {
      if (!closed) (closed = true), await file.close();
    };
    return {
      write: async (chunk) => void (await file.write(chunk)),
      commit: async () => {
        await file.sync(); // durable before it is visible
        await close();
        await mkdir(join(this.blobDir, hash.slice(0, 2)), { recursive: true });
        await rename(temp, this.blobPath(hash));
      },
      abandon: async () => {
        await close();
        // Stryker disable next-line ObjectLiteral,BooleanLiteral: the file is there: this upload made it
        await rm(temp, { force: true });
      },
    };
  }

  async read(hash: string) {
    return readFileSync(this.blobPath(hash));
  }

  body(hash: string): Body {
    return Bun.file(this.blobPath(hash));
  }

  async delete(hash: string) {
    // Stryker disable next-line ObjectLiteral,BooleanLiteral: a stored blob's file is there
    rmSync(this.blobPath(hash), { force: true });
  }

  async names() {
    return readdirSync(this.blobDir).flatMap((prefix) => readdirSync(join(this.blobDir, prefix)));
  }

  async leftovers() {
    return readdirSync(this.tmpDir);
  }

  fileSize(hash: string): number {
    return statSync(this.blobPath(hash)).size;
  }
}
