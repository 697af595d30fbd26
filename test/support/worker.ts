/**
 * `memobuild worker` as a real process for end-to-end tests, its log kept for assertions (and
 * drained for as long as it runs, so it never blocks on a full pipe).
 */
import { memobuildBinary } from "./binary.ts";

export interface WorkerProcess {
  process: ReturnType<typeof Bun.spawn>;
  /** Everything the worker wrote to stderr so far. */
  log: () => string;
}

/** A worker of `server` with `token` and the flags that follow (--name, --cache-dir, …), started in `cwd`. */
export function spawnWorker(server: string, token: string, args: string[], cwd?: string): WorkerProcess {
  const child = Bun.spawn([memobuildBinary(), "worker", "--server", server, "--token", token, ...args], { cwd, stdout: "ignore", stderr: "pipe" });
  let log = "";
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr as ReadableStream<Uint8Array>) log += decoder.decode(chunk, { stream: true });
  })();
  return { process: child, log: () => log };
}
