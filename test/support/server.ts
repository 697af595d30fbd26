/**
 * `memobuild serve` as a real process for end-to-end tests: on a free loopback port (the
 * kernel picks it), its log kept for assertions, stopped by its pid.
 */
import { memobuildBinary } from "./binary.ts";

export interface CacheServer {
  url: string;
  data: string;
  process: ReturnType<typeof Bun.spawn>;
  /** Everything the server wrote to stderr so far. */
  log(): string;
  stop(signal?: NodeJS.Signals): Promise<number>;
}

export async function startCacheServer(data: string, args: string[] = [], env: Record<string, string> = {}): Promise<CacheServer> {
  const child = Bun.spawn([memobuildBinary(), "serve", "--listen", "127.0.0.1:0", "--data", data, ...args], {
    stdout: "ignore",
    stderr: "pipe",
    env: { ...process.env, ...env },
  });
  let log = "";
  let announced = (_url: string) => {};
  const listening = new Promise<string>((resolve) => (announced = resolve));
  // Drained for as long as the server runs, so its request log never blocks it.
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr as ReadableStream<Uint8Array>) {
      log += decoder.decode(chunk, { stream: true });
      const match = /listening on (\S+)/.exec(log);
      if (match) announced(match[1]);
    }
  })();
  const url = await Promise.race([listening, child.exited.then(() => undefined), Bun.sleep(15_000).then(() => undefined)]);
  if (!url) {
    child.kill("SIGKILL");
    throw new Error(`memobuild serve did not start:\n${log}`);
  }
  return {
    url,
    data,
    process: child,
    log: () => log,
    stop: async (signal = "SIGTERM") => {
      child.kill(signal);
      return child.exited;
    },
  };
}
