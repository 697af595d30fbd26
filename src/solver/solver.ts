/**
 * The solver: turns a planned Dockerfile into an image, running only the steps whose inputs
 * changed. For each step of the graph, its operation (ops/) says what the step reads and what
 * its key is made of; the step cache decides how it is satisfied (local hit, remote hit, or the
 * executor runs the operation's plain-data request); the solver carries the stage's state on
 * and reports progress. It never branches on instruction kinds.
 */
import { availableParallelism } from "node:os";
import type { LocalStore } from "../cache/store.ts";
import { describeSandbox, type Sandbox } from "../executor/sandbox.ts";
import type { NetworkMode } from "../executor/network.ts";
import { directoryCacheMounts, type CacheMountProvider } from "../executor/cache-mount.ts";
import { LocalExecutor } from "../executor/executor.ts";
import type { Executor, ExecutorResources, StepRequest } from "../executor/request.ts";
import type { SshAgents } from "../executor/ssh.ts";
import { parseDockerfile } from "../frontend/parser.ts";
import { checkPolicy, lintDockerfile, type Finding } from "../frontend/lint.ts";
import { DockerfileError } from "../frontend/errors.ts";
import { plan as planStages, type Plan, type Stage, type Step } from "../frontend/plan.ts";
import { formatPlatform, hostPlatform, parsePlatform, platformMatches, type Platform } from "../frontend/platform.ts";
import { buildGraph, type BuildGraph } from "../graph/graph.ts";
import { cloneConfig, historyEntry } from "../image/config.ts";
import { loadImage, MEDIA, storeImage, type StoredImage } from "../image/layout.ts";
import type { RemoteCache } from "../remote/client.ts";
import type { ResultSource } from "../remote/result-source.ts";
import { UserError } from "../errors.ts";
import { explainStep, type KeyOwner } from "./explain.ts";
import { imageReadsByPlatform, imageResolver, similarLocalImage, stagePlatform, stepReading } from "./images.ts";
import { isImageIdText } from "../image/lookup.ts";
import { stepKey, type StepInputs } from "./keys.ts";
import { planStep, type BuildSettings, type StepPlan } from "./ops/index.ts";
import type { ProgressSink } from "./progress.ts";
import type { StepResult } from "./result.ts";
import { scheduleStages } from "./schedule.ts";
import { stepError, stepFailure } from "./failure.ts";
import { IdleRemovals } from "./idle-removals.ts";
import { StepCache, type Executed, type Satisfied } from "./step-cache.ts";
import type { StageState } from "./state.ts";
import { BuildWorld, type NamedContext } from "./world.ts";

export { stepKey, type StepInputs } from "./keys.ts";
export { BuildError } from "./failure.ts";
export type { StepResult } from "./result.ts";
export type { NamedContext } from "./world.ts";

export interface BuildOptions {
  contextDir: string;
  /** The Dockerfile's text and path as the user named it (for errors and .dockerignore). */
  dockerfileText: string;
  dockerfilePath: string;
  dockerfileAbsolute?: string;
  buildArgs: Record<string, string>;
  target?: string;
  noCache: boolean;
  /** --no-cache-filter: stages (names or indexes) that run without the cache. */
  noCacheStages?: Set<string>;
  /** --pull: look every base image up in its registry, even when the store has it. */
  pullAlways?: boolean;
  store: LocalStore;
  statCacheFile?: string;
  secrets: Map<string, Buffer>;
  /** SSH agents for RUN --mount=type=ssh, by ID. */
  ssh?: SshAgents;
  /** RUN's network: default (a sandbox with outbound access), none or host (see executor/network.ts). */
  network: NetworkMode;
  /** --add-host, --shm-size, --ulimit: every RUN's container. */
  sandbox?: Sandbox;
  /** What the person running the build consents to: network.host, security.insecure. */
  allow?: ReadonlySet<string>;
  /**
   * A build for a submitter its machine does not trust (a worker's job of a read-only token),
   * named by that job's private cache mount scope: see BuildSettings.untrusted.
   */
  untrusted?: string;
  /**
   * A worker's build for a job not granted network.host: ADD's URLs may not reach this
   * machine's loopback, as the job's RUN cannot (worker.ts sets it; a local build's ADD may).
   */
  refuseLoopbackUrls?: boolean;
  progress: ProgressSink;
  /** Compute every step's key and whether it hits, but run nothing and store nothing. */
  dryRun?: boolean;
  /** How many stages may build at once (default: the number of CPUs). */
  jobs?: number;
  /** The shared remote cache, when one is configured. */
  remote?: RemoteCache;
  /** `--cache-from`: more places to find results in, after the remote cache, in order. */
  cacheFrom?: ResultSource[];
  /** wait (default): the build waits for uploads at its end; off: upload nothing. */
  remoteUpload?: "wait" | "background" | "off";
  /** Wraps the local RUN --mount=type=cache directories (to share them through the remote, say). */
  cacheMounts?: (local: CacheMountProvider) => CacheMountProvider;
  /** Fetches an image the local store lacks (from its registry), for a platform. */
  pull?: (ref: string, platform: Platform) => Promise<void>;
  /**
   * The platform the image is for (TARGETPLATFORM; default: this machine's). Another
   * architecture's RUN steps run emulated (executor/emulation.ts). A multi-platform build is
   * one build per platform; `platformLabel` then names the platform in step names.
   */
  platform?: Platform;
  platformLabel?: boolean;
  /** `--label`: labels added to the final image's config (after the Dockerfile's own). */
  labels?: Record<string, string>;
  /** `--build-context NAME=…`, by lower-case name: an image, or a local directory. */
  namedContexts?: Map<string, NamedContext>;
  /** `--annotation`: annotations on the final image's manifest. */
  annotations?: Record<string, string>;
  /** Makes what runs the steps that miss, given how to find what requests name (default: the real one; tests give a fake). */
  executor?: (resources: ExecutorResources) => Executor;
}


export interface BuildResult {
  /** What the build checks found (BuildKit's rules; `build --check` lists them). */
  checks: Finding[];
  /** Undefined for a dry run. */
  image?: StoredImage;
  steps: StepResult[];
  /** What each step's key was made from, by step id. */
  inputs: Map<string, StepInputs>;
  plan: Plan;
  graph: BuildGraph;
}

/**
 * SOURCE_DATE_EPOCH (seconds), from `--build-arg` or the environment, as BuildKit reads it.
 * With it, new layers' file times are clamped to it and history and config dates are it.
 */
export function sourceDateEpoch(buildArgs: Record<string, string>, env: NodeJS.ProcessEnv = process.env): number | undefined {
  const text = buildArgs.SOURCE_DATE_EPOCH ?? env.SOURCE_DATE_EPOCH;
  if (text === undefined || text === "") return undefined;
  if (!/^\d+$/.test(text)) throw new UserError(`SOURCE_DATE_EPOCH must be whole seconds since 1970, not "${text}"`);
  return Number(text);
}

/** Builds of one Dockerfile for another platform are remembered apart (for "what changed since"). */
export function buildRecordName(dockerfile: string, platform: Platform = hostPlatform()): string {
  const name = formatPlatform(platform);
  return name === formatPlatform(hostPlatform()) ? dockerfile : `${dockerfile} (${name})`;
}

/** As BuildKit shows steps: `[build 5/6] RUN make` (unnamed stages are `stage-N`). */
/** Why a step ran when the build (or its stage, --no-cache-filter) was told not to use the cache. */
export const NO_CACHE_REASON = "--no-cache: run without looking in the cache";

export const stepName = (stage: Stage, step: Step, platform?: string) => `[${platform ? `${platform} ` : ""}${stage.name ?? `stage-${stage.index}`} ${step.index + 1}/${stage.steps.length}] ${step.text.split("\n")[0]}`;

export async function build(options: BuildOptions): Promise<BuildResult> {
  const named = options.namedContexts ?? new Map<string, NamedContext>();
  const storeImages = imageResolver(options.store);
  // A name given an image by --build-context resolves to that image wherever an image is read.
  const image = Object.assign(
    (ref: string, platform: Platform) => {
      const context = named.get(ref.toLowerCase());
      if (context?.kind === "image") return context.digest ? loadImage(options.store, context.digest, platform) : context.image;
      return context ? undefined : storeImages(ref, platform);
    },
    { forget: storeImages.forget },
  );
  const plan = await planBuild(options, image, new Set(named.keys()));
  const graph = buildGraph(plan, options.target);
  const world = new BuildWorld({ ...options, plan, namedContexts: named, image, onContext: (digest) => options.progress({ type: "context", digest }) });
  const solve = new Solve(options, plan, graph, world);
  try {
    return await solve.run();
  } finally {
    world.close();
    await solve.settle();
  }
}

/** Parses and plans; images the store lacks are pulled first, so planning sees their ENV and ONBUILD. */
async function planBuild(options: BuildOptions, image: ((ref: string, platform: Platform) => StoredImage | undefined) & { forget(ref: string): void }, named: Set<string>): Promise<Plan & { checks: Finding[] }> {
  const { progress } = options;
  const platform = options.platform ?? hostPlatform();
  // An image stored without this platform (an index lacking it) counts as missing here: pulled
  // if it can be; why it did not serve is kept for the error when the pull fails too.
  const lacking = new Map<string, string>();
  const stored = (ref: string, wanted: Platform) => {
    try {
      return image(ref, wanted);
    } catch (error) {
      if (!(error instanceof UserError)) throw error;
      lacking.set(ref, error.message);
      return undefined;
    }
  };
  const parsed = parseDockerfile(options.dockerfileText, options.dockerfilePath);
  if (options.pull) {
    const first = planStages(parsed, { buildArgs: options.buildArgs, platform, namedContexts: named });
    for (const { ref, platform: wanted } of imageReadsByPlatform(first, named, platform)) {
      let found = stored(ref, wanted);
      // A single-platform image of another platform (pulled for this machine, say) is pulled again for this one.
      if (found && !platformMatches(wanted, found.config)) {
        lacking.set(ref, `it is for ${formatPlatform(found.config)}`);
        found = undefined;
      }
      if (found && !options.pullAlways) continue;
      // Where the Dockerfile names it, and a local image it may have meant, for any error.
      const fail = (message: string): never => {
        const hint = similarLocalImage(options.store, ref);
        const text = `${message}${hint ? ` (did you mean ${hint} (local)?)` : ""}`;
        const step = stepReading(first, ref);
        throw step ? stepError(step, text) : new UserError(`${options.dockerfilePath}: ${text}`);
      };
      // An ID names an image of this store only: there is nothing to pull.
      if (isImageIdText(ref)) {
        if (found) continue;
        fail(`no image with ID ${ref} in the local store (\`memobuild image ls\` lists them)`);
      }
      // With --pull the pull is asked for: "not in the store" would be a reason it does not have (a worker's store, say).
      if (!found && !options.pullAlways) progress({ type: "warning", message: `pulling ${ref}${wanted === platform && !options.platform ? "" : ` for ${formatPlatform(wanted)}`}: it is not in the local image store` });
      const why = (error: UserError) => (lacking.has(ref) ? `${ref} in the local store: ${lacking.get(ref)}, and pulling it failed: ${error.message}` : error.message);
      await options.pull(ref, wanted).catch((error) => (error instanceof UserError ? fail(why(error)) : Promise.reject(error)));
      image.forget(ref);
    }
  }
  const plan = planStages(parsed, {
    buildArgs: options.buildArgs,
    platform,
    namedContexts: named,
    images: (ref, from) => {
      let wanted = platform;
      try {
        if (from !== undefined) wanted = parsePlatform(from);
      } catch {
        return undefined; // an invalid --platform is the FROM step's error, with its line
      }
      const found = stored(ref, wanted);
      return found ? { env: found.config.config.Env ?? [], onbuild: found.config.config.OnBuild ?? [] } : undefined;
    },
  });
  for (const name of plan.unusedBuildArgs) progress({ type: "warning", message: `build arg ${name} is not declared by any ARG` });
  const findings = lintDockerfile(parsed, plan);
  if (findings.length && checkPolicy(parsed).error) {
    throw new DockerfileError(`the build checks failed (# check=error=true):\n${findings.map((f) => `  ${f.file}:${f.line}: ${f.rule}: ${f.message}`).join("\n")}`, { file: parsed.file, line: findings[0].line });
  }
  return Object.assign(plan, { checks: findings });
}

/** One build's walk over the graph: each step planned by its operation, then satisfied once. */
class Solve {
  private readonly settings: BuildSettings;
  private readonly cache: StepCache;
  private readonly executor: Executor;
  private readonly epoch?: number;
  private readonly results: StepResult[] = [];
  private readonly inputs: { id: string; key: string; inputs: StepInputs }[] = [];
  /** Step ids by key, for naming the parent or source a miss comes from. */
  private readonly keyOwner = new Map<string, KeyOwner>();
  /** Step numbers follow the graph's order, whatever order stages finish in. */
  private readonly numbers: Map<string, number>;
  /** The last build of this Dockerfile and target: a step that runs says what changed since. */
  private readonly previous?: Map<string, { key: string; inputs: unknown }>;
  private latest = 0;
  private aborted = false;
  /** Steps' staging directories, removed while the build waits (see IdleRemovals). */
  private readonly removals = new IdleRemovals();

  constructor(
    private readonly options: BuildOptions,
    private readonly plan: Plan,
    private readonly graph: BuildGraph,
    private readonly world: BuildWorld,
  ) {
    this.epoch = sourceDateEpoch(options.buildArgs);
    const sandboxKey = describeSandbox(options.sandbox);
    this.settings = { platform: options.platform ?? hostPlatform(), network: options.network, sandbox: options.sandbox, sandboxKey, epoch: this.epoch, allow: options.allow ?? new Set(), untrusted: options.untrusted };
    this.cache = new StepCache(options.store, options.remote, { dryRun: options.dryRun === true, upload: options.remoteUpload ?? "wait" }, options.cacheFrom);
    const localMounts = directoryCacheMounts((identity) => options.store.mountDir(identity));
    const resources = world.resources({ secrets: options.secrets, ssh: options.ssh, cacheMounts: options.cacheMounts ? options.cacheMounts(localMounts) : localMounts });
    this.executor = options.executor ? options.executor(resources) : new LocalExecutor(resources);
    this.numbers = new Map(graph.nodes.map((node, i) => [node.id, i + 1]));
    this.previous = options.dryRun ? undefined : options.store.lastBuildInputs(this.buildName(), graph.target.id);
  }

  /**
   * Nothing a step started is left running when the build returns (see Executor.settle), and no
   * staging directory is left: those still pending are removed while the executor settles.
   */
  async settle() {
    try {
      // A failed build too: no blob is renamed into the store after it returns.
      await Promise.all([this.executor.settle?.(), this.cache.written().catch(() => {})]);
    } finally {
      this.removals.flush();
    }
  }

  async run(): Promise<BuildResult> {
    const { graph, plan, options } = this;
    options.progress({
      type: "plan",
      // By name: the last stage, unnamed, is the default target and goes unsaid; another is stage-N.
      target: graph.target.name ?? (graph.target.index === plan.stages.length - 1 ? undefined : `stage-${graph.target.index}`),
      steps: graph.nodes.map((node, i) => ({ id: node.id, stage: plan.stages[node.step.stage].id, number: i + 1, name: stepName(plan.stages[node.step.stage], node.step, this.label()) })),
    });
    await scheduleStages(graph.stages, Math.max(1, options.jobs ?? availableParallelism()), async (stage) => {
      try {
        await this.buildStage(stage);
      } catch (error) {
        this.aborted = true; // other stages stop at their next step
        throw error;
      }
    });
    const steps = this.orderedResults();
    const inputs = new Map(this.inputs.map((i) => [i.id, i.inputs]));
    const checks = (plan as Plan & { checks?: Finding[] }).checks ?? [];
    if (options.dryRun) return { steps, inputs, plan, graph, checks };
    await this.cache.written(); // the image's layers are in the store
    const image = this.storeFinalImage();
    options.store.recordBuildInputs(this.buildName(), graph.target.id, this.inputs);
    if (options.remote && options.remoteUpload !== "background") await options.remote.flush();
    return { image, steps, inputs, plan, graph, checks };
  }

  /** The target platform in step names, in a multi-platform build. */
  private label() {
    return this.options.platformLabel ? formatPlatform(this.settings.platform) : undefined;
  }

  private buildName() {
    return buildRecordName(this.options.dockerfileAbsolute ?? this.options.dockerfilePath, this.settings.platform);
  }

  /** The settings a stage's steps see: its own platform (FROM --platform), else the target's. */
  private settingsFor(stage: Stage): BuildSettings {
    if (stage.platform === undefined) return this.settings;
    try {
      return { ...this.settings, platform: stagePlatform(stage, this.settings.platform) };
    } catch (error) {
      throw stepError(stage.steps[0], (error as Error).message);
    }
  }

  private async buildStage(stage: Stage) {
    let state: StageState | undefined;
    const noCache = this.options.noCache || [stage.name, String(stage.index)].some((n) => n !== undefined && this.options.noCacheStages?.has(n));
    for (const step of stage.steps) {
      if (this.aborted) return;
      state = await this.solveStep(stage, step, state, noCache);
    }
    this.world.stages.set(stage.index, state!);
  }

  /** One step: its operation's plan and key, one decision, the stage carried on, progress told. */
  private async solveStep(stage: Stage, step: Step, parent: StageState | undefined, noCache: boolean): Promise<StageState> {
    const started = performance.now();
    const number = this.numbers.get(step.id)!;
    const name = stepName(stage, step, this.label());
    const fail = (message: string): never => {
      throw stepError(step, message);
    };
    return await this.reportingFailures(step, number, async () => {
      const planned = await planStep({ step, stage, parent, world: this.world, build: this.settingsFor(stage), fail });
      const key = stepKey(planned.inputs);
      this.options.progress({ type: "start", number, step: step.id, name });
      const request = planned.request;
      const satisfied = await this.cache.satisfy(key, step.text, noCache, request && (() => this.execute(request, step, number, started)), name);
      const state = this.advance(planned, key, satisfied, step);
      this.record(stage, step, { key, name, planned, satisfied, started, number, noCache });
      return state;
    });
  }

  /** The stage after the step: its key, its layer (if it made one) and its history entry. */
  private advance(planned: StepPlan, key: string, satisfied: Satisfied, step: Step): StageState {
    const next: StageState = { ...planned.next, key };
    if (satisfied.diffId) {
      const layer = satisfied.layer ?? this.options.store.layer(satisfied.diffId)!;
      next.layers = [...next.layers, { diffId: satisfied.diffId, descriptor: { mediaType: layer.mediaType, digest: layer.digest, size: layer.size } }];
    }
    if (planned.history && !(planned.request && this.options.dryRun)) {
      next.config.history!.push(historyEntry(step.text, !planned.request, this.dateOf(satisfied.created)));
      this.latest = Math.max(this.latest, satisfied.created);
    }
    return next;
  }

  private record(stage: Stage, step: Step, done: { key: string; name: string; planned: StepPlan; satisfied: Satisfied; started: number; number: number; noCache: boolean }) {
    const { key, name, planned, satisfied } = done;
    const { status } = satisfied;
    const duration = this.options.dryRun ? 0 : Math.round(performance.now() - done.started);
    const result: StepResult = { id: step.id, stage: stage.id, name, instruction: step.text, key, status, duration_ms: duration, ...(planned.request ? {} : { config_only: true as const }), ...this.cache.note(key), ...(satisfied.signer ? { signer: satisfied.signer } : {}) };
    this.results.push(result);
    this.inputs.push({ id: step.id, key, inputs: planned.inputs });
    this.keyOwner.set(key, result);
    // Why it ran, against the last build, while later steps still run (one step, not all again).
    // A config-only step ran nothing, so there is no "why"; under --no-cache the cache was not asked.
    const reasons = status !== "executed" || !planned.request ? undefined : done.noCache ? [NO_CACHE_REASON] : this.previous ? explainStep(result, planned.inputs, this.previous, this.keyOwner).reasons : undefined;
    const savedMs = status === "cached-local" || status === "cached-remote" ? satisfied.savedMs : undefined;
    const layerSize = satisfied.diffId ? (satisfied.layer ?? this.options.store.layer(satisfied.diffId))?.size : undefined;
    const configOnly = planned.request ? undefined : true;
    this.options.progress({ type: "done", number: done.number, step: step.id, status, durationMs: duration, key, savedMs, layerSize, reasons, configOnly });
  }

  /**
   * Runs a step through the executor and stores its layer: the snapshot at once (the next step
   * mounts it); the blob is fsynced on another thread while the next step runs, then renamed
   * into place, then its row and the step's are written (StepCache), as before in that order.
   */
  private async execute(request: StepRequest, step: Step, number: number, started: number): Promise<Executed> {
    const { store, progress } = this.options;
    const work = store.tempDir("step");
    let stored: Promise<void> | undefined;
    try {
      const made = await this.executor.execute(request, { work, onOutput: (line) => progress({ type: "output", number, step: step.id, line }) });
      // Layers stay uncompressed in the cache (the blob is the tar; its digest is the diff ID), as
      // in BuildKit: compressing every layer at build time cost seconds on large contexts.
      const layer = { diffId: made.diffId, digest: made.diffId, size: made.size, uncompressedSize: made.size, mediaType: MEDIA.layerTar };
      store.adoptSnapshot(made.diffId, made.directory);
      stored = store.adoptBlobInBackground(made.tar, made.diffId).then(() => store.recordLayer(layer));
      return { diffId: made.diffId, durationMs: Math.round(performance.now() - started), layer, stored };
    } finally {
      // The blob is renamed out of the staging directory first.
      const remove = () => this.removals.add(work);
      if (stored) void stored.then(remove, remove);
      else remove();
    }
  }

  /** Errors of a step become build errors naming it; a failed RUN's last output is reported. */
  private async reportingFailures<T>(step: Step, number: number, solve: () => Promise<T>): Promise<T> {
    try {
      return await solve();
    } catch (error) {
      const failure = stepFailure(step, error);
      // Every failed step says so (a COPY whose source is missing too), so what follows the
      // build (the hub) never shows it running; a RUN's last lines of output come with it.
      const message = failure.run?.message ?? (failure.error instanceof Error ? failure.error.message : String(failure.error));
      this.options.progress({ type: "error", number, step: step.id, message, ...(failure.run ? { tail: failure.run.tail.slice(-20) } : {}) });
      throw failure.error;
    }
  }

  /** A step's date: the epoch when set, else when the step first ran (so a rebuild from cache is identical). */
  private dateOf(createdMs: number) {
    return new Date(this.epoch !== undefined ? this.epoch * 1000 : createdMs).toISOString();
  }

  /** Steps in the graph's order, then those the target does not need. */
  private orderedResults(): StepResult[] {
    const order = (id: string) => this.numbers.get(id) ?? 0;
    this.results.sort((a, b) => order(a.id) - order(b.id));
    this.inputs.sort((a, b) => order(a.id) - order(b.id));
    const skipped = this.graph.pruned.map((step): StepResult => {
      const stage = this.plan.stages[step.stage];
      return { id: step.id, stage: stage.id, name: stepName(stage, step, this.label()), instruction: step.text, key: "", status: "skipped", duration_ms: 0 };
    });
    return [...this.results, ...skipped];
  }

  private storeFinalImage(): StoredImage {
    const { options } = this;
    const final = this.world.stages.get(this.graph.target.index)!;
    const config = cloneConfig(final.config);
    config.created = this.dateOf(this.latest);
    if (options.labels && Object.keys(options.labels).length) config.config.Labels = { ...(config.config.Labels ?? {}), ...options.labels };
    // The layer list is the one source of the config's diff IDs.
    config.rootfs.diff_ids = final.layers.map((l) => l.diffId);
    const annotations = options.annotations && Object.keys(options.annotations).length ? options.annotations : undefined;
    const stored = storeImage(options.store, config, final.layers.map((l) => l.descriptor), annotations);
    // Named or not, the image can be found by the ID `-q` prints (run, export, FROM it).
    options.store.recordImageId(stored.manifest.config.digest, stored.manifestDigest);
    return stored;
  }
}
