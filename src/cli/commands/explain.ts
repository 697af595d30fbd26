import type { Command } from "commander";
import { statCacheFile } from "../../config/cache-dir.ts";
import { withStore } from "../store.ts";
import { explainSteps, type Explanation } from "../../solver/explain.ts";
import { silentProgress } from "../../solver/progress.ts";
import { build, buildRecordName } from "../../solver/solver.ts";
import { dockerfileFacts, dockerfileOptions, readDockerfileFrom } from "../inputs.ts";
import { openRemote, remoteOptions } from "../remote.ts";
import { commandSettings } from "../settings.ts";
import { UsageError } from "../errors.ts";
import { buildFlagOptions, platformsFrom, networkFrom, parseBuildContexts, sandboxFrom, type BuildFlags } from "../build-flags.ts";
import { resolveNamedContexts } from "../named-contexts.ts";
import { value } from "../../config/settings.ts";
import type { RemoteCache } from "../../remote/client.ts";
import { remoteSettings } from "../../config/remote.ts";
import { terminalText } from "../../util/terminal-text.ts";

export function registerExplain(program: Command) {
  remoteOptions(buildFlagOptions(dockerfileOptions(program.command("explain"))))
    .summary("say, for every step, whether it would hit the cache and why not")
    .description(
      "Compute every step's cache key without running anything, and compare each step's inputs with the last " +
        "build of the same Dockerfile and target: which files changed and how, which build arg, which base image " +
        "digest, which stage, or only the parent step.",
    )
    .option("--json", "print JSON")
    .option("--builder <url>", "a build server whose workers ran the last build (also $MEMOBUILD_BUILDER): its cache is checked for hits when no --remote is given")
    .action(async (context: string | undefined, flags: BuildFlags & { json?: boolean; builder?: string }) => {
      // The flags of build are taken, so a build command line works with the verb changed;
      // those that change a key (args, target, --add-host, --shm-size, --ulimit) are used.
      const settings = commandSettings(flags, context);
      const platforms = platformsFrom(flags.platform);
      if (platforms && platforms.length > 1) throw new UsageError(`--platform ${flags.platform}: explain one platform at a time (each is built, and keyed, apart)`);
      const platform = platforms?.[0];
      const input = readDockerfileFrom(settings);
      const warn = (message: string) => process.stderr.write(`warning: ${message}\n`);
      const builder = flags.builder ?? process.env.MEMOBUILD_BUILDER;
      // Results of builds run on workers are in the builder's cache, written by the workers.
      const remote = (await openRemote(settings, warn)) ?? (builder ? new (await import("../../remote/client.ts")).RemoteCache({ url: builder, token: remoteSettings(settings, warn).token, warn }) : undefined);
      const contextSpecs = parseBuildContexts(flags.buildContext);
      await withStore(value(settings, "cacheDir"), async (store) => {
        const namedContexts = await resolveNamedContexts(contextSpecs, store, undefined);
        const facts = dockerfileFacts(input);
        const result = await build({
          ...facts,
          buildArgs: value(settings, "buildArgs"),
          target: value(settings, "target"),
          noCache: false,
          store,
          statCacheFile: statCacheFile(store.dir, input.contextDir),
          secrets: new Map(),
          network: networkFrom(flags),
          sandbox: sandboxFrom(flags),
          namedContexts,
          progress: silentProgress,
          dryRun: true,
          remote,
          platform,
        });
        const last = store.lastBuildInputs(buildRecordName(facts.dockerfileAbsolute ?? input.displayPath, platform), result.graph.target.id);
        const explanations = explainSteps(result.steps, result.inputs, last);
        if (remote) await addConflicts(remote, result.steps, explanations);
        if (flags.json) {
          process.stdout.write(JSON.stringify(explanations, null, 2) + "\n");
          return;
        }
        // Only steps that do work (RUN, COPY, ADD, WORKDIR) count, as in the build's summary.
        const work = explanations.filter((e) => !e.configOnly);
        const misses = work.filter((e) => !e.hit).length;
        for (const e of explanations) {
          process.stdout.write(`${e.hit ? "hit " : "MISS"}  ${e.name}${e.worker ? `  (last build: worker ${terminalText(e.worker, { max: 64 })})` : ""}\n`);
          // Reasons quote the context's file names (a pull request's) and conflicts the server's words.
          if (!e.hit) for (const reason of e.reasons) process.stdout.write(`        ${terminalText(reason)}\n`);
          for (const conflict of e.conflicts ?? []) process.stdout.write(`        CONFLICT ${terminalText(conflict)}\n`);
        }
        process.stdout.write(`${work.length - misses} of ${work.length} step(s) would come from the cache; ${misses} would run\n`);
      });
    });
}

/** Marks the steps whose key the remote cache saw conflicting results for. */
async function addConflicts(remote: RemoteCache, steps: { id: string; key: string }[], explanations: Explanation[]) {
  const byKey = new Map<string, string[]>();
  for (const c of await remote.conflicts()) {
    const who = (side: { author: string | null; signer: string | null }) => [side.signer ? `signer ${side.signer}` : "unsigned", side.author ? `token ${side.author}` : undefined].filter(Boolean).join(", ");
    const line = `${new Date(c.time).toISOString()}: the remote kept result ${c.first.result.slice(0, 12)} (${who(c.first)}) and refused ${c.second.result.slice(0, 12)} (${who(c.second)}): another writer offered another result (a step that is not deterministic, or someone trying to replace its result)`;
    byKey.set(c.key, [...(byKey.get(c.key) ?? []), line]);
  }
  const keyOf = new Map(steps.map((s) => [s.id, s.key]));
  for (const e of explanations) {
    const lines = byKey.get(keyOf.get(e.id) ?? "");
    if (lines) e.conflicts = lines;
  }
}
