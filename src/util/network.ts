/**
 * Waits on the network that always end: a request whose answer does not start within the idle
 * timeout is aborted, and a body is read chunk by chunk with the same idle timeout and a byte
 * limit, so a peer that trickles, stalls or sends without end costs at most that much.
 */
import { limit } from "../config/limits.ts";
import { UserError } from "../errors.ts";

export class NetworkError extends UserError {}

/**
 * fetch() with a deadline for the response's headers (the body is read with `readBody`). A
 * request that sends a body gets none: its answer comes only after the upload, however long
 * that takes.
 */
export async function fetchWithTimeout(url: string | URL, init: RequestInit, what: string): Promise<Response> {
  if (init.body !== undefined && init.body !== null) return fetch(url, init);
  const seconds = limit("idleSeconds");
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), seconds * 1000);
  try {
    return await fetch(url, { ...init, signal: controller.signal });
  } catch (error) {
    if (controller.signal.aborted) throw new NetworkError(`${what}: no answer within ${seconds} s (MEMOBUILD_NETWORK_TIMEOUT)`);
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A response body in chunks: refused (and the connection closed) past `max` bytes, or when
 * nothing arrives for the idle timeout.
 */
export async function* readBody(response: Response, max: number, what: string, tooLarge: (max: number) => string): AsyncGenerator<Uint8Array> {
  const declared = Number(response.headers.get("content-length") ?? NaN);
  if (declared > max) {
    await response.body?.cancel().catch(() => {});
    throw new NetworkError(`${what}: ${tooLarge(max)}`);
  }
  if (!response.body) return;
  const seconds = limit("idleSeconds");
  const reader = response.body.getReader();
  let total = 0;
  try {
    for (;;) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const idle = new Promise<"idle">((resolve) => (timer = setTimeout(() => resolve("idle"), seconds * 1000)));
      const next = await Promise.race([reader.read(), idle]).finally(() => clearTimeout(timer));
      if (next === "idle") throw new NetworkError(`${what}: nothing received for ${seconds} s (MEMOBUILD_NETWORK_TIMEOUT)`);
      if (next.done) return;
      total += next.value.length;
      if (total > max) throw new NetworkError(`${what}: ${tooLarge(max)}`);
      yield next.value;
    }
  } catch (error) {
    await reader.cancel().catch(() => {});
    if (error instanceof NetworkError) throw error;
    throw new NetworkError(`${what}: the connection failed (${(error as Error).message})`);
  }
}

/** The whole body, bounded as `readBody` bounds it. */
export async function readBodyBytes(response: Response, max: number, what: string, tooLarge: (max: number) => string): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of readBody(response, max, what, tooLarge)) chunks.push(chunk);
  return Buffer.concat(chunks);
}
