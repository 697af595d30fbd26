import type { Command } from "commander";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { statCacheFile } from "../../config/cache-dir.ts";
import { withStore } from "../store.ts";
import { exportImage, parseOutputSpec } from "../../image/export.ts";
import { normalizeReference } from "../../image/reference.ts";
import { hostname } from "node:os";
import { formatPlatform, hostPlatform } from "../../frontend/platform.ts";
import type { ProgressSink } from "../../solver/progress.ts";
import { displayMode, openDisplay, type BuildOutcome, type Display, type OutputResult } from "../display.ts";
import type { LocalStore } from "../../cache/store.ts";
import type { OutputSpec } from "../../image/export.ts";
import type { RegistryOptions } from "../../registry/client.ts";
import type { StoredImage } from "../../image/layout.ts";
import { BuildReporter } from "../../report/reporter.ts";
import { ciMetadata } from "../../report/ci.ts";
import { build } from "../../solver/solver.ts";
import { insecureRegistries } from "../../registry/client.ts";
import { pullImage, pushImage } from "../../registry/transfer.ts";
import { openRemote, remoteOptions } from "../remote.ts";
import { commandSettings, type SettingFlags } from "../settings.ts";
import { value } from "../../config/settings.ts";
import { parseSshSpec, SshAgents } from "../../executor/ssh.ts";
import { UsageError } from "../errors.ts";
import { collect, dockerfileOptions, readDockerfileFrom } from "../inputs.ts";

interface BuildFlags extends SettingFlags {
  output: string[];
  metadataFile?: string;
  cache: boolean;
  secret: string[];
  ssh: string[];
  network: string;
  allow: string[];
  buildLabel: string[];
  label: string[];
  iidfile?: string;
  insecureRegistry: string[];
}

/** `--label k=v` (the image's) and `--build-label k=v` (the build's, in the build hub). */
export function parseLabels(flag: string, values: string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const value of values) {
    const eq = value.indexOf("=");
    if (eq < 1) throw new UsageError(`${flag} ${value}: use NAME=VALUE`);
    labels[value.slice(0, eq)] = value.slice(eq + 1);
  }
  if (Object.keys(labels).length > 64) throw new UsageError(`${flag}: at most 64 labels`);
  return labels;
}

/**
 * `--secret` as buildx reads it: `[type=file|env,]id=ID[,src=PATH|,env=VAR]`. Without src or
 * env, the variable named ID. The value is read now, so no path or variable is read later.
 */
export function parseSecret(spec: string): [string, Buffer] {
  const fields: Record<string, string> = {};
  for (const field of spec.split(",")) {
    const eq = field.indexOf("=");
    const key = eq < 0 ? field : field.slice(0, eq);
    if (!["type", "id", "src", "source", "env"].includes(key)) throw new UsageError(`--secret ${spec}: unknown key "${key}" (use type=, id=, src= or env=)`);
    fields[key] = eq < 0 ? "" : field.slice(eq + 1);
  }
  const { id, type = "file" } = fields;
  if (!id) throw new UsageError(`--secret ${spec}: id=ID is required`);
  if (type !== "file" && type !== "env") throw new UsageError(`--secret ${spec}: type must be file or env, not "${type}"`);
  const source = fields.src ?? fields.source;
  if (type === "file" && source !== undefined) {
    if (!existsSync(source)) throw new UsageError(`--secret id=${id}: file ${source} does not exist`);
    return [id, readFileSync(source)];
  }
  const variable = fields.env ?? source ?? id;
  const value = process.env[variable];
  if (value === undefined) throw new UsageError(`--secret id=${id}: the environment variable ${variable} is not set${type === "file" ? " (or give src=PATH)" : ""}`);
  return [id, Buffer.from(value)];
}

/** Runs the build; a failure ends the display and is reported (when reporting) before it propagates. */
async function reported<T>(reporter: BuildReporter | undefined, display: Display, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    display.abort();
    await reporter?.finish({ result: "failed", error: (error as Error).message });
    throw error;
  }
}

const ENTITLEMENTS = ["network.host", "security.insecure"] as const;
export type Entitlement = (typeof ENTITLEMENTS)[number];

export function parseEntitlements(values: string[]): Set<Entitlement> {
  for (const value of values) {
    if (!(ENTITLEMENTS as readonly string[]).includes(value)) throw new UsageError(`--allow ${value}: unknown entitlement (use ${ENTITLEMENTS.join(" or ")})`);
  }
  return new Set(values as Entitlement[]);
}

export function registerBuild(program: Command) {
  remoteOptions(dockerfileOptions(program.command("build")))
    .summary("build an image from a Dockerfile")
    .description(
      "Build an image from a Dockerfile, running only the steps whose inputs changed. RUN steps run in a " +
        "container (crun or runc) on an overlayfs snapshot; results are cached by content in the cache directory " +
        "and, with --remote, shared through a cache server. Base images come from the local image store, or are pulled.",
    )
    .option("-t, --tag <ref>", "name the image in the local store (repeatable)", collect)
    .option("--label <name=value>", "set a label on the image, as LABEL would (repeatable)", collect)
    .option("-q, --quiet", "print only the image ID (its config digest) on stdout; warnings and errors still go to stderr")
    .option("--iidfile <file>", "write the image ID (its config digest) to this file")
    .option("--output <spec>", "also export: type=oci,dest=DIR | type=oci-archive,dest=FILE | type=docker-archive,dest=FILE | type=registry (push every -t); oci ones take compression=gzip|uncompressed (repeatable)", collect)
    .option("--insecure-registry <host>", "use plain HTTP for this registry (repeatable; also $MEMOBUILD_INSECURE_REGISTRIES)", collect)
    .option("--metadata-file <file>", "write the image digest and every step's status as JSON")
    .option("--no-cache", "run every step, ignoring cached results")
    .option("--progress <mode>", "auto|tty|plain|json|quiet (default: auto: tty on a terminal, else plain)")
    .option("--cache-dir <dir>", "cache directory (default: $MEMOBUILD_CACHE_DIR or ~/.cache/memobuild)")
    .option("--secret <spec>", "[type=file|env,]id=ID[,src=PATH|,env=VAR]: a secret for RUN --mount=type=secret (repeatable)", collect)
    .option("--ssh <spec>", "ID[=SOCKET|KEY[,KEY]]: an SSH agent for RUN --mount=type=ssh; `default` alone forwards $SSH_AUTH_SOCK (repeatable)", collect)
    .option("--network <mode>", "network for RUN: none|host", "none")
    .option("--allow <entitlement>", "let the Dockerfile use network.host (RUN --network=host) or security.insecure (RUN --security=insecure) (repeatable)", collect)
    .option("--jobs <n>", "how many independent stages may build at once (default: the number of CPUs)")
    .option("--build-label <name=value>", "a label for this build in the build hub's history, e.g. team=web (repeatable)", collect)
    .action(async (context: string | undefined, flags: BuildFlags) => {
      const settings = commandSettings(flags, context);
      const progressMode = value<string>(settings, "progress");
      if (!["none", "host"].includes(flags.network)) throw new UsageError(`--network must be none or host`);
      const jobs = value<number | undefined>(settings, "jobs");
      const outputs = flags.output.map((spec) => parseOutputSpec(spec, (path) => resolve(path)));
      if (outputs.some((o) => o.type === "registry") && value<string[]>(settings, "tags").length === 0) throw new UsageError("--output type=registry pushes the -t names: give at least one");
      const registry = { insecure: insecureRegistries(flags.insecureRegistry) };
      const tags = value<string[]>(settings, "tags").map((tag) => {
        try {
          return normalizeReference(tag);
        } catch (error) {
          throw new UsageError((error as Error).message);
        }
      });
      const secrets = new Map(flags.secret.map(parseSecret));
      const sshSpecs = (flags.ssh ?? []).map((spec) => {
        try {
          return parseSshSpec(spec);
        } catch (error) {
          throw new UsageError((error as Error).message);
        }
      });
      const allow = parseEntitlements(flags.allow);
      const buildLabels = parseLabels("--build-label", flags.buildLabel);
      const imageLabels = parseLabels("--label", flags.label);
      if (process.getuid?.() !== 0) throw new UsageError("memobuild build needs root (overlayfs mounts and the OCI runtime)");
      const input = readDockerfileFrom(settings);
      const display = openDisplay(displayMode(progressMode));
      const printer = display.sink;
      const remote = openRemote(settings, (message) => printer({ type: "warning", message }));
      await remote?.probe(); // a wrong token is an error before any work
      const reporter =
        remote && value(settings, "remote.report") === "on"
          ? new BuildReporter((id, events) => remote.report(id, events), {
              dockerfile: input.displayPath,
              platform: formatPlatform(hostPlatform()),
              host: hostname(),
              labels: buildLabels,
              ci: ciMetadata(),
            }, { warn: (message) => printer({ type: "warning", message }) })
          : undefined;
      const progress: ProgressSink = reporter ? (event) => (printer(event), reporter.sink(event)) : printer;
      await reported(reporter, display, () => withStore(value(settings, "cacheDir"), async (store) => {
        const ssh = await SshAgents.start(sshSpecs);
        const result = await build({
          contextDir: input.contextDir,
          dockerfileText: input.text,
          dockerfilePath: input.displayPath,
          dockerfileAbsolute: input.displayPath === "<stdin>" ? undefined : resolve(input.displayPath),
          buildArgs: value(settings, "buildArgs"),
          target: value(settings, "target"),
          noCache: !flags.cache,
          store,
          statCacheFile: statCacheFile(store.dir, input.contextDir),
          secrets,
          network: flags.network as "none" | "host",
          allow,
          progress,
          jobs,
          remote,
          remoteUpload: value(settings, "remote.upload"),
          labels: imageLabels,
          pull: async (ref) => void (await pullImage(store, ref, registry, (line) => progress({ type: "output", line }))),
          ssh,
        }).finally(() => ssh.stop());
        const image = result.image!;
        for (const tag of tags) store.setImage(tag, image.manifestDigest);
        const exported = await exportOutputs(store, image, outputs, tags, registry, progress);
        const outcome: BuildOutcome = { imageId: image.manifest.config.digest, digest: exported[0]?.digest ?? image.manifestDigest, outputs: exported, tags, steps: result.steps };
        await reporter?.finish({ result: "success", image: outcome.digest });
        if (flags.metadataFile) writeMetadata(flags.metadataFile, outcome);
        if (flags.iidfile) writeFileSync(flags.iidfile, outcome.imageId);
        display.finish(outcome);
        await remote?.flush(); // background uploads finish after the report
      }));
    });
}

/** Each output in turn; each listed with the digest a user meets there. */
async function exportOutputs(store: LocalStore, image: StoredImage, outputs: OutputSpec[], tags: string[], registry: RegistryOptions, progress: ProgressSink): Promise<OutputResult[]> {
  const exported: OutputResult[] = [];
  for (const output of outputs) {
    if (output.type === "registry") {
      for (const tag of tags) {
        const digest = await pushImage(store, image, tag, registry, (line) => progress({ type: "output", line: `push ${tag}: ${line}` }));
        exported.push({ type: "registry", dest: tag, digest });
      }
      continue;
    }
    const result = await exportImage(store, image, output, tags);
    exported.push({ type: output.type, dest: output.dest, digest: result.manifestDigest });
  }
  return exported;
}

function writeMetadata(file: string, outcome: BuildOutcome) {
  const metadata = {
    // The digest of the image as exported (compressed layers), as BuildKit reports it.
    "containerimage.digest": outcome.digest,
    "containerimage.config.digest": outcome.imageId,
    "image.name": outcome.tags.join(","),
    outputs: outcome.outputs,
    steps: outcome.steps,
  };
  writeFileSync(file, JSON.stringify(metadata, null, 2) + "\n");
}
