import type { Command } from "commander";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { statCacheFile } from "../../config/cache-dir.ts";
import { withStore } from "../store.ts";
import { exportImage, parseOutputSpec } from "../../image/export.ts";
import { normalizeReference } from "../../image/reference.ts";
import { hostname } from "node:os";
import { formatPlatform, hostPlatform } from "../../frontend/platform.ts";
import { jsonProgress, plainProgress, quietProgress, type ProgressSink } from "../../solver/progress.ts";
import { BuildReporter } from "../../report/reporter.ts";
import { ciMetadata } from "../../report/ci.ts";
import { build } from "../../solver/solver.ts";
import { insecureRegistries } from "../../registry/client.ts";
import { pullImage, pushImage } from "../../registry/transfer.ts";
import { openRemote, remoteOptions, type RemoteFlags } from "../remote.ts";
import { parseSshSpec, SshAgents } from "../../executor/ssh.ts";
import { UsageError } from "../errors.ts";
import { collect, dockerfileOptions, parseBuildArgs, readDockerfile } from "../inputs.ts";

interface BuildFlags extends RemoteFlags {
  file?: string;
  tag: string[];
  target?: string;
  buildArg: string[];
  output: string[];
  metadataFile?: string;
  cache: boolean;
  progress: string;
  cacheDir?: string;
  secret: string[];
  ssh: string[];
  network: string;
  allow: string[];
  jobs?: string;
  remoteUpload: string;
  remoteReport: string;
  buildLabel: string[];
  label: string[];
  quiet?: boolean;
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

/** Runs the build; a failure is reported (when reporting) before it propagates. */
async function reported<T>(reporter: BuildReporter | undefined, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
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
    .option("--progress <mode>", "auto|plain|json", "auto")
    .option("--cache-dir <dir>", "cache directory (default: $MEMOBUILD_CACHE_DIR or ~/.cache/memobuild)")
    .option("--secret <spec>", "[type=file|env,]id=ID[,src=PATH|,env=VAR]: a secret for RUN --mount=type=secret (repeatable)", collect)
    .option("--ssh <spec>", "ID[=SOCKET|KEY[,KEY]]: an SSH agent for RUN --mount=type=ssh; `default` alone forwards $SSH_AUTH_SOCK (repeatable)", collect)
    .option("--network <mode>", "network for RUN: none|host", "none")
    .option("--allow <entitlement>", "let the Dockerfile use network.host (RUN --network=host) or security.insecure (RUN --security=insecure) (repeatable)", collect)
    .option("--jobs <n>", "how many independent stages may build at once (default: the number of CPUs)")
    .option("--remote-upload <mode>", "wait (upload during the build, wait at its end) | background (report first) | off", "wait")
    .option("--remote-report <mode>", "on: report the build (steps, misses and why, result) to the remote cache's build hub | off", "on")
    .option("--build-label <name=value>", "a label for this build in the build hub's history, e.g. team=web (repeatable)", collect)
    .action(async (context: string, flags: BuildFlags) => {
      if (!["auto", "plain", "json"].includes(flags.progress)) throw new UsageError(`--progress must be auto, plain or json`);
      if (!["none", "host"].includes(flags.network)) throw new UsageError(`--network must be none or host`);
      const jobs = flags.jobs === undefined ? undefined : Number(flags.jobs);
      if (jobs !== undefined && (!Number.isInteger(jobs) || jobs < 1)) throw new UsageError(`--jobs must be a whole number of at least 1`);
      const outputs = flags.output.map((spec) => parseOutputSpec(spec, (path) => resolve(path)));
      if (outputs.some((o) => o.type === "registry") && flags.tag.length === 0) throw new UsageError("--output type=registry pushes the -t names: give at least one");
      const registry = { insecure: insecureRegistries(flags.insecureRegistry) };
      const tags = flags.tag.map((tag) => {
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
      if (!["wait", "background", "off"].includes(flags.remoteUpload)) throw new UsageError("--remote-upload must be wait, background or off");
      if (!["on", "off"].includes(flags.remoteReport)) throw new UsageError("--remote-report must be on or off");
      const buildLabels = parseLabels("--build-label", flags.buildLabel);
      const imageLabels = parseLabels("--label", flags.label);
      if (process.getuid?.() !== 0) throw new UsageError("memobuild build needs root (overlayfs mounts and the OCI runtime)");
      const input = readDockerfile(context, flags.file);
      const printer = flags.quiet ? quietProgress() : flags.progress === "json" ? jsonProgress() : plainProgress();
      const remote = openRemote(flags, (message) => printer({ type: "warning", message }));
      await remote?.probe(); // a wrong token is an error before any work
      const reporter =
        remote && flags.remoteReport === "on"
          ? new BuildReporter((id, events) => remote.report(id, events), {
              dockerfile: input.displayPath,
              platform: formatPlatform(hostPlatform()),
              host: hostname(),
              labels: buildLabels,
              ci: ciMetadata(),
            }, { warn: (message) => printer({ type: "warning", message }) })
          : undefined;
      const progress: ProgressSink = reporter ? (event) => (printer(event), reporter.sink(event)) : printer;
      await reported(reporter, () => withStore(flags.cacheDir, async (store) => {
        const ssh = await SshAgents.start(sshSpecs);
        const result = await build({
          contextDir: input.contextDir,
          dockerfileText: input.text,
          dockerfilePath: input.displayPath,
          dockerfileAbsolute: flags.file === "-" ? undefined : resolve(input.displayPath),
          buildArgs: parseBuildArgs(flags.buildArg),
          target: flags.target,
          noCache: !flags.cache,
          store,
          statCacheFile: statCacheFile(store.dir, input.contextDir),
          secrets,
          network: flags.network as "none" | "host",
          allow,
          progress,
          jobs,
          remote,
          remoteUpload: flags.remoteUpload as "wait" | "background" | "off",
          labels: imageLabels,
          pull: async (ref) => void (await pullImage(store, ref, registry, (line) => progress({ type: "output", line }))),
          ssh,
        }).finally(() => ssh.stop());
        const image = result.image!;
        for (const tag of tags) store.setImage(tag, image.manifestDigest);
        const exported: { type: string; dest: string; digest: string }[] = [];
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
        await reporter?.finish({ result: "success", image: exported[0]?.digest ?? image.manifestDigest });
        if (flags.metadataFile) {
          writeFileSync(
            flags.metadataFile,
            JSON.stringify(
              {
                // The digest of the image as exported (compressed layers), as BuildKit reports it.
                "containerimage.digest": exported[0]?.digest ?? image.manifestDigest,
                "containerimage.config.digest": image.manifest.config.digest,
                "image.name": tags.join(","),
                outputs: exported,
                steps: result.steps,
              },
              null,
              2,
            ) + "\n",
          );
        }
        const imageId = image.manifest.config.digest;
        if (flags.iidfile) writeFileSync(flags.iidfile, imageId);
        if (flags.quiet) process.stdout.write(`${imageId}\n`);
        else if (flags.progress !== "json") {
          const count = (status: string) => result.steps.filter((s) => s.status === status).length;
          const remoteHits = count("cached-remote");
          process.stderr.write(
            `image ${image.manifestDigest} (${count("executed")} step(s) run, ${count("cached-local")} cached${remoteHits ? `, ${remoteHits} from the remote cache` : ""})\n`,
          );
          for (const tag of tags) process.stderr.write(`naming to ${tag}\n`);
        }
        await remote?.flush(); // background uploads finish after the report
      }));
    });
}
