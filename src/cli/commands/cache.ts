import type { Command } from "commander";
import { formatBytes, formatInUnitOf, parseSize } from "../../util/sizes.ts";
import { collectGarbage, prune, usage } from "../../cache/gc.ts";
import { withExclusiveStore, withStore } from "../store.ts";
import { UsageError } from "../errors.ts";


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
}
