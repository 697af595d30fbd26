import { readBodyBytes } from "../../util/network.ts";
import { terminalText } from "../../util/terminal-text.ts";
import type { Command } from "commander";
import { formatBytes, formatInUnitOf, parseSize } from "../../util/sizes.ts";
import { collectGarbage, directorySize, prune, usage } from "../../cache/gc.ts";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { MountScopeInfo } from "../../remote/mount-manifest.ts";
import { openRemote } from "../remote.ts";
import { commandSettings } from "../settings.ts";
import { withExclusiveStore, withStore } from "../store.ts";
import { UsageError } from "../errors.ts";
import { UserError } from "../../errors.ts";
import { formatTable } from "../table.ts";


export function registerCache(program: Command) {
  const cache = program.command("cache").summary("inspect and trim the local build cache");

  cache
    .command("ls")
    .summary("list cached step results, most recently used first")
    .option("--cache-dir <dir>", "cache directory")
    .action((flags: { cacheDir?: string }) =>
      withStore(flags.cacheDir, (store) => {
        const rows = store.stepResults();
        process.stdout.write("KEY               LAYER                SIZE        LAST USED            INSTRUCTION\n");
        for (const row of rows) {
          const layer = row.diffId ? row.diffId.slice(0, 19) : "(config only)";
          const size = row.size === null ? "-" : formatBytes(row.size);
          // Results recorded by versions before the instruction was kept show "-".
          const instruction = row.instruction ?? "-";
          process.stdout.write(`${row.key.slice(0, 16)}  ${layer.padEnd(19)}  ${size.padStart(10)}  ${new Date(row.lastUsed).toISOString().slice(0, 19).replace("T", " ")}  ${instruction}\n`);
        }
      }),
    );

  cache
    .command("du")
    .summary("show how much space the cache uses")
    .option("--cache-dir <dir>", "cache directory")
    .action((flags: { cacheDir?: string }) =>
      withStore(flags.cacheDir, (store) => {
        const u = usage(store);
        process.stdout.write(
          [
            `blobs (layers, configs, manifests)             ${formatBytes(u.blobs)}`,
            `snapshots (unpacked layers)                    ${formatBytes(u.snapshots)}`,
            `cache mounts (RUN --mount=type=cache)          ${formatBytes(u.mounts)}`,
            `total                                          ${formatBytes(u.total)}`,
            `${u.steps} step result(s), ${u.layers} layer(s), ${u.images} named image(s) in ${store.dir}`,
            "",
          ].join("\n"),
        );
      }),
    );

  cache
    .command("gc")
    .summary("evict least recently used results until the cache fits a size")
    .requiredOption("--max-size <size>", "the size to fit in, e.g. 10GB or 500M")
    .option("--cache-dir <dir>", "cache directory")
    .action((flags: { maxSize: string; cacheDir?: string }) => {
      let max: number;
      try {
        max = parseSize(flags.maxSize);
      } catch (error) {
        throw new UsageError((error as Error).message);
      }
      withExclusiveStore(flags.cacheDir, (store) => {
        const result = collectGarbage(store, max);
        // Sizes in the unit the user gave (--max-size 500M: megabytes), so the numbers compare at a glance.
        const inUnit = (bytes: number) => formatInUnitOf(bytes, flags.maxSize);
        process.stdout.write(`removed ${result.stepsRemoved} step result(s) and ${result.layersRemoved} layer(s), freed ${inUnit(result.bytesFreed)}; now ${inUnit(usage(store).total)} of ${inUnit(max)}\n`);
      });
    });

  cache
    .command("prune")
    .summary("remove every cached step result (named images stay)")
    .option("--mounts", "also empty the RUN --mount=type=cache directories")
    .option("--cache-dir <dir>", "cache directory")
    .action((flags: { mounts?: boolean; cacheDir?: string }) =>
      withExclusiveStore(flags.cacheDir, (store) => {
        const result = prune(store, { mounts: flags.mounts === true });
        process.stdout.write(`removed ${result.stepsRemoved} step result(s) and ${result.layersRemoved} layer(s), freed ${formatBytes(result.bytesFreed)}\n`);
      }),
    );
  registerCacheMounts(cache);
}

/** `memobuild cache mounts ls [--remote]`: the RUN --mount=type=cache directories here, or on the remote. */
export function registerCacheMounts(cache: Command) {
  cache
    .command("mounts")
    .summary("RUN --mount=type=cache directories")
    .command("ls")
    .summary("list cache mounts: ids, sizes, the shared version each holds (--remote: versions on the cache server and who published them)")
    .option("--cache-dir <dir>", "cache directory")
    .option("--remote", "list the cache server's shared mounts ($MEMOBUILD_REMOTE_URL or the config file's remote.url)")
    .action(async (flags: { cacheDir?: string; remote?: boolean }) => {
      if (flags.remote) return listRemoteMounts();
      const { readMountState } = await import("../../remote/mount-sync.ts");
      withStore(flags.cacheDir, (store) => {
        const dir = join(store.dir, "mounts");
        const names = existsSync(dir) ? readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory() && !e.name.includes(".")).map((e) => e.name).sort() : [];
        const rows = names.map((name) => {
          const path = join(dir, name);
          const base = join(dir, name.replace(/-\d+$/, ""));
          // A mount's id comes from a Dockerfile: shown as text only.
          const id = existsSync(`${base}.id`) ? terminalText(readFileSync(`${base}.id`, "utf8"), { max: 200 }) : "-";
          const state = readMountState(path);
          const version = state?.version ? state.version.slice(0, 12) : "-";
          return [id, name, formatBytes(directorySize(path)), version, shortKey(state?.signer ?? null)];
        });
        process.stdout.write(formatTable(["ID", "DIRECTORY", "SIZE", "VERSION", "SIGNER"], rows, new Set([2])));
      });
    });
}

/** The first figure the listing prints that is not a whole number (texts are made safe where printed). */
function notWholeNumber(scopes: MountScopeInfo[]): string | undefined {
  if (!Array.isArray(scopes)) return "scopes";
  for (const [i, s] of scopes.entries()) {
    const figures: [string, unknown][] = [["versions", s?.versions], ["stored", s?.stored], ["current.files", s?.current?.files], ["current.size", s?.current?.size], ["current.published", s?.current?.published]];
    const bad = figures.find(([, value]) => !Number.isSafeInteger(value) || (value as number) < 0);
    if (bad) return `scopes[${i}].${bad[0]}`;
  }
  return undefined;
}

const shortKey = (key: string | null) => (key ? `${key.slice(0, 20)}…` : "-");

async function listRemoteMounts() {
  const settings = commandSettings({});
  const remote = await openRemote(settings, (message) => process.stderr.write(`memobuild: warning: ${message}\n`));
  if (!remote) throw new UsageError("--remote lists the cache server's mounts: set $MEMOBUILD_REMOTE_URL or remote.url in a config file");
  const response = await remote.request("GET", "/v1/mounts", { timeoutMs: 30_000 });
  if (!response?.ok) throw new UsageError(`the remote cache at ${remote.base} did not list its cache mounts${response ? ` (HTTP ${response.status})` : ""}`);
  // The server's answer is bounded, and every text in it made safe for a terminal before it is printed.
  const { scopes } = JSON.parse((await readBodyBytes(response, 16 * 1024 * 1024, "the list of cache mounts", (max) => `larger than ${max} bytes`)).toString("utf8")) as { scopes: MountScopeInfo[] };
  const bad = notWholeNumber(scopes);
  if (bad) throw new UserError(`the remote cache at ${remote.base} sent a list of cache mounts that is not valid: ${bad} is not a whole number`);
  const rows = scopes.map((s) => [
    terminalText(s.label.id, { max: 200 }),
    terminalText(s.label.scope ?? "-", { max: 100 }),
    String(s.versions),
    String(s.current.files),
    formatBytes(s.current.size),
    formatBytes(s.stored),
    terminalText(s.current.id, { max: 12 }).slice(0, 12),
    terminalText(s.current.signer ? shortKey(s.current.signer) : `token ${s.current.author ?? "-"}`, { max: 40 }),
    new Date(s.current.published).toISOString().slice(0, 19).replace("T", " "),
  ]);
  const header = ["ID", "SCOPE", "VERSIONS", "FILES", "SIZE", "STORED", "CURRENT", "PUBLISHED BY", "WHEN"];
  process.stdout.write(formatTable(header, rows, new Set([2, 3, 4, 5])));
}
