/**
 * Blob bytes in an S3-compatible bucket (`serve --blobs s3://BUCKET[/PREFIX]?endpoint=URL&region=R`),
 * through Bun's built-in client. Credentials come from the environment (AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), never from the command line.
 *
 *   PREFIX/blobs/ab/abcdef…   one object per blob, named by its BLAKE3 hash
 *
 * An upload streams into a multipart upload (parts of 5 MiB, the S3 minimum) and is completed
 * only by commit(), after the hash checked out. An upload that is never completed (a wrong body,
 * a client gone, a replica killed) is never an object anyone can read; S3 keeps its parts until
 * a lifecycle rule (AbortIncompleteMultipartUpload) drops them. Every complete object under a
 * blob's name holds exactly that blob, so two replicas completing the same blob at once write
 * the same bytes.
 */
import { S3Client } from "bun";
import { UserError } from "../errors.ts";
import type { Body, BlobStore, BlobUpload } from "./blobs.ts";

export interface S3Location {
  bucket: string;
  prefix: string;
  endpoint?: string;
  region?: string;
}

/** Parses s3://BUCKET[/PREFIX][?endpoint=URL&region=R]; errors name the flag. */
export function parseS3Url(text: string): S3Location {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UserError(`--blobs ${text}: use s3://BUCKET[/PREFIX]?endpoint=URL&region=R`);
  }
  if (url.protocol !== "s3:" || !url.hostname) throw new UserError(`--blobs ${text}: use s3://BUCKET[/PREFIX]?endpoint=URL&region=R`);
  if (url.username || url.password) throw new UserError("--blobs: credentials never go in the URL; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
  for (const key of url.searchParams.keys()) {
    if (key !== "endpoint" && key !== "region") throw new UserError(`--blobs ${text}: unknown parameter "${key}" (endpoint, region)`);
  }
  const endpoint = url.searchParams.get("endpoint") ?? undefined;
  if (endpoint !== undefined && !/^https?:\/\/[^\s/]+/.test(endpoint)) throw new UserError(`--blobs: endpoint=${endpoint} is not an http(s) URL`);
  const prefix = decodeURIComponent(url.pathname).replace(/^\/+|\/+$/g, "");
  return { bucket: url.hostname, prefix: prefix ? `${prefix}/` : "", endpoint, region: url.searchParams.get("region") ?? undefined };
}

const PART = 5 * 1024 * 1024;

export class S3Blobs implements BlobStore {
  private readonly client: S3Client;

  constructor(
    private readonly location: S3Location,
    env: Record<string, string | undefined> = process.env,
  ) {
    this.client = new S3Client({
      bucket: location.bucket,
      endpoint: location.endpoint,
      region: location.region,
      accessKeyId: env.AWS_ACCESS_KEY_ID,
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
      sessionToken: env.AWS_SESSION_TOKEN,
    });
  }

  private key(hash: string) {
    return `${this.location.prefix}blobs/${hash.slice(0, 2)}/${hash}`;
  }

  /** A listing of one key: the bucket exists and the credentials may read it. */
  async ping() {
    await this.client.list({ prefix: `${this.location.prefix}blobs/`, maxKeys: 1 });
  }

  async begin(hash: string): Promise<BlobUpload> {
    const writer = this.client.file(this.key(hash)).writer({ partSize: PART, type: "application/octet-stream" });
    let buffered = 0;
    return {
      write: async (chunk) => {
        writer.write(chunk);
        buffered += chunk.length;
        // Sent a part at a time: an upload holds at most about a part in memory.
        if (buffered >= PART) (buffered = 0), await writer.flush();
      },
      commit: async () => void (await writer.end()),
      // Never completed: the parts sent stay invisible (and a lifecycle rule reclaims them).
      abandon: async () => {},
    };
  }

  async read(hash: string) {
    return await this.client.file(this.key(hash)).bytes();
  }

  body(hash: string): Body {
    return this.client.file(this.key(hash)).stream();
  }

  presign(hash: string, seconds: number): string {
    return this.client.presign(this.key(hash), { expiresIn: seconds, method: "GET" });
  }

  async delete(hash: string) {
    await this.client.delete(this.key(hash));
  }

  async names() {
    const names: string[] = [];
    let startAfter: string | undefined;
    for (;;) {
      const page = await this.client.list({ prefix: `${this.location.prefix}blobs/`, startAfter });
      for (const object of page.contents ?? []) names.push(object.key.slice(object.key.lastIndexOf("/") + 1));
      if (!page.isTruncated || !page.contents?.length) return names;
      startAfter = page.contents.at(-1)!.key;
    }
  }

  /** Unfinished multipart uploads are invisible by design; none is ever read. */
  async leftovers() {
    return [];
  }
}
