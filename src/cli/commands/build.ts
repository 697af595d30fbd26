import type { Command } from "commander";
import { writeFileAtomic } from "../../util/host-file.ts";
import { join } from "node:path";
import { removeTree } from "../../rootfs/root.ts";
import { statCacheFile } from "../../config/cache-dir.ts";
import { withStore } from "../store.ts";
import { exportImage } from "../../image/export.ts";
import { normalizeReference } from "../../image/reference.ts";
import { hostname } from "node:os";
import { formatPlatform, hostPlatform, type Platform } from "../../frontend/platform.ts";
import type { ProgressEvent, ProgressSink } from "../../solver/progress.ts";
import { displayMode, openDisplay, type BuildOutcome, type Display, type OutputResult } from "../display.ts";
import type { LocalStore } from "../../cache/store.ts";
import type { IndexAnnotations, OutputSpec } from "../../image/export.ts";
import type { RegistryOptions } from "../../registry/client.ts";
import { REF_NAME, storeImageIndex, type StoredImage } from "../../image/layout.ts";
import type { BuildReporter } from "../../report/reporter.ts";
import { build, buildRecordName, sourceDateEpoch, type BuildOptions, type BuildResult, type NamedContext } from "../../solver/solver.ts";
import { buildRemotely, type RemoteBuildOptions } from "../../builder/remote-build.ts";
import type { NetworkMode } from "../../executor/network.ts";
import { wantsHostGateway, type Sandbox } from "../../executor/sandbox.ts";
import { spreadJobs } from "../../builder/spread-plan.ts";
import { isPrivateScope } from "../../remote/mount-manifest.ts";
import { runChecks } from "../check.ts";
import { JobsClient } from "../../remote/jobs-client.ts";
import { RemoteCache } from "../../remote/client.ts";
import { remoteSettings } from "../../config/remote.ts";
import type { CacheSpec } from "../../registry/build-cache.ts";
import type { ResultSource } from "../../remote/result-source.ts";
import type { StepResult } from "../../solver/result.ts";
import type { Plan, Stage } from "../../frontend/plan.ts";
import type { BuildGraph } from "../../graph/graph.ts";
import { SigningKey } from "../../remote/action.ts";
import { UserError } from "../../errors.ts";
import type { Settings } from "../../config/settings.ts";
import { insecureRegistries } from "../../registry/client.ts";
import type { Attester, Signature } from "../../attest/attest.ts";
import { cacheMountChoice, cacheMountOptions, openCacheMounts, openRemote, remoteOptions } from "../remote.ts";
import { commandSettings } from "../settings.ts";
import { value } from "../../config/settings.ts";
import { parseSshSpec, SshAgents } from "../../executor/ssh.ts";
import { UsageError } from "../errors.ts";
import { dockerfileFacts, dockerfileOptions, readDockerfileFrom, type DockerfileInput } from "../inputs.ts";
import { resolveNamedContexts } from "../named-contexts.ts";
import { checkProjectTags } from "../project-tags.ts";
import { attestFlagsGiven, buildFlagOptions, annotationsFor, checkAnnotations, checkMultiPlatform, checkOutputs, platformsFrom, networkFrom, noCacheStages, outputsFrom, parseAnnotations, parseBuildContexts, parseCacheSpec, parseEntitlements, parseLabels, parseSecret, sandboxFrom, usage, type AnnotationSpec, type BuildFlags } from "../build-flags.ts";

// What only some builds use loads when one does: the registry transfer (pulling a missing base
// image, pushing), the Docker Engine client (--load), filesystem outputs, the build hub reporter.
const registryTransfer = () => import("../../registry/transfer.ts");
const attestations = () => import("../attestations.ts");
const dockerLoad = () => import("../../image/docker-load.ts");
const filesystemExport = () => import("../../image/filesystem-export.ts");

/**
 * What the build hub shows of who built what: the project and its git checkout (read without
 * running git), the user, the tags and the command line (every secret value and the token masked).
 */
async function whoBuilt(contextDir: string, tags: string[], secrets: string[], token: string | undefined) {
  const { gitInfo, projectName } = await import("../../report/git.ts");
  const { buildUser, reportedCommand } = await import("../../report/invocation.ts");
  // A context that is not a directory (a Git URL's checkout, stdin's tar) has no .git of its own here.
  const git = (() => {
    try {
      return gitInfo(contextDir);
    } catch {
      return undefined;
    }
  })();
  return {
    project: projectName(contextDir, git),
    ...(git && Object.keys(git).length ? { git } : {}),
    user: buildUser(),
    tags,
    command: reportedCommand(process.argv.slice(2), [...secrets, ...(token ? [token] : [])]),
  };
}

/**
 * A build a worker runs for a job (worker.ts) names the submitter's build in its uploads, with
 * the job and its lease as the proof the server checks (app.ts); by environment, as the token.
 */
function forJob(remote: RemoteCache) {
  const { MEMOBUILD_JOB_BUILD: build, MEMOBUILD_JOB_ID: id, MEMOBUILD_JOB_LEASE: lease } = process.env;
  if (build && id && lease) [remote.buildId, remote.job] = [build, { id, lease }];
}

/** Runs the build; a failure ends the display and is reported (when reporting) before it propagates. */
async function reported<T>(reporter: BuildReporter | undefined, display: Display, run: () => Promise<T>): Promise<T> {
  const stop = reportInterruption(reporter, display);
  try {
    return await run();
  } catch (error) {
    display.abort();
    await reporter?.finish({ result: "failed", error: (error as Error).message });
    throw error;
  } finally {
    stop();
  }
}

/**
 * Ctrl-C (or a CI's SIGTERM) ends the build as before, but reported first, within a few seconds:
 * else the hub shows it running until its stale sweep a day later. It ends in process.exit, not
 * the signal's default death, so the exit undos run (sys/exit-undo.ts: a RUN's overlay and tmpfs
 * are unmounted, not left for the next build to clean up). A part that ends the build on the
 * signal itself (a remote build cancels its job) is left to: the build then fails and is
 * reported as any failure. A second signal ends the process at once (the handler is gone).
 */
function reportInterruption(reporter: BuildReporter | undefined, display: Display): () => void {
  const interrupted = (signal: "SIGINT" | "SIGTERM") => {
    if (process.listenerCount(signal) > 0) return;
    display.abort();
    const exit = () => process.exit(signal === "SIGINT" ? 130 : 143);
    if (!reporter) return exit();
    void reporter.finish({ result: "failed", error: `interrupted (${signal}) before the build finished` }, 3000).finally(exit);
  };
  const onInt = () => interrupted("SIGINT");
  const onTerm = () => interrupted("SIGTERM");
  process.once("SIGINT", onInt);
  process.once("SIGTERM", onTerm);
  return () => {
    process.removeListener("SIGINT", onInt);
    process.removeListener("SIGTERM", onTerm);
  };
}

export function registerBuild(program: Command) {
  cacheMountOptions(remoteOptions(buildFlagOptions(dockerfileOptions(program.command("build")))))
    .summary("build an image from a Dockerfile")
    .description(
      "Build an image from a Dockerfile, running only the steps whose inputs changed. RUN steps run in a " +
        "container (crun or runc) on an overlayfs snapshot; results are cached by content in the cache directory " +
        "and, with --remote, shared through a cache server. Base images come from the local image store, or are pulled.",
    )
    .option("--check", "run the build checks (BuildKit's rules) on the Dockerfile and build nothing: each finding with its rule, file and line; exit code 1 when there are any")
    .option("--builder <url>", "run the build on a worker of this cache server (remote execution; also $MEMOBUILD_BUILDER); the image and outputs end up here; with --platform, one job per platform (another architecture's RUN under QEMU on the worker); --allow is granted only by a worker started with it, --cache-from and --cache-to are refused")
    .action(async (context: string | undefined, flags: BuildFlags & { builder?: string; cacheMountScope?: string; check?: boolean }) => {
      const settings = commandSettings(flags, context);
      const progressMode = value<string>(settings, "progress");
      const network = networkFrom(flags);
      const jobs = value<number | undefined>(settings, "jobs");
      const platforms = platformsFrom(flags.platform);
      const multi = platforms !== undefined && platforms.length > 1;
      const outputs = outputsFrom(flags);
      const registry = { insecure: insecureRegistries(flags.insecureRegistry) };
      // -t names, and those type=image and type=registry outputs give the image (as buildx's name=).
      const named = outputs.flatMap((o) => (o.type === "image" || o.type === "registry" ? o.names : []));
      const tags = [...new Set([...value<string[]>(settings, "tags"), ...named].map((tag) => usage(() => normalizeReference(tag))))];
      checkOutputs(outputs, tags, progressMode);
      // --sign-key, else the signKey setting (environment or user config; never a project file's).
      const signing = { ...flags, signKey: value<string | undefined>(settings, "signKey") };
      const builderUrl = flags.builder ?? process.env.MEMOBUILD_BUILDER;
      if (multi) checkMultiPlatform(flags, outputs);
      const secrets = new Map(flags.secret.map(parseSecret));
      const cacheFrom = flags.cacheFrom.map((spec) => parseCacheSpec("--cache-from", spec));
      const cacheTo = flags.cacheTo.map((spec) => parseCacheSpec("--cache-to", spec));
      const sshSpecs = flags.ssh.map((spec) => usage(() => parseSshSpec(spec)));
      const sandbox = sandboxFrom(flags);
      if (builderUrl) checkForBuilder(flags, sandbox);
      const contextSpecs = parseBuildContexts(flags.buildContext);
      if (flags.load || outputs.some((o) => o.type === "docker")) {
        const { checkDockerEngine, dockerEndpoint } = await dockerLoad();
        usage(() => dockerEndpoint()); // a DOCKER_HOST it cannot use is an error before any work
        await checkDockerEngine(); // and so is an engine that is not there
      }
      const allow = parseEntitlements(flags.allow);
      const buildLabels = parseLabels("--build-label", flags.buildLabel);
      const imageLabels = parseLabels("--label", flags.label);
      const annotations = parseAnnotations(flags.annotation);
      checkAnnotations(annotations, platforms ?? [hostPlatform()], outputs);
      const attesting = attestFlagsGiven(signing) ? (await attestations()).attestPlan(signing, outputs, tags) : undefined;
      if (flags.check) {
        const input = readDockerfileFrom(settings);
        const findings = await withStore(value(settings, "cacheDir"), (store) => runChecks(input, value(settings, "buildArgs"), store, (text) => process.stdout.write(text)));
        if (findings.length) throw new UserError(`the build checks found ${findings.length} warning(s) in ${input.displayPath}`);
        return;
      }
      if (process.getuid?.() !== 0) throw new UsageError("memobuild build needs root (overlayfs mounts and the OCI runtime)");
      const mountChoice = cacheMountChoice(settings, flags.cacheMountScope);
      const input = readDockerfileFrom(settings);
      const display = openDisplay(displayMode(progressMode));
      const printer = display.sink;
      const remote = await openRemote(settings, (message) => printer({ type: "warning", message }));
      await remote?.probe(); // a wrong token is an error before any work
      const builder = builderUrl;
      // A build on a worker is reported to the builder's hub when no other remote is given.
      const hub = remote ?? (builder ? builderCache(builder, settings, (message) => printer({ type: "warning", message })) : undefined);
      const reporter =
        hub?.sends && value(settings, "remote.report") === "on"
          ? new (await import("../../report/reporter.ts")).BuildReporter((id, events) => hub.report(id, events), {
              dockerfile: input.displayPath,
              platform: (platforms ?? [hostPlatform()]).map(formatPlatform).join(","),
              host: hostname(),
              labels: buildLabels,
              ci: (await import("../../report/ci.ts")).ciMetadata(),
              ...(await whoBuilt(input.contextDir, tags, [...secrets.values()].filter((b) => b.length <= 4096).flatMap((b) => [b.toString(), b.toString().trim()]), value<string | undefined>(settings, "remote.token"))),
            }, { warn: (message) => printer({ type: "warning", message }), secrets: secrets.values() })
          : undefined;
      if (remote && reporter) remote.buildId = reporter.id; // results it uploads name the build they came from
      else if (remote) forJob(remote);
      const progress: ProgressSink = reporter ? (event) => (printer(event), reporter.sink(event)) : printer;
      await reported(reporter, display, () => withStore(value(settings, "cacheDir"), async (store) => {
        // With --platform, a base is pulled for the platform a stage needs, and named by its index.
        const pull = async (ref: string, platform?: Platform) => void (await (await registryTransfer()).pullImage(store, ref, registry, (line) => progress({ type: "output", line }), platforms ? platform : undefined));
        const tagOwner = checkProjectTags(store, tags, settings); // before any work
        const namedContexts = await resolveNamedContexts(contextSpecs, store, pull, flags.pull);
        const ssh = await SshAgents.start(sshSpecs);
        // A build on a worker (--builder): the worker fetches and publishes its cache mounts (worker.ts).
        const mounts = builder ? undefined : await openCacheMounts(mountChoice, settings, remote, store, (message) => printer({ type: "warning", message }));
        const buildCaches = cacheFrom.length ? await openBuildCaches(cacheFrom, settings, store, registry, progress) : [];
        const local: Omit<BuildOptions, "platform"> = {
            ...dockerfileFacts(input),
            buildArgs: value(settings, "buildArgs"),
            target: value(settings, "target"),
            noCache: !flags.cache,
            noCacheStages: noCacheStages(flags.noCacheFilter),
            pullAlways: flags.pull,
            sandbox,
            store,
            statCacheFile: statCacheFile(store.dir, input.contextDir),
            secrets,
            network,
            allow,
            // A worker runs an untrusted submitter's job with that submitter's private scope (worker.ts).
            untrusted: isPrivateScope(mountChoice.scopeName) ? mountChoice.scopeName : undefined,
            // A worker's job without network.host: ADD's URLs keep off the worker's loopback (worker.ts).
            refuseLoopbackUrls: process.env.MEMOBUILD_JOB_LOOPBACK === "refuse",
            progress,
            jobs,
            remote,
            remoteUpload: value(settings, "remote.upload"),
            labels: imageLabels,
            pull,
            namedContexts,
            ssh,
            cacheMounts: mounts && ((local) => mounts.wrap(local)),
            cacheFrom: buildCaches,
            platformLabel: multi,
          };
        // Several platforms: one build each, in turn (what they share, a FROM --platform=$BUILDPLATFORM
        // stage say, has the same keys and comes from the cache the second time), then one index.
        // On workers: one job per platform, in turn, as here (the second finds what they share in the server's cache).
        const onWorker = (platform: Platform | undefined) => buildOnWorker(builder!, settings, flags, store, input, progress, { cacheMountScope: mountChoice.scopeName, ssh: { ids: sshSpecs.map((s) => s.id), agents: ssh }, namedContexts, reportedAs: reporter?.id, platform, multi });
        const results = await (builder ? inTurn(platforms ?? [undefined], onWorker) : buildPlatforms(local, platforms, annotations)).finally(() => ssh.stop());
        const result = results[0]!;
        const image = result.image!;
        const images = results.map((r) => r.image!);
        // The store's index carries the index's annotations, as the build's outputs do (image push of it, later).
        const indexDigest = multi ? storeImageIndex(store, images, indexAnnotations(annotations, platforms)) : undefined;
        for (const tag of tags) store.setImage(tag, indexDigest ?? image.manifestDigest, tagOwner);
        // An index's ID is its own digest (buildx's --iidfile of a multi-platform build is too).
        if (indexDigest) store.recordImageId(indexDigest, indexDigest);
        // One build cache for every platform's steps (a second write to the same place would replace the first).
        const solved = results.filter((done) => "graph" in done);
        if (solved.length) for (const spec of cacheTo) await writeBuildCache(spec, solved, settings, store, registry, progress);
        const facts = {
          ...dockerfileFacts(input),
          statCacheFile: statCacheFile(store.dir, input.contextDir),
          target: value<string | undefined>(settings, "target"),
          buildArgs: value<Record<string, string>>(settings, "buildArgs"),
          labels: imageLabels,
          sourceDateEpoch: sourceDateEpoch(value(settings, "buildArgs")),
        };
        // Each platform's image is attested apart (its own provenance and SBOM), as BuildKit does.
        const attesters = attesting ? await Promise.all(results.map(async (done) => (await attestations()).attesterFor(attesting, store, done.image!, done, facts, tags))) : undefined;
        const attester = attesters?.[0];
        const exported = multi ? await exportIndexOutputs(store, images, outputs, tags, registry, progress, attesters, indexAnnotations(annotations, platforms)) : await exportOutputs(store, image, outputs, tags, registry, progress, attester);
        if (flags.load) exported.push(await loadImage(store, image, tags, progress));
        await mounts?.publish(); // commit on success: any failure above publishes nothing
        const outcome: BuildOutcome = {
          imageId: indexDigest ?? image.manifest.config.digest,
          digest: exported.find((o) => o.digest)?.digest ?? indexDigest ?? image.manifestDigest,
          manifestDigest: indexDigest ?? image.manifestDigest,
          ...(multi ? { platforms: platforms.map(formatPlatform) } : {}),
          outputs: exported,
          tags,
          // Each platform's steps, named by it (as the build output shows them) in a multi-platform build.
          steps: multi ? results.flatMap((r, i) => r.steps.map((s) => ({ ...s, platform: formatPlatform(platforms[i]!) }))) : result.steps,
          checks: "checks" in result ? result.checks : [],
        };
        await reporter?.finish({ result: "success", image: outcome.digest });
        if (flags.metadataFile) writeMetadata(flags.metadataFile, outcome);
        if (flags.iidfile) writeFileAtomic(flags.iidfile, outcome.imageId);
        display.finish(outcome);
        await remote?.flush(); // background uploads finish after the report
      }));
    });
}

/** One build per platform (one build for this machine's when none is given), each manifest with its annotations. */
async function buildPlatforms(options: Omit<BuildOptions, "platform">, platforms: Platform[] | undefined, annotations: AnnotationSpec): Promise<BuildResult[]> {
  const results: BuildResult[] = [];
  for (const platform of platforms ?? [undefined]) results.push(await build({ ...options, platform, annotations: annotationsFor(annotations.manifest, platform ?? hostPlatform()) }));
  return results;
}

/** `run` for each item, one after the other; the results in order. */
async function inTurn<T, R>(items: T[], run: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (const item of items) results.push(await run(item));
  return results;
}

/** The index's own --annotation types, for its outputs (each platform's descriptor in the images' order). */
function indexAnnotations(spec: AnnotationSpec, platforms: Platform[]): IndexAnnotations {
  return { index: spec.index, manifests: platforms.map((p) => annotationsFor(spec.manifestDescriptor, p)), descriptor: spec.indexDescriptor };
}

/**
 * The outputs of a multi-platform image: OCI layouts and archives hold the index, a registry gets
 * every platform's manifest and the index, type=local and type=tar a directory per platform
 * (linux_arm64/, as buildx writes them). What cannot hold an index was refused before the build
 * (checkMultiPlatform).
 */
async function exportIndexOutputs(store: LocalStore, images: StoredImage[], outputs: OutputSpec[], tags: string[], registry: RegistryOptions, progress: ProgressSink, attesters: Attester[] | undefined, annotations: IndexAnnotations): Promise<OutputResult[]> {
  const exported: OutputResult[] = [];
  // Each platform's attestation manifest goes in the index; signatures go beside it (signIndex).
  const extras = attesters?.map((a) => a.registryExtras());
  const namesOf = (names: string[]) => (names.length ? names.map(normalizeReference) : tags);
  for (const output of outputs) {
    if (output.type === "registry") {
      const { pushImageIndex, pushTagged } = await registryTransfer();
      const compression = { compression: output.compression ?? "gzip", ...(output.level !== undefined ? { level: output.level } : {}), ...(output.force ? { force: true } : {}) };
      for (const tag of namesOf(output.names)) {
        const digest = await pushImageIndex(store, images, tag, registry, (line) => progress({ type: "output", line: `push ${tag}: ${line}` }), compression, extras, annotations);
        for (const signature of attesters ? signIndex(attesters, digest, attesters[0]!.identityOf(tag)) : []) {
          await pushTagged(store, tag, signature.tag, signature.extra, registry);
          progress({ type: "output", line: `push ${tag}: signed as ${signature.tag}` });
        }
        exported.push({ type: "registry", dest: tag, digest });
      }
    } else if (output.type === "local" || output.type === "tar") {
      const { exportPlatforms, exportFilesystemTar } = await filesystemExport();
      if (output.type === "local") await exportPlatforms(store, images, output.dest);
      else await exportFilesystemTar(store, images, output.dest);
      exported.push({ type: output.type, dest: output.dest });
    } else if (output.type === "oci" || output.type === "oci-archive") {
      const { exportImageIndex } = await import("../../image/export.ts");
      // A layout keeps the signatures in its index.json, named by their tags, as a single image's layout does.
      const beside = (indexDigest: string) => (attesters ? signIndex(attesters, indexDigest).map((s) => ({ ...s.extra, descriptor: { ...s.extra.descriptor, annotations: { [REF_NAME]: s.tag } } })) : []);
      exported.push({ type: output.type, dest: output.dest, digest: (await exportImageIndex(store, images, output, namesOf(output.names), extras, beside, annotations)).indexDigest });
    } else if (output.type !== "image") throw new UsageError(`--output type=${output.type} cannot hold a multi-platform image`);
  }
  return exported;
}

/** A multi-platform image's signatures (none without --sign-key): see Attester.indexSignatures. */
function signIndex(attesters: Attester[], indexDigest: string, identity?: string): Signature[] {
  return attesters[0]!.indexSignatures(attesters, indexDigest, identity);
}

/** `--cache-from`: each build cache that can be read, in order (one that cannot costs a warning). */
async function openBuildCaches(specs: CacheSpec[], settings: Settings, store: LocalStore, registry: RegistryOptions, progress: ProgressSink): Promise<ResultSource[]> {
  const { BuildCacheSource } = await import("../../registry/build-cache.ts");
  const warn = (message: string) => progress({ type: "warning", message });
  const trust = remoteSettings(settings, warn).trust;
  const opened = await Promise.all(specs.map((spec) => BuildCacheSource.open(spec, { registry, trust, warn, scratch: store.tempDir("cache-from") })));
  return opened.filter((source) => source !== undefined);
}

/**
 * `--cache-to`: the build's results as a build cache. mode=max: every step the build ran or
 * reused; min: the target stage and the stages it is built FROM (what the image is made of).
 */
async function writeBuildCache(spec: CacheSpec, results: { steps: StepResult[]; plan: Plan; graph: BuildGraph }[], settings: Settings, store: LocalStore, registry: RegistryOptions, progress: ProgressSink) {
  const { exportBuildCache } = await import("../../registry/build-cache.ts");
  const keys = [...new Set(results.flatMap((result) => cachedKeys(spec, result)))];
  const signKey = remoteSettings(settings, () => {}).signKey;
  const where = spec.type === "registry" ? spec.ref : spec.dir;
  try {
    const written = await exportBuildCache(spec, store, keys, { registry, signer: signKey ? SigningKey.load(signKey) : undefined });
    progress({ type: "output", line: `cache: ${written} step result(s) written to ${where}` });
  } catch (error) {
    if (!spec.ignoreError) throw new UserError(`--cache-to ${where}: ${(error as Error).message} (add ignore-error=true to go on without it)`);
    progress({ type: "warning", message: `--cache-to ${where}: not written (${(error as Error).message})` });
  }
}

/**
 * What each step of a build run on a worker read (keyed here) and the worker that ran or reused
 * it, as a local build records its own: `explain` compares the next build with it and names the worker.
 */
function recordRemoteBuild(store: LocalStore, dockerfile: string, planned: { steps: StepResult[]; inputs: Map<string, unknown>; graph: BuildGraph }, ran: StepResult[]) {
  const workers = new Map(ran.map((s) => [s.id, s.worker]));
  const steps = planned.steps.filter((s) => planned.inputs.has(s.id)).map((s) => ({ id: s.id, key: s.key, inputs: planned.inputs.get(s.id), worker: workers.get(s.id) }));
  store.recordBuildInputs(dockerfile, planned.graph.target.id, steps);
}

/** The builder's own cache and hub, with the remote token: where a remote build's image and report go. */
function builderCache(builder: string, settings: Settings, warn: (message: string) => void): RemoteCache {
  return new RemoteCache({ url: builder, token: remoteSettings(settings, warn).token, warn, required: true });
}

/** The keys of one build's steps a build cache holds (see writeBuildCache). */
function cachedKeys(spec: CacheSpec, result: { steps: StepResult[]; plan: Plan; graph: BuildGraph }): string[] {
  const chain = new Set<string>();
  for (let stage: Stage | undefined = result.graph.target; stage; stage = stage.base.kind === "stage" ? result.plan.stages[stage.base.index] : undefined) chain.add(stage.id);
  return result.steps.filter((s) => s.key && s.status !== "skipped" && (spec.mode === "max" || chain.has(s.stage))).map((s) => s.key);
}

/**
 * `--cache-from` and `--cache-to` stay refused with --builder: the worker would read and write
 * where the submitter says — a directory of the worker's own disk (type=local), or any host its
 * network reaches (type=registry: the worker's internal network, a cloud's metadata address),
 * with the worker's credentials — and a build cache read there is a result no worker computed.
 */
function refusedWithBuilder(flags: BuildFlags): string[] {
  return [
    flags.cacheFrom.length > 0 && "--cache-from (the worker would read a build cache from wherever the submitter names: its own disk, any host it reaches)",
    flags.cacheTo.length > 0 && "--cache-to (the worker would write a build cache wherever the submitter names)",
  ].filter((x): x is string => Boolean(x));
}

/**
 * The flags a remote build refuses, checked with the other flags: before the build is reported
 * to the builder's hub or any cache named is opened, as the README promises ("before anything is sent").
 */
function checkForBuilder(flags: BuildFlags, sandbox: Sandbox | undefined): void {
  const unsupported = refusedWithBuilder(flags);
  if (unsupported.length) throw new UsageError(`--builder: ${unsupported.join("; ")}: not with a remote builder`);
  if (wantsHostGateway(sandbox) && !flags.allow.includes("network.host")) throw new UsageError("--add-host NAME:host-gateway on a remote builder reaches the worker's own loopback: add --allow network.host (and the worker must grant it: memobuild worker --allow network.host)");
}

/**
 * What a job carries of the build's flags to its worker, so the worker's build is the one asked
 * for. The flags were checked as for a local build (networkFrom, sandboxFrom, parseAnnotations);
 * one more rule holds remotely (checkForBuilder): `--add-host NAME:host-gateway` on a worker reaches
 * the worker's own loopback, so it is asked for as network.host is, and granted only as that is (worker.ts).
 */
function carriedToWorker(flags: BuildFlags, network: NetworkMode, annotations: AnnotationSpec, platform: Platform): NonNullable<RemoteBuildOptions["asked"]> {
  return {
    ...(network !== "default" ? { network } : {}),
    allow: [...parseEntitlements(flags.allow)],
    sandbox: { addHost: flags.addHost, ...(flags.shmSize !== undefined ? { shmSize: flags.shmSize } : {}), ulimit: flags.ulimit },
    noCacheFilter: flags.noCacheFilter,
    pull: flags.pull === true,
    // The manifest's own, as a local build of this platform annotates it (selectors included).
    annotations: annotationsFor(annotations.manifest, platform) ?? {},
  };
}

/**
 * `--builder URL`: the build runs on one of the server's workers; the image comes back to this
 * store. With --platform, the build of that one platform (the worker runs another architecture's
 * RUN under QEMU, as a local build does); in a multi-platform build its steps are named with it.
 */
async function buildOnWorker(builder: string, settings: Settings, flags: BuildFlags, store: LocalStore, input: DockerfileInput, shown: ProgressSink, given: { cacheMountScope: string | undefined; ssh: { ids: string[]; agents: SshAgents }; namedContexts: Map<string, NamedContext>; reportedAs?: string; platform?: Platform; multi: boolean }) {
  const { cacheMountScope, ssh, namedContexts, reportedAs, platform, multi } = given;
  const progress = multi && platform ? namedForPlatform(shown, formatPlatform(platform)) : shown;
  const network = networkFrom(flags);
  const asked = carriedToWorker(flags, network, parseAnnotations(flags.annotation), platform ?? hostPlatform());
  const remote = remoteSettings(settings, (message) => progress({ type: "warning", message }));
  const jobs = new JobsClient({ url: builder, token: remote.token });
  const cache = builderCache(builder, settings, (message) => progress({ type: "warning", message }));
  const options = {
    ...dockerfileFacts(input),
    statCacheFile: statCacheFile(store.dir, input.contextDir),
    // SOURCE_DATE_EPOCH from this environment reaches the worker as the build arg BuildKit also reads.
    buildArgs: { ...(process.env.SOURCE_DATE_EPOCH ? { SOURCE_DATE_EPOCH: process.env.SOURCE_DATE_EPOCH } : {}), ...value<Record<string, string>>(settings, "buildArgs") },
    target: value<string | undefined>(settings, "target"),
    noCache: !flags.cache,
  };
  // The keys of the build's steps, computed here, let the server send it where they are cached;
  // the plan and inputs behind them are what provenance records of the build.
  let plan: ProgressEvent | undefined;
  // Keyed with the network and sandbox the worker's build will have, as a local build keys them.
  const keyed = { network, allow: new Set(asked.allow), sandbox: sandboxFrom(flags), noCacheStages: noCacheStages(flags.noCacheFilter) };
  const planned = await build({ ...options, ...keyed, platform, platformLabel: multi, store, secrets: new Map(), progress: (e) => void (e.type === "plan" && (plan = e)), dryRun: true, namedContexts }).catch(() => undefined);
  const hints = planned ? planned.steps.map((s) => s.key).filter(Boolean) : [];
  // A stage run without the cache (--no-cache-filter) would be run again by the job built on it: one job.
  const spread = await spreadOverWorkers(planned, plan, options.noCache || keyed.noCacheStages.size > 0, cache);
  const built = await buildRemotely({ ...options, jobs, remote: cache, store, labels: parseLabels("--label", flags.label), progress, hints, secrets: new Map(flags.secret.map(parseSecret)), spread, cacheMountScope, ...(ssh.ids.length ? { ssh } : {}), namedContexts, build: reportedAs, asked, ...(platform ? { platform } : {}) });
  if (planned) recordRemoteBuild(store, buildRecordName(options.dockerfileAbsolute ?? options.dockerfilePath, platform), planned, built.steps);
  return { ...built, plan: planned?.plan, inputs: planned?.inputs };
}

/**
 * A worker builds one platform, so its step names do not say which: in a multi-platform build
 * they are named with it here, as a local build names them (`[linux/arm64 stage-1 2/3] RUN …`).
 */
function namedForPlatform(progress: ProgressSink, platform: string): ProgressSink {
  const named = (name: string) => (name.startsWith(`[${platform} `) ? name : name.replace(/^\[/, `[${platform} `));
  return (event) =>
    progress({
      ...event,
      ...(event.name !== undefined ? { name: named(event.name) } : {}),
      ...(event.steps ? { steps: event.steps.map((step) => ({ ...step, name: named(step.name) })) } : {}),
    });
}

/**
 * Independent stages that the shared cache lacks go to jobs of their own, so idle workers build
 * them at once. Not with --no-cache (the build's own job would run them all again), nor when the
 * dry run here could not plan the build (the worker then plans it alone, as one job).
 */
async function spreadOverWorkers(planned: { graph: BuildGraph; steps: StepResult[] } | undefined, plan: ProgressEvent | undefined, noCache: boolean, cache: RemoteCache) {
  if (!planned || !plan || noCache) return undefined;
  const jobs = await spreadJobs(planned.graph, planned.steps, (key) => cache.hasAction(key));
  return jobs && { jobs, plan };
}

/** Each output in turn; each listed with the digest a user meets there. */
async function exportOutputs(store: LocalStore, image: StoredImage, outputs: OutputSpec[], tags: string[], registry: RegistryOptions, progress: ProgressSink, attester?: Attester): Promise<OutputResult[]> {
  const exported: OutputResult[] = [];
  // An output's own name= names the image there; else the build's names.
  const namesOf = (names: string[]) => (names.length ? names.map(normalizeReference) : tags);
  for (const output of outputs) {
    if (output.type === "registry") {
      for (const tag of namesOf(output.names)) {
        const { pushImage, pushTagged } = await registryTransfer();
        const compression = { compression: output.compression ?? "gzip", ...(output.level !== undefined ? { level: output.level } : {}), ...(output.force ? { force: true } : {}) };
        const digest = await pushImage(store, image, tag, registry, (line) => progress({ type: "output", line: `push ${tag}: ${line}` }), attester?.registryExtras(), compression);
        for (const signature of attester?.registrySignatures(digest, attester.identityOf(tag)) ?? []) {
          await pushTagged(store, tag, signature.tag, signature.extra, registry);
          progress({ type: "output", line: `push ${tag}: signed as ${signature.tag}` });
        }
        exported.push({ type: "registry", dest: tag, digest });
      }
      continue;
    }
    if (output.type === "image") continue; // its names are the image's names in the store
    if (output.type === "docker") {
      exported.push(await loadImage(store, image, namesOf(output.names), progress));
      continue;
    }
    if (output.type === "local" || output.type === "tar") {
      const { exportFilesystem, exportFilesystemTar } = await filesystemExport();
      if (output.type === "local") await exportFilesystem(store, image, output.dest);
      else await exportFilesystemTar(store, image, output.dest);
      exported.push({ type: output.type, dest: output.dest });
      continue;
    }
    const result = await exportImage(store, image, output, namesOf(output.names), attester?.layoutExtras());
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
  writeFileAtomic(file, JSON.stringify(metadata, null, 2) + "\n");
}

/** --load: a docker archive of the image, streamed to the Docker Engine. */
async function loadImage(store: LocalStore, image: StoredImage, tags: string[], progress: ProgressSink): Promise<OutputResult> {
  const { dockerEndpoint, loadIntoDocker } = await dockerLoad();
  const staging = store.tempDir("docker-load");
  try {
    const archive = join(staging, "image.tar");
    await exportImage(store, image, { type: "docker-archive", dest: archive, names: [] }, tags);
    for (const line of await loadIntoDocker(archive)) progress({ type: "output", line: `load: ${line}` });
    // The engine names it by its image ID (build -q prints it), not by a manifest digest.
    return { type: "docker", dest: dockerEndpoint().shown };
  } finally {
    removeTree(staging);
  }
}
