import type { Command } from "commander";
import { planDockerfile } from "../../frontend/plan.ts";
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
    .action((context: string | undefined, options: GraphOptions) => {
      if (!GRAPH_FORMATS.includes(options.format as GraphFormat)) {
        throw new UsageError(`unknown --format "${options.format}" (use ${GRAPH_FORMATS.join(", ")})`);
      }
      const settings = commandSettings(options, context);
      const input = readDockerfileFrom(settings);
      const namedContexts = new Set(parseBuildContexts(options.buildContext).map((c) => c.name));
      const plan = planDockerfile(input.text, { file: input.displayPath, buildArgs: value(settings, "buildArgs"), namedContexts });
      for (const name of plan.unusedBuildArgs) process.stderr.write(`warning: build arg ${name} is not declared by any ARG\n`);
      process.stdout.write(renderGraph(buildGraph(plan, value(settings, "target")), options.format as GraphFormat));
    });
}
