import type { Command } from "commander";
import { hostname } from "node:os";
import { resolve } from "node:path";
import { resolveCacheDir } from "../../config/cache-dir.ts";
import { Worker } from "../../worker/worker.ts";
import { SigningKey } from "../../remote/action.ts";
import { UsageError } from "../errors.ts";
import { collect } from "../collect.ts";
import { parseEntitlements, parseLabels } from "../build-flags.ts";

interface WorkerFlags {
  server?: string;
  token?: string;
  name?: string;
  jobs: string;
  cacheDir?: string;
  signKey?: string;
  remoteTrust: string[];
  label: string[];
  allow: string[];
}

/** The keys the worker's builds trust: those listed and, when there are any, its own (its own results). */
function trustList(flags: WorkerFlags, key: SigningKey | undefined): string[] {
  if (flags.remoteTrust.length === 0 || !key) return flags.remoteTrust;
  return [...flags.remoteTrust, key.publicKey];
}

/**
 * The signing key's absolute path, read once now: each build runs in a job directory of its own,
 * where a path relative to where the worker started names nothing, and a wrong path should stop
 * the worker at start rather than fail every job it takes.
 */
function signingKey(file: string | undefined): { path?: string; key?: SigningKey } {
  if (!file) return {};
  const path = resolve(file);
  return { path, key: SigningKey.load(path) };
}

export function registerWorker(program: Command) {
  program
    .command("worker")
    .summary("run builds from a cache server's queue (remote execution)")
    .description(
      "Take builds that `memobuild build --builder URL` submitted to the server and run them here, with this " +
        "machine's executor and cache; results go to the server's shared cache, signed with --sign-key. The " +
        "server sends each build where its steps are already cached. Needs a worker token (serve --worker-token).",
    )
    .option("--server <url>", "the cache server whose queue to take builds from (default: $MEMOBUILD_REMOTE_URL)")
    .option("--token <token>", "a worker token (default: $MEMOBUILD_TOKEN)")
    .option("--name <name>", "how the server and the hub name this worker (default: the host name)")
    .option("--jobs <n>", "builds at once", "1")
    .option("--cache-dir <dir>", "this worker's own cache (default: $MEMOBUILD_CACHE_DIR, else ~/.cache/memobuild)")
    .option("--sign-key <file>", "sign every result with this Ed25519 key (from `memobuild key generate`); readers trust its public key")
    .option("--remote-trust <pubkey>", "its builds use only step results and cache mount versions signed by this key or its own --sign-key (repeatable: the other workers' keys, CI's)", collect)
    .option("--label <k=v>", "a label the server shows for this worker (repeatable)", collect)
    .option("--allow <entitlement>", "grant network.host or security.insecure to a build that asks for it (build --allow) and was submitted with a read-write token; without it, such a job fails (repeatable)", collect)
    .action(async (flags: WorkerFlags) => {
      const server = flags.server ?? process.env.MEMOBUILD_REMOTE_URL;
      const token = flags.token ?? process.env.MEMOBUILD_TOKEN;
      if (!server) throw new UsageError("memobuild worker needs --server URL (or $MEMOBUILD_REMOTE_URL)");
      if (!token) throw new UsageError("memobuild worker needs a worker token: --token T (or $MEMOBUILD_TOKEN)");
      const jobs = Number(flags.jobs);
      if (!Number.isSafeInteger(jobs) || jobs < 1) throw new UsageError("--jobs must be a whole number of at least 1");
      if (process.getuid?.() !== 0) throw new UsageError("memobuild worker needs root (its builds mount overlayfs and run the OCI runtime)");
      const allow = [...parseEntitlements(flags.allow)];
      const sign = signingKey(flags.signKey);
      const worker = new Worker({
        server,
        token,
        name: flags.name ?? hostname(),
        jobs,
        cacheDir: resolveCacheDir(flags.cacheDir),
        signKey: sign.path,
        trust: trustList(flags, sign.key),
        labels: parseLabels("--label", flags.label),
        allow,
        binary: process.execPath,
        log: (line) => process.stderr.write(`${line}\n`),
      });
      process.once("SIGTERM", () => void worker.stop());
      process.once("SIGINT", () => void worker.stop());
      process.stderr.write(`memobuild worker ${flags.name ?? hostname()} taking builds from ${server}\n`);
      await worker.run();
    });
}
