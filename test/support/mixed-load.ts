/**
 * Mixed load on a cache server: clients fetching a stored 4 KiB blob as fast as they can, with
 * or without other clients uploading new 64 KiB blobs at the same time. Used by
 * bench/server-mixed-load.ts (long runs) and by a bounded test (a few seconds).
 */
import { blake3Hex } from "../../src/hash/blake3.ts";

export interface LoadResult {
  hits: number;
  hitsPerSecond: number;
  p99Ms: number;
  maxMs: number;
  uploads: number;
  errors: string[];
}

/** `url` may name several replicas: each client talks to one of them (no stickiness needed). */
export async function mixedLoad(options: { url: string | string[]; token: string; seconds: number; downloaders: number; uploaders: number }): Promise<LoadResult> {
  const headers = { authorization: `Bearer ${options.token}` };
  const urls = typeof options.url === "string" ? [options.url] : options.url;
  const small = new Uint8Array(4096).fill(7);
  const smallHash = blake3Hex(small);
  await fetch(`${urls[0]}/v1/blobs/${smallHash}`, { method: "PUT", headers, body: small });
  const latencies: number[] = [];
  const errors: string[] = [];
  let uploads = 0;
  const deadline = performance.now() + options.seconds * 1000;
  const download = async (client: number) => {
    const url = urls[client % urls.length];
    while (performance.now() < deadline) {
      const started = performance.now();
      try {
        const response = await fetch(`${url}/v1/blobs/${smallHash}`, { headers });
        const body = await response.arrayBuffer();
        if (response.status !== 200 || body.byteLength !== 4096) errors.push(`GET: HTTP ${response.status}`);
      } catch (error) {
        errors.push(`GET: ${(error as Error).message}`);
      }
      latencies.push(performance.now() - started);
    }
  };
  const upload = async (client: number) => {
    const url = urls[client % urls.length];
    for (let n = 0; performance.now() < deadline; n++) {
      const body = new Uint8Array(64 * 1024);
      new DataView(body.buffer).setFloat64(0, Math.random());
      body.set(new TextEncoder().encode(`${client}-${n}`), 8);
      try {
        const response = await fetch(`${url}/v1/blobs/${blake3Hex(body)}`, { method: "PUT", headers, body });
        await response.arrayBuffer();
        if (response.status !== 201) errors.push(`PUT: HTTP ${response.status}`);
        else uploads++;
      } catch (error) {
        errors.push(`PUT: ${(error as Error).message}`);
      }
    }
  };
  await Promise.all([...Array.from({ length: options.downloaders }, (_, i) => download(i)), ...Array.from({ length: options.uploaders }, (_, i) => upload(i))]);
  latencies.sort((a, b) => a - b);
  return {
    hits: latencies.length,
    hitsPerSecond: latencies.length / options.seconds,
    p99Ms: latencies[Math.floor(latencies.length * 0.99)] ?? 0,
    maxMs: latencies.at(-1) ?? 0,
    uploads,
    errors,
  };
}
