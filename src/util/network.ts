/**
 * Waits on the network that always end: a request whose answer does not start within the idle
 * timeout is aborted, and a body is read chunk by chunk with the same idle timeout and a byte
 * limit, so a peer that trickles, stalls or sends without end costs at most that much.
 */
import { limit } from "./limits.ts";
import { UserError } from "../errors.ts";

export class NetworkError extends UserError {}

/** A body over its byte limit: final, never worth another try. */
export class BodyTooLargeError extends NetworkError {}

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

/** A transfer slower than this over a whole timeout window is given up (as curl's --speed-limit). */
export const MIN_BYTES_PER_WINDOW = 1024;

/**
 * A response body in chunks: refused (and the connection closed) past `max` bytes, or when
 * fewer than MIN_BYTES_PER_WINDOW bytes arrive in a timeout window: a peer that trickles one
 * byte now and then holds a build no longer than one that sends nothing.
 */
export async function* readBody(response: Response, max: number, what: string, tooLarge: (max: number) => string): AsyncGenerator<Uint8Array> {
  const declared = Number(response.headers.get("content-length") ?? NaN);
  if (declared > max) {
    await response.body?.cancel().catch(() => {});
    throw new BodyTooLargeError(`${what}: ${tooLarge(max)}`);
  }
  if (!response.body) return;
  const seconds = limit("idleSeconds");
  const reader = response.body.getReader();
  const tooSlow = (bytes: number) =>
    new NetworkError(
      bytes === 0
        ? `${what}: nothing received for ${seconds} s (MEMOBUILD_NETWORK_TIMEOUT)`
        : `${what}: only ${bytes} bytes received in ${seconds} s, too slow (MEMOBUILD_NETWORK_TIMEOUT)`,
    );
  let total = 0;
  let windowStart = performance.now();
  let windowBytes = 0;
  let pending: ReturnType<typeof reader.read> | undefined;
  try {
    for (;;) {
      pending ??= reader.read();
      // Stryker disable next-line ArithmeticOperator: the timer's length only sets how often the loop wakes; the window is judged by the clock below
      const left = windowStart + seconds * 1000 - performance.now();
      let timer: ReturnType<typeof setTimeout> | undefined;
      // Stryker disable next-line MethodExpression: as above, a timer of 0 only wakes the loop sooner
      const timeout = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), Math.max(0, left))));
      // Stryker disable next-line ArrowFunction: a timer left set resolves a race already decided (one idle timer per chunk, no decision)
      const next = await Promise.race([pending, timeout]).finally(() => clearTimeout(timer));
      if (next !== "timeout") {
        pending = undefined;
        if (next.done) return;
        total += next.value.length;
        windowBytes += next.value.length;
        if (total > max) throw new BodyTooLargeError(`${what}: ${tooLarge(max)}`);
        yield next.value;
      }
      // Stryker disable next-line EqualityOperator: > and >= differ only when the clock reads the window's end exactly, which no test can arrange
      if (performance.now() - windowStart >= seconds * 1000) {
        if (windowBytes < MIN_BYTES_PER_WINDOW) throw tooSlow(windowBytes);
        windowStart = performance.now();
        windowBytes = 0;
      }
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
