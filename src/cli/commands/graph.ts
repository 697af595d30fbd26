import { hostPlatform } from "../../frontend/platform.ts";
import type { Command } from "commander";
import { planDockerfile } from "../../frontend/plan.ts";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { resolveCacheDir } from "../../config/cache-dir.ts";
import { imageResolver } from "../../solver/images.ts";
import { withStore } from "../store.ts";
import { buildGraph } from "../../graph/graph.ts";
import { GRAPH_FORMATS, renderGraph, type GraphFormat } from "../../graph/render.ts";
import { UsageError } from "../errors.ts";
import { dockerfileOptions, readDockerfileFrom } from "../inputs.ts";
import { commandSettings } from "../settings.ts";
import { buildFlagOptions, parseBuildContexts, type BuildFlags } from "../build-flags.ts";
import { remoteOptions } from "../remote.ts";
import { value } from "../../config/settings.ts";

interface GraphOptions extends BuildFlags {
  format: string;
}

export function registerGraph(program: Command) {
  // The flags of build are taken (a build command line works with the verb changed); only the
  // Dockerfile's, the target and the build args shape the graph.
  remoteOptions(buildFlagOptions(dockerfileOptions(program.command("graph"))))
    .summary("print the build graph of a Dockerfile")
    .description(
      "Print the steps of a Dockerfile as a graph: one node per step, edges for stage order, FROM <stage>, " +
        "COPY --from and RUN --mount=from. Steps the --target does not need are pruned; the level of a node " +
        "says which steps may run in parallel.",
    )
    .option("--format <format>", `output format: ${GRAPH_FORMATS.join("|")}`, "text")
    .action(async (context: string | undefined, options: GraphOptions) => {
      if (!GRAPH_FORMATS.includes(options.format as GraphFormat)) {
        throw new UsageError(`unknown --format "${options.format}" (use ${GRAPH_FORMATS.join(", ")})`);
      }
      const settings = commandSettings(options, context);
      const input = readDockerfileFrom(settings);
      const namedContexts = new Set(parseBuildContexts(options.buildContext).map((c) => c.name));
      const cacheDir = value<string | undefined>(settings, "cacheDir") ?? resolveCacheDir();
      // Base images in the local store give their ENV, so `ENV PATH=/x:$PATH` reads as a build sees it.
      const plan = await withBaseImages(cacheDir, (images) =>
        planDockerfile(input.text, { file: input.displayPath, buildArgs: value(settings, "buildArgs"), namedContexts, images }),
      );
      for (const name of plan.unusedBuildArgs) process.stderr.write(`warning: build arg ${name} is not declared by any ARG\n`);
      for (const { image, name, location } of plan.unknownFromBase) {
        process.stderr.write(`warning: ${location.file}:${location.line}: $${name} may come from the base image ${image}, which is not in the local store: it reads as empty here (memobuild image pull ${image})\n`);
      }
      process.stdout.write(renderGraph(buildGraph(plan, value(settings, "target")), options.format as GraphFormat));
    });
}

type ImageEnv = (ref: string) => { env: string[]; onbuild: string[] } | undefined;

/** Base image configs from the local store, when there is one (graph never creates a cache). */
async function withBaseImages<T>(cacheDir: string, use: (images: ImageEnv) => T): Promise<T> {
  if (!existsSync(join(cacheDir, "memobuild.db"))) return use(() => undefined);
  return withStore(cacheDir, (store) => {
    const resolve = imageResolver(store);
    return use((ref) => {
      const image = resolve(ref, hostPlatform());
      return image ? { env: image.config.config.Env ?? [], onbuild: image.config.config.OnBuild ?? [] } : undefined;
    });
  });
}
