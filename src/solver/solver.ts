/**
 * The solver: turns a planned Dockerfile into an image, running only the steps whose inputs
 * changed. Each step's key is BLAKE3 over its parent's key, the instruction as expanded, and
 * the digests of what it reads (context files, another stage, a base image's manifest), plus
 * the platform. Never mtimes or host paths. A key found in the local cache is a hit: its layer
 * is reused and nothing runs.
 */
import { statCacheFile } from "../config/cache-dir.ts";
import { describeSandbox, type Sandbox } from "../executor/sandbox.ts";
import { rmSync } from "node:fs";
import { availableParallelism } from "node:os";
import type { LocalStore } from "../cache/store.ts";
import { loadContext, type BuildContext } from "../context/context.ts";
import type { Ownership } from "../context/digest.ts";
import { DockerfileError } from "../frontend/errors.ts";
import { parseDockerfile } from "../frontend/parser.ts";
import { plan as planStages, type Plan, type Stage, type Step } from "../frontend/plan.ts";
import { formatPlatform, hostPlatform, parsePlatform, type Platform } from "../frontend/platform.ts";
import { buildGraph, type BuildGraph } from "../graph/graph.ts";
import { applyInstruction, cloneConfig, emptyConfig, historyEntry, workdirAfter, type ImageConfig, type StageConfigState } from "../image/config.ts";
import { MEDIA, storeImage, type Descriptor, type StoredImage } from "../image/layout.ts";
import { LayerView, resolveUser } from "../snapshot/view.ts";
import { diskFullError, UserError } from "../errors.ts";
import { RunFailedError } from "../executor/run.ts";
import { Downloads, isUrl, type Download } from "../executor/download.ts";
import { LocalExecutor, type Executor, type StepInstruction, type StepRequest } from "../executor/executor.ts";
import { storeCacheMounts } from "../executor/cache-mount.ts";
import type { SshAgents } from "../executor/ssh.ts";
import type { Instruction } from "../frontend/instructions.ts";
import { blake3Hex } from "../hash/blake3.ts";
import { removeTree } from "../rootfs/root.ts";
import type { RemoteCache } from "../remote/client.ts";
import type { ProgressSink, StepStatus } from "./progress.ts";
import { imageReferences, imageResolver } from "./images.ts";
import { stepKey, type StepInputs } from "./keys.ts";
import { scheduleStages } from "./schedule.ts";
import { CacheSync } from "./cache-sync.ts";
import { explainStep } from "./explain.ts";

export { stepKey, type StepInputs } from "./keys.ts";

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
  network: "none" | "host";
  /** --add-host, --shm-size, --ulimit: every RUN's container. */
  sandbox?: Sandbox;
  /** What the person running the build consents to: network.host, security.insecure. */
  allow?: ReadonlySet<string>;
  progress: ProgressSink;
  /** Compute every step's key and whether it hits, but run nothing and store nothing. */
  dryRun?: boolean;
  /** How many stages may build at once (default: the number of CPUs). */
  jobs?: number;
  /** The shared remote cache, when one is configured. */
  remote?: RemoteCache;
  /** wait (default): the build waits for uploads at its end; off: upload nothing. */
  remoteUpload?: "wait" | "background" | "off";
  /** Fetches an image the local store lacks (from its registry). */
  pull?: (ref: string) => Promise<void>;
  /** `--label`: labels added to the final image's config (after the Dockerfile's own). */
  labels?: Record<string, string>;
  /** `--build-context NAME=…`, by lower-case name: an image, or a local directory. */
  namedContexts?: Map<string, NamedContext>;
  /** `--annotation`: annotations on the final image's manifest. */
  annotations?: Record<string, string>;
  /** Runs the steps that miss (default: the real one; tests give a fake). */
  executor?: Executor;
}

export interface StepResult {
  id: string;
  stage: string;
  instruction: string;
  key: string;
  status: StepStatus;
  duration_ms: number;
  /** Why the remote's result for this step was not used (e.g. an untrusted signer). */
  remote_refused?: string;
}

export interface BuildResult {
  /** Undefined for a dry run. */
  image?: StoredImage;
  steps: StepResult[];
  /** What each step's key was made from, by step id. */
  inputs: Map<string, StepInputs>;
  plan: Plan;
  graph: BuildGraph;
}

/** A failure with the step that failed: instruction, location and the output's last lines. */
export class BuildError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
  }
}

/** What a `--build-context` name stands for. */
export type NamedContext = { kind: "image"; image: StoredImage } | { kind: "local"; dir: string };

interface LayerRef {
  diffId: string;
  descriptor: Descriptor;
}

interface StageState {
  key: string;
  layers: LayerRef[];
  config: ImageConfig;
  configState: StageConfigState;
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

export async function build(options: BuildOptions): Promise<BuildResult> {
  const { store, progress } = options;
  const platform = hostPlatform();
  const epoch = sourceDateEpoch(options.buildArgs);
  /** A step's date: the epoch when set, else when the step first ran (so a rebuild from cache is identical). */
  const dateOf = (createdMs: number) => new Date(epoch !== undefined ? epoch * 1000 : createdMs).toISOString();
  const named = options.namedContexts ?? new Map<string, NamedContext>();
  const namedNames = new Set(named.keys());
  const storeImages = imageResolver(store);
  // A name given an image by --build-context resolves to that image wherever an image is read.
  const resolveImage = Object.assign((ref: string) => {
    const context = named.get(ref.toLowerCase());
    return context?.kind === "image" ? context.image : context ? undefined : storeImages(ref);
  }, { forget: storeImages.forget });
  const parsed = parseDockerfile(options.dockerfileText, options.dockerfilePath);
  // Images the store lacks are pulled first, so planning sees their ENV and ONBUILD.
  if (options.pull) {
    for (const ref of imageReferences(planStages(parsed, { buildArgs: options.buildArgs, platform, namedContexts: namedNames }), namedNames)) {
      const stored = resolveImage(ref);
      if (stored && !options.pullAlways) continue;
      if (!stored) progress({ type: "warning", message: `pulling ${ref}: it is not in the local image store` });
      await options.pull(ref);
      resolveImage.forget(ref);
    }
  }
  const plan = planStages(parsed, {
    buildArgs: options.buildArgs,
    platform,
    namedContexts: namedNames,
    images: (ref) => {
      const image = resolveImage(ref);
      return image ? { env: image.config.config.Env ?? [], onbuild: image.config.config.OnBuild ?? [] } : undefined;
    },
  });
  for (const name of plan.unusedBuildArgs) progress({ type: "warning", message: `build arg ${name} is not declared by any ARG` });
  const graph = buildGraph(plan, options.target);
  // Unnamed stages are `stage-N` in progress, as BuildKit shows them.
  const stepName = (stage: Stage, step: Step) => `[${stage.name ?? `stage-${stage.index}`} ${step.index + 1}/${stage.steps.length}] ${step.text.split("\n")[0]}`;
  progress({
    type: "plan",
    target: graph.target.id,
    steps: graph.nodes.map((node, i) => {
      const stage = plan.stages[node.step.stage];
      return { id: node.id, stage: stage.id, number: i + 1, name: stepName(stage, node.step) };
    }),
  });
  // The last build of this Dockerfile and target: a step that runs says what changed since.
  const previous = options.dryRun ? undefined : store.lastBuildInputs(options.dockerfileAbsolute ?? options.dockerfilePath, graph.target.id);

  // One load of the context per build, shared by the stages that read it.
  let context: Promise<BuildContext> | undefined;
  const getContext = () =>
    (context ??= loadContext({ contextDir: options.contextDir, dockerfile: options.dockerfileAbsolute, statCacheFile: options.statCacheFile }).then((loaded) => {
      progress({ type: "context", digest: loaded.digest() });
      return loaded;
    }));

  const states = new Map<number, StageState>();
  const results: StepResult[] = [];
  const inputsById: { id: string; key: string; inputs: StepInputs }[] = [];
  /** Step ids by key, for naming the parent or source a miss comes from. */
  const keyOwner = new Map<string, string>();
  let downloadDir: string | undefined;
  const downloads = new Downloads(() => (downloadDir ??= store.tempDir("downloads")));
  // Step numbers follow the graph's order, whatever order stages finish in.
  const numbers = new Map(graph.nodes.map((node, i) => [node.id, i + 1]));
  let latest = 0;
  let aborted = false;
  const platformText = formatPlatform(platform);

  const layersOf = async (layers: LayerRef[]) => Promise.all(layers.map((l) => store.ensureSnapshot(l.diffId)));
  const stageByReference = (reference: string, before: number): Stage | undefined => {
    const lower = reference.toLowerCase();
    return plan.stages.find((s, i) => i < before && (s.name === lower || String(s.index) === reference));
  };

  // Each local --build-context directory is read once per build, like the main context.
  const namedLoads = new Map<string, Promise<BuildContext>>();
  const getNamedContext = (name: string, dir: string) => {
    let load = namedLoads.get(name);
    if (!load) namedLoads.set(name, (load = loadContext({ contextDir: dir, statCacheFile: statCacheFile(store.dir, dir) })));
    return load;
  };
  const localContext = (reference: string) => {
    const context = named.get(reference.toLowerCase());
    return context?.kind === "local" ? context : undefined;
  };

  /** What a RUN/COPY/ADD reads, resolved once; the key's inputs are filled in as it goes. */
  const resolveReads = async (instruction: StepInstruction, step: Step, stage: Stage, current: StageState, inputs: StepInputs, fail: (message: string) => never): Promise<StepReads> => {
    const sources = new Map<string, LayerRef[]>();
    /** A stage (built earlier) or an image: its layers for the executor, its identity for the key. */
    const sourceFor = (reference: string, what: string): string => {
      const source = stageByReference(reference, stage.index);
      if (source) {
        const built = states.get(source.index)!;
        sources.set(reference, built.layers);
        return built.key;
      }
      const image = resolveImage(reference) ?? fail(`${what}: no such stage, and no image ${reference} in the local store`);
      sources.set(reference, imageLayers(image));
      return image.manifestDigest;
    };
    const reads: StepReads = { sources, named: new Map(), owner: { uid: 0, gid: 0 }, downloads: async () => [] };
    if (instruction.kind === "WORKDIR") {
      reads.owner = await ownerFor(current.config.config.User, current, layersOf, fail, "USER");
      inputs.owner = `${reads.owner.uid}:${reads.owner.gid}`;
      return reads;
    }
    if (instruction.kind === "RUN") {
      inputs.env = step.runEnv;
      const digests: string[] = [];
      const files: Record<string, string> = {};
      const stageKeys: string[] = [];
      for (const mount of instruction.mounts) {
        if (mount.type !== "bind") continue;
        const namedDir = mount.from !== undefined ? localContext(mount.from) : undefined;
        if (mount.from !== undefined && !namedDir) {
          stageKeys.push(sourceFor(mount.from, `--mount from=${mount.from}`));
          continue;
        }
        // Stryker disable next-line MethodExpression: the name only keys the per-build memo of loaded contexts; any one case does
        const context = namedDir ? await getNamedContext(mount.from!.toLowerCase(), namedDir.dir) : (reads.context = await getContext());
        if (namedDir) reads.named.set(mount.from!, context);
        // Stryker disable next-line StringLiteral: "" selects the whole context too
        const selection = context.select([mount.source || "."]);
        digests.push(selection.digest);
        Object.assign(files, fileDigests(selection.entries));
      }
      // Every bind mount counts: the key changes when any of them does.
      if (digests.length) inputs.context = { digest: digests.length === 1 ? digests[0] : blake3Hex(digests.join(",")), files };
      if (stageKeys.length) inputs.fromStage = stageKeys.join(",");
      return reads;
    }
    reads.owner = await ownerFor(instruction.chown, current, layersOf, fail);
    // Stryker disable next-line ConditionalExpression: ADD has no `from`; the check is for the type
    const from = instruction.kind === "COPY" ? instruction.from : undefined;
    const namedDir = from !== undefined ? localContext(from) : undefined;
    // Stryker disable next-line ConditionalExpression: namedDir implies from; the check is for the type
    if (from !== undefined && namedDir) {
      // A local --build-context reads like the main context: the files it selects are the key.
      // Stryker disable next-line MethodExpression: the name only keys the per-build memo of loaded contexts
      const context = await getNamedContext(from.toLowerCase(), namedDir.dir);
      reads.named.set(from, context);
      const selection = context.select(instruction.sources, { excludes: instruction.excludes, owner: reads.owner });
      inputs.context = { digest: selection.digest, files: fileDigests(selection.entries) };
      return reads;
    }
    if (from !== undefined) {
      inputs.fromStage = sourceFor(from, `--from=${from}`);
      return reads;
    }
    const urls = instruction.sources.filter(isUrl);
    if (urls.length > 0 && instruction.kind !== "ADD") fail("COPY does not fetch URLs; use ADD");
    // Stryker disable next-line ConditionalExpression: COPY has no `checksum`; the check is for the type
    const checksum = instruction.kind === "ADD" ? instruction.checksum : undefined;
    if (checksum && urls.length !== 1) fail("--checksum needs exactly one URL source");
    if (urls.length) {
      // With --checksum the key needs no download; without, the content decides.
      inputs.urls = checksum ? [checksum] : await Promise.all(urls.map(async (url) => (await downloads.fetch(url)).digest));
      reads.downloads = () => Promise.all(urls.map((url) => downloads.fetch(url, checksum)));
    }
    const local = instruction.sources.filter((s) => !isUrl(s));
    if (local.length) {
      reads.context = await getContext();
      const selection = reads.context.select(local, { excludes: instruction.excludes, owner: reads.owner });
      inputs.context = { digest: selection.digest, files: fileDigests(selection.entries) };
    }
    return reads;
  };

  // A dry run asks the remote what it holds; CacheSync never downloads or uploads for one.
  const remote = options.remote;

  const syncOptions = { dryRun: options.dryRun === true, upload: options.remoteUpload ?? "wait" } as const;
  const cachedSync = new CacheSync(store, remote, { ...syncOptions, noCache: options.noCache });
  const uncachedSync = new CacheSync(store, remote, { ...syncOptions, noCache: true });
  // --no-cache-filter names stages (by name or index) whose steps run without the cache.
  const noCacheIn = (stage: Stage) => options.noCache || [stage.name, String(stage.index)].some((n) => n !== undefined && options.noCacheStages?.has(n));

  const buildStage = async (stage: Stage) => {
    const sync = noCacheIn(stage) ? uncachedSync : cachedSync;
    let state: StageState | undefined;
    for (const step of stage.steps) {
      if (aborted) return; // another stage failed: stop at the next step
      const started = performance.now();
      const stepNumber = numbers.get(step.id)!;
      const name = stepName(stage, step);
      const location = step.instruction.location;
      const fail = (message: string): never => {
        throw new BuildError(`${location.file}:${location.line}:${location.column ?? 1}: ${step.text.split("\n")[0]}: ${message}`);
      };
      let status: StepStatus = "cached-local";
      let inputs: StepInputs;
      /** For a hit: how long the step took when it ran. */
      let savedMs: number | undefined;
      let layerSize: number | undefined;
      checkEntitlements(step.instruction, options.allow ?? new Set(), fail);
      try {
        if (step.index === 0) {
          if (stage.base.kind === "image" && localContext(stage.base.ref)) {
            fail(`--build-context ${stage.base.ref} is a directory, and FROM needs an image (docker-image://REF or oci-layout://DIR); COPY --from=${stage.base.ref} and RUN --mount from=${stage.base.ref} read a directory`);
          }
          ({ state, inputs } = fromStep(step, stage, states, resolveImage, platform, fail));
          state = withoutTriggers(state);
          progress({ type: "start", number: stepNumber, step: step.id, name });
          ({ status, savedMs } = await sync.configOnly(state.key, step.text));
        } else {
          const current: StageState = state!;
          const instruction = step.instruction;
          // An ARG keys on its names, not its values: a value enters the key of each step that
          // reads it (in its expanded text, or a RUN's environment), as in BuildKit.
          const keyText = instruction.kind === "ARG" ? `ARG ${instruction.args.map((a) => a.name).join(" ")}` : step.text;
          const sandbox = instruction.kind === "RUN" ? describeSandbox(options.sandbox) : undefined;
          inputs = { parent: current.key, instruction: keyText, platform: platformText, ...(sandbox ? { sandbox } : {}) };
          // What the step reads is resolved once: the same values make its key and run it.
          const changesFilesystem = makesLayer(instruction, current.config);
          const reads = changesFilesystem ? await resolveReads(instruction, step, stage, current, inputs, fail) : undefined;
          const key = stepKey(inputs);
          progress({ type: "start", number: stepNumber, step: step.id, name });
          const next: StageState = { ...current, key, config: cloneConfig(current.config), layers: [...current.layers], configState: { ...current.configState } };
          if (!isLayerOnly(instruction)) applyInstruction(next.config, instruction, next.configState);
          if (!changesFilesystem) {
            const satisfied = await sync.configOnly(key, step.text);
            ({ status, savedMs } = satisfied);
            // BuildKit records no history for ONBUILD (dockerfile2llb's dispatchOnbuild).
            if (instruction.kind !== "ONBUILD") next.config.history!.push(historyEntry(step.text, true, dateOf(satisfied.created)));
            latest = Math.max(latest, satisfied.created);
          } else {
            const hit = noCacheIn(stage) ? undefined : store.lookupStep(key);
            let diffId: string | undefined;
            let created = 0;
            if (hit && hit.diffId) {
              diffId = hit.diffId;
              created = hit.created;
              savedMs = hit.durationMs;
              sync.share(key, hit.diffId, hit.created, hit.durationMs);
            } else {
              const fromRemote = await sync.importLayer(key, step.text);
              if (fromRemote) {
                ({ diffId, created, durationMs: savedMs } = fromRemote);
                status = "cached-remote";
              }
            }
            if (diffId === undefined && options.dryRun) {
              // A dry run (explain) stops here: the step would come from the remote, or run.
              status = (await sync.remoteHas(key)) ? "cached-remote" : "executed";
              state = next;
              results.push({ id: step.id, stage: stage.id, instruction: step.text, key, status, duration_ms: 0, ...sync.note(key) });
              inputsById.push({ id: step.id, key, inputs });
              continue;
            }
            if (diffId === undefined) {
              status = "executed";
              diffId = await executeStep(options, {
                instruction: instruction as StepInstruction,
                config: current.config,
                env: step.runEnv ?? [],
                lowers: await layersOf(current.layers),
                sources: await sourceSnapshots(reads!.sources, layersOf),
                context: reads!.context,
                namedContexts: reads!.named,
                owner: reads!.owner,
                downloads: await reads!.downloads(),
                epoch,
                secrets: options.secrets,
                ssh: options.ssh,
                network: options.network,
                sandbox: options.sandbox,
                cacheMounts: storeCacheMounts(store),
                onOutput: (line) => progress({ type: "output", number: stepNumber, step: step.id, line }),
              });
              const durationMs = Math.round(performance.now() - started);
              created = store.recordStep(key, diffId, durationMs, step.text).created;
              sync.share(key, diffId, created, durationMs, true);
            }
            const layer = store.layer(diffId)!;
            layerSize = layer.size;
            next.layers.push({ diffId, descriptor: { mediaType: layer.mediaType, digest: layer.digest, size: layer.size } });
            next.config.history!.push(historyEntry(step.text, false, dateOf(created)));
            latest = Math.max(latest, created);
          }
          state = next;
        }
      } catch (error) {
        if (error instanceof BuildError || error instanceof DockerfileError) throw error;
        if (error instanceof RunFailedError) {
          const tail = error.tail.length ? `\n  last output:\n${error.tail.map((l) => `    ${l}`).join("\n")}` : "";
          progress({ type: "error", number: stepNumber, step: step.id, message: error.message, tail: error.tail.slice(-20) });
          fail(`${error.message}${tail}`); // the RUN's own code is in the message; the build exits 1, as buildx does
        }
        if (error instanceof UserError) {
          fail((error as Error).message);
        }
        const diskFull = diskFullError(error);
        if (diskFull) fail(diskFull.message);
        throw error;
      }
      const duration = Math.round(performance.now() - started);
      const result: StepResult = { id: step.id, stage: stage.id, instruction: step.text, key: state!.key, status, duration_ms: duration, ...sync.note(state!.key) };
      results.push(result);
      inputsById.push({ id: step.id, key: state!.key, inputs });
      keyOwner.set(result.key, result.id);
      // Why it ran, against the last build, while later steps still run (one step, not all again).
      const reasons = status === "executed" && previous ? explainStep(result, inputs, previous, keyOwner).reasons : undefined;
      const saved = status === "cached-local" || status === "cached-remote" ? savedMs : undefined;
      progress({ type: "done", number: stepNumber, step: step.id, status, durationMs: duration, key: state!.key, savedMs: saved, layerSize, reasons });
    }
    states.set(stage.index, state!);
  };

  try {
    await scheduleStages(graph.stages, Math.max(1, options.jobs ?? availableParallelism()), async (stage) => {
      try {
        await buildStage(stage);
      } catch (error) {
        aborted = true;
        throw error;
      }
    });
  } finally {
    if (downloadDir) rmSync(downloadDir, { recursive: true, force: true });
  }
  // Report steps in the graph's order.
  results.sort((a, b) => (numbers.get(a.id) ?? 0) - (numbers.get(b.id) ?? 0));
  inputsById.sort((a, b) => (numbers.get(a.id) ?? 0) - (numbers.get(b.id) ?? 0));

  for (const step of graph.pruned) {
    results.push({ id: step.id, stage: plan.stages[step.stage].id, instruction: step.text, key: "", status: "skipped", duration_ms: 0 });
  }
  const inputsMap = new Map(inputsById.map((i) => [i.id, i.inputs]));
  if (options.dryRun) return { steps: results, inputs: inputsMap, plan, graph };
  const final = states.get(graph.target.index)!;
  const config = cloneConfig(final.config);
  config.created = dateOf(latest);
  if (options.labels && Object.keys(options.labels).length) config.config.Labels = { ...(config.config.Labels ?? {}), ...options.labels };
  // The layer list is the one source of the config's diff IDs.
  config.rootfs.diff_ids = final.layers.map((l) => l.diffId);
  const annotations = options.annotations && Object.keys(options.annotations).length ? options.annotations : undefined;
  const image = storeImage(store, config, final.layers.map((l) => l.descriptor), annotations);
  store.recordBuildInputs(options.dockerfileAbsolute ?? options.dockerfilePath, graph.target.id, inputsById);
  if (remote && options.remoteUpload !== "background") await remote.flush();
  return { image, steps: results, inputs: inputsMap, plan, graph };
}

/** The base's ONBUILD triggers run in this stage (the planner put them first) and are cleared. */
function withoutTriggers(state: StageState): StageState {
  if (!state.config.config.OnBuild?.length) return state;
  const config = cloneConfig(state.config);
  config.config.OnBuild = null;
  return { ...state, config };
}

/** The per-file digests a step read, for `explain` (capped so huge contexts stay cheap). */
function fileDigests(entries: { name: string; type: string; mode: number; contentDigest?: Uint8Array; linkTarget?: string }[]): Record<string, string> {
  const files: Record<string, string> = {};
  for (const entry of entries.slice(0, 5000)) {
    files[entry.name] =
      entry.type === "file" ? `${entry.mode.toString(8)}:${Buffer.from(entry.contentDigest!).toString("hex").slice(0, 16)}` : `${entry.type}:${entry.mode.toString(8)}:${entry.linkTarget ?? ""}`;
  }
  return files;
}

async function ownerFor(
  chown: string | undefined,
  state: StageState,
  layersOf: (layers: LayerRef[]) => Promise<string[]>,
  fail: (message: string) => never,
  what = "--chown",
): Promise<Ownership> {
  if (!chown) return { uid: 0, gid: 0 };
  if (/^\d+(:\d+)?$/.test(chown)) {
    const [uid, gid] = chown.split(":");
    return { uid: Number(uid), gid: Number(gid ?? uid) };
  }
  const view = new LayerView(await layersOf(state.layers));
  try {
    const user = resolveUser(chown, (path) => view.readFile(path));
    return { uid: user.uid, gid: user.gid };
  } catch (error) {
    return fail(`${what}=${chown}: ${(error as Error).message}`);
  }
}

function fromStep(
  step: Step,
  stage: Stage,
  states: Map<number, StageState>,
  resolveImage: (ref: string) => StoredImage | undefined,
  platform: Platform,
  fail: (message: string) => never,
): { state: StageState; inputs: StepInputs } {
  const platformText = formatPlatform(platform);
  if (stage.platform !== undefined) {
    const wanted = parsePlatform(stage.platform);
    if (wanted.os !== platform.os || wanted.architecture !== platform.architecture) {
      fail(`platform ${stage.platform} is not supported: this machine builds for ${platformText}`);
    }
  }
  const base = stage.base;
  if (base.kind === "stage") {
    const parent = states.get(base.index)!;
    const inputs: StepInputs = { instruction: step.text, platform: platformText, fromStage: parent.key };
    // Stryker disable next-line ObjectLiteral: an absent cmdSet reads as false
    return { state: { ...parent, key: stepKey(inputs), configState: { cmdSet: false } }, inputs };
  }
  if (base.kind === "scratch") {
    const inputs: StepInputs = { instruction: "FROM scratch", platform: platformText };
    // Stryker disable next-line ObjectLiteral,BooleanLiteral: scratch has no CMD for an ENTRYPOINT to drop
    return { state: { key: stepKey(inputs), layers: [], config: emptyConfig(platform), configState: { cmdSet: false } }, inputs };
  }
  const image = resolveImage(base.ref);
  if (!image) {
    fail(`image ${base.ref} is not in the local image store (pull it with: memobuild image pull ${base.ref}, or import it)`);
  }
  if (image!.config.architecture !== platform.architecture || image!.config.os !== platform.os) {
    fail(`image ${base.ref} is for ${image!.config.os}/${image!.config.architecture}, not ${platformText}`);
  }
  const inputs: StepInputs = { instruction: step.text, platform: platformText, base: image!.manifestDigest };
  const config = cloneConfig(image!.config);
  config.history ??= [];
  config.config.OnBuild = null; // triggers run in this stage; they are not inherited further
  return {
    state: {
      key: stepKey(inputs),
      layers: imageLayers(image!),
      config,
      // Stryker disable next-line ObjectLiteral: an absent cmdSet reads as false
      configState: { cmdSet: false },
    },
    inputs,
  };
}

/** What a RUN/COPY/ADD step reads, resolved once by the solver. */
interface StepReads {
  /** Stages and images it reads, by the reference the Dockerfile uses. */
  sources: Map<string, LayerRef[]>;
  /** Local --build-context directories it reads, by the reference the Dockerfile uses. */
  named: Map<string, BuildContext>;
  context?: BuildContext;
  owner: Ownership;
  downloads: () => Promise<Download[]>;
}

/** RUN, COPY and ADD change only the filesystem; WORKDIR changes the config and may make a layer. */
const isLayerOnly = (instruction: Instruction) => instruction.kind === "RUN" || instruction.kind === "COPY" || instruction.kind === "ADD";

/** Whether the step makes a layer: BuildKit's WORKDIR creates its directory, unless it is "/". */
function makesLayer(instruction: Instruction, config: ImageConfig): instruction is StepInstruction {
  if (instruction.kind === "WORKDIR") return workdirAfter(config, instruction.path) !== "/";
  return isLayerOnly(instruction);
}

function imageLayers(image: StoredImage): LayerRef[] {
  return image.manifest.layers.map((descriptor, i) => ({ diffId: image.config.rootfs.diff_ids[i], descriptor }));
}

/** Runs a RUN/COPY/ADD step through the executor and stores its layer; returns the diff ID. */
async function executeStep(options: BuildOptions, request: Omit<StepRequest, "work">): Promise<string> {
  const { store } = options;
  const work = store.tempDir("step");
  try {
    const layer = await (options.executor ?? new LocalExecutor()).execute({ ...request, work });
    // Layers stay uncompressed in the cache (the blob is the tar; its digest is the diff ID), as
    // in BuildKit: compressing every layer at build time cost seconds on large contexts.
    store.adoptBlob(layer.tar, layer.diffId);
    store.adoptSnapshot(layer.diffId, layer.directory);
    store.recordLayer({ diffId: layer.diffId, digest: layer.diffId, size: layer.size, uncompressedSize: layer.size, mediaType: MEDIA.layerTar });
    return layer.diffId;
  } finally {
    removeTree(work);
  }
}

/** Snapshot directories (bottom first) of the stages and images a step reads. */
async function sourceSnapshots(sources: Map<string, LayerRef[]>, layersOf: (layers: LayerRef[]) => Promise<string[]>): Promise<Map<string, string[]>> {
  const result = new Map<string, string[]>();
  for (const [reference, layers] of sources) result.set(reference, await layersOf(layers));
  return result;
}

/** A step that reaches outside the sandbox needs the consent of whoever runs the build. */
function checkEntitlements(instruction: Instruction, allow: ReadonlySet<string>, fail: (message: string) => never) {
  if (instruction.kind !== "RUN") return;
  if (instruction.network === "host" && !allow.has("network.host")) {
    fail("RUN --network=host uses the host's network: run the build with --allow network.host to let it");
  }
  if (instruction.security === "insecure" && !allow.has("security.insecure")) {
    fail("RUN --security=insecure runs a privileged container: run the build with --allow security.insecure to let it");
  }
}
