/** What every route module of the server shares: its context variables and its error shape. */
import type { Context } from "hono";
import type { Role } from "./auth.ts";

export type AppEnv = { Variables: { role: Role; token: string; bytesIn: number; bytesOut: number } };
export type ErrorStatus = 400 | 401 | 403 | 404 | 409 | 413 | 415 | 426 | 429 | 500 | 503 | 504;

/** Errors are JSON `{ "error": "..." }` everywhere. */
export const error = (c: Context, status: ErrorStatus, message: string) => c.json({ error: message }, status);

/** True when a browser request comes from this server's own pages (or from no page at all). */
export function sameOrigin(c: Context): boolean {
  const origin = c.req.header("origin");
  if (origin === undefined) return true;
  try {
    return new URL(origin).host === c.req.header("host");
  } catch {
    return false;
  }
}

/** A request body as text, read only up to `max` bytes: undefined when it is longer. */
export async function boundedText(request: Request, max: number): Promise<string | undefined> {
  const declared = Number(request.headers.get("content-length") ?? NaN);
  if (declared > max) return undefined;
  if (!request.body) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of request.body as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    if (size > max) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}
