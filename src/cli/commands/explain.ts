import type { Command } from "commander";
import { resolve } from "node:path";
import { statCacheFile } from "../../config/cache-dir.ts";
import { withStore } from "../store.ts";
import { explainSteps } from "../../solver/explain.ts";
import { silentProgress } from "../../solver/progress.ts";
import { build } from "../../solver/solver.ts";
import { dockerfileOptions, parseBuildArgs, readDockerfile } from "../inputs.ts";

export function registerExplain(program: Command) {
  dockerfileOptions(program.command("explain"))
    .summary("say, for every step, whether it would hit the cache and why not")
    .description(
      "Compute every step's cache key without running anything, and compare each step's inputs with the last " +
        "build of the same Dockerfile and target: which files changed and how, which build arg, which base image " +
        "digest, which stage, or only the parent step.",
    )
    .option("--json", "print JSON")
    .option("--cache-dir <dir>", "cache directory (default: $MEMOBUILD_CACHE_DIR or ~/.cache/memobuild)")
    .action(async (context: string, flags: { file?: string; target?: string; buildArg: string[]; json?: boolean; cacheDir?: string }) => {
      const input = readDockerfile(context, flags.file);
      await withStore(flags.cacheDir, async (store) => {
        const dockerfileAbsolute = flags.file === "-" ? undefined : resolve(input.displayPath);
        const result = await build({
          contextDir: input.contextDir,
          dockerfileText: input.text,
          dockerfilePath: input.displayPath,
          dockerfileAbsolute,
          buildArgs: parseBuildArgs(flags.buildArg),
          target: flags.target,
          noCache: false,
          store,
          statCacheFile: statCacheFile(store.dir, input.contextDir),
          secrets: new Map(),
          network: "none",
          progress: silentProgress,
          dryRun: true,
        });
        const last = store.lastBuildInputs(dockerfileAbsolute ?? input.displayPath, result.graph.target.id);
        const explanations = explainSteps(result.steps, result.inputs, last);
        if (flags.json) {
          process.stdout.write(JSON.stringify(explanations, null, 2) + "\n");
          return;
        }
        const misses = explanations.filter((e) => !e.hit).length;
        for (const e of explanations) {
          process.stdout.write(`${e.hit ? "hit " : "MISS"}  ${e.id.padEnd(12)} ${e.instruction.split("\n")[0]}\n`);
          if (!e.hit) for (const reason of e.reasons) process.stdout.write(`        ${reason}\n`);
        }
        process.stdout.write(`${explanations.length - misses} of ${explanations.length} step(s) would come from the cache; ${misses} would run\n`);
      });
    });
}
