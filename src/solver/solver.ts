/**
 * The solver: turns a planned Dockerfile into an image, running only the steps whose inputs
 * changed. Each step's key is BLAKE3 over its parent's key, the instruction as expanded, and
 * the digests of what it reads (context files, another stage, a base image's manifest), plus
 * the platform. Never mtimes or host paths. A key found in the local cache is a hit: its layer
 * is reused and nothing runs.
 */
import { mkdirSync, rmSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import type { LocalStore } from "../cache/store.ts";
import { loadContext, type BuildContext } from "../context/context.ts";
import type { Ownership } from "../context/digest.ts";
import { DockerfileError } from "../frontend/errors.ts";
import { parseDockerfile } from "../frontend/parser.ts";
import { plan as planStages, type Plan, type Stage, type Step } from "../frontend/plan.ts";
import { formatPlatform, hostPlatform, parsePlatform, type Platform } from "../frontend/platform.ts";
import { buildGraph, type BuildGraph } from "../graph/graph.ts";
import { applyInstruction, cloneConfig, emptyConfig, historyEntry, type ImageConfig, type StageConfigState } from "../image/config.ts";
import { MEDIA, storeImage, type Descriptor, type StoredImage } from "../image/layout.ts";
import { writeLayerTar } from "../snapshot/pack.ts";
import { LayerView, resolveUser } from "../snapshot/view.ts";
import { mountOverlay, unmount } from "../snapshot/overlay.ts";
import { executeCopy } from "../executor/copy.ts";
import { UserError } from "../errors.ts";
import { executeRun, RunFailedError } from "../executor/run.ts";
import { Downloads, isUrl } from "../executor/download.ts";
import type { RemoteCache } from "../remote/client.ts";
import type { ProgressSink, StepStatus } from "./progress.ts";
import { imageReferences, imageResolver } from "./images.ts";
import { stepKey, type StepInputs } from "./keys.ts";
import { scheduleStages } from "./schedule.ts";
import { CacheSync } from "./cache-sync.ts";

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
  store: LocalStore;
  statCacheFile?: string;
  secrets: Map<string, Buffer>;
  network: "none" | "host";
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
}

export interface StepResult {
  id: string;
  stage: string;
  instruction: string;
  key: string;
  status: StepStatus;
  duration_ms: number;
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
  const resolveImage = imageResolver(store);
  const parsed = parseDockerfile(options.dockerfileText, options.dockerfilePath);
  // Images the store lacks are pulled first, so planning sees their ENV and ONBUILD.
  if (options.pull) {
    for (const ref of imageReferences(planStages(parsed, { buildArgs: options.buildArgs, platform }))) {
      if (resolveImage(ref)) continue;
      progress({ type: "warning", message: `pulling ${ref}: it is not in the local image store` });
      await options.pull(ref);
      resolveImage.forget(ref);
    }
  }
  const plan = planStages(parsed, {
    buildArgs: options.buildArgs,
    platform,
    images: (ref) => {
      const image = resolveImage(ref);
      return image ? { env: image.config.config.Env ?? [], onbuild: image.config.config.OnBuild ?? [] } : undefined;
    },
  });
  for (const name of plan.unusedBuildArgs) progress({ type: "warning", message: `build arg ${name} is not declared by any ARG` });
  const graph = buildGraph(plan, options.target);

  // One load of the context per build, shared by the stages that read it.
  let context: Promise<BuildContext> | undefined;
  const getContext = () =>
    (context ??= loadContext({ contextDir: options.contextDir, dockerfile: options.dockerfileAbsolute, statCacheFile: options.statCacheFile }));

  const states = new Map<number, StageState>();
  const results: StepResult[] = [];
  const inputsById: { id: string; key: string; inputs: StepInputs }[] = [];
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

  const remote = options.dryRun ? undefined : options.remote;

  const sync = new CacheSync(store, remote, { noCache: options.noCache, dryRun: options.dryRun === true, upload: options.remoteUpload ?? "wait" });

  const buildStage = async (stage: Stage) => {
    let state: StageState | undefined;
    for (const step of stage.steps) {
      if (aborted) return; // another stage failed: stop at the next step
      const started = performance.now();
      const stepNumber = numbers.get(step.id)!;
      const name = `[${stage.id} ${step.index + 1}/${stage.steps.length}] ${step.text.split("\n")[0]}`;
      const location = step.instruction.location;
      const fail = (message: string, exitCode = 1): never => {
        throw new BuildError(`${location.file}:${location.line}:${location.column ?? 1}: ${step.text.split("\n")[0]}: ${message}`, exitCode);
      };
      let status: StepStatus = "cached-local";
      let inputs: StepInputs;
      try {
        if (step.index === 0) {
          ({ state, inputs } = fromStep(step, stage, states, resolveImage, platform, fail));
          progress({ type: "start", number: stepNumber, step: step.id, name });
          status = (await sync.configOnly(state.key)).status;
        } else {
          const current: StageState = state!;
          const instruction = step.instruction;
          // An ARG keys on its names, not its values: a value enters the key of each step that
          // reads it (in its expanded text, or a RUN's environment), as in BuildKit.
          const keyText = instruction.kind === "ARG" ? `ARG ${instruction.args.map((a) => a.name).join(" ")}` : step.text;
          inputs = { parent: current.key, instruction: keyText, platform: platformText };
          if (instruction.kind === "RUN") {
            inputs.env = step.runEnv;
            for (const mount of instruction.mounts) {
              if (mount.type !== "bind") continue;
              if (mount.from === undefined) {
                const selection = (await getContext()).select([mount.source || "."]);
                inputs.context = { digest: selection.digest, files: fileDigests(selection.entries) };
              } else {
                const source = stageByReference(mount.from, stage.index);
                inputs.fromStage = source ? states.get(source.index)!.key : resolveImage(mount.from)?.manifestDigest ?? fail(`--mount from=${mount.from}: no such stage or image in the local store`);
              }
            }
          } else if (instruction.kind === "COPY" || instruction.kind === "ADD") {
            const from = instruction.kind === "COPY" ? instruction.from : undefined;
            if (from !== undefined) {
              const source = stageByReference(from, stage.index);
              inputs.fromStage = source ? states.get(source.index)!.key : resolveImage(from)?.manifestDigest ?? fail(`--from=${from}: no such stage, and no image ${from} in the local store`);
            } else if (instruction.sources.length > 0) {
              const urls = instruction.sources.filter(isUrl);
              if (urls.length > 0 && instruction.kind !== "ADD") fail("COPY does not fetch URLs; use ADD");
              if (instruction.kind === "ADD" && instruction.checksum && urls.length !== 1) fail("--checksum needs exactly one URL source");
              // With --checksum the key needs no download; without, the content decides.
              if (urls.length) {
                inputs.urls = instruction.kind === "ADD" && instruction.checksum
                  ? [instruction.checksum]
                  : await Promise.all(urls.map(async (url) => (await downloads.fetch(url)).digest));
              }
              const local = instruction.sources.filter((s) => !isUrl(s));
              if (local.length) {
                const owner = await ownerFor(instruction.chown, current, layersOf, fail);
                const selection = (await getContext()).select(local, { excludes: instruction.excludes, owner });
                inputs.context = { digest: selection.digest, files: fileDigests(selection.entries) };
              }
            }
          }
          const key = stepKey(inputs);
          progress({ type: "start", number: stepNumber, step: step.id, name });
          const changesFilesystem = instruction.kind === "RUN" || instruction.kind === "COPY" || instruction.kind === "ADD";
          const next: StageState = { ...current, key, config: cloneConfig(current.config), layers: [...current.layers], configState: { ...current.configState } };
          if (!changesFilesystem) {
            applyInstruction(next.config, instruction, next.configState);
            const satisfied = await sync.configOnly(key);
            status = satisfied.status;
            next.config.history!.push(historyEntry(step.text, true, dateOf(satisfied.created)));
            latest = Math.max(latest, satisfied.created);
          } else {
            const hit = options.noCache ? undefined : store.lookupStep(key);
            let diffId: string | undefined;
            let created = 0;
            if (hit && hit.diffId) {
              diffId = hit.diffId;
              created = hit.created;
              sync.share(key, hit.diffId, hit.created);
            } else {
              const fromRemote = await sync.importLayer(key);
              if (fromRemote) {
                ({ diffId, created } = fromRemote);
                status = "cached-remote";
              }
            }
            if (diffId === undefined && options.dryRun) {
              // A dry run (explain) stops here: the step would run.
              status = "executed";
              state = next;
              results.push({ id: step.id, stage: stage.id, instruction: step.text, key, status, duration_ms: 0 });
              inputsById.push({ id: step.id, key, inputs });
              continue;
            }
            if (diffId === undefined) {
              status = "executed";
              diffId = await executeStep(step, current, stage, {
                options,
                getContext,
                layersOf,
                states,
                resolveImage,
                stageByReference,
                onOutput: (line) => progress({ type: "output", number: stepNumber, step: step.id, line }),
                fail,
                downloads,
              });
              created = store.recordStep(key, diffId).created;
              sync.share(key, diffId, created, true);
            }
            const layer = store.layer(diffId)!;
            next.layers.push({ diffId, descriptor: { mediaType: layer.mediaType, digest: layer.digest, size: layer.size } });
            next.config.rootfs.diff_ids.push(diffId);
            next.config.history!.push(historyEntry(step.text, false, dateOf(created)));
            latest = Math.max(latest, created);
          }
          state = next;
        }
      } catch (error) {
        if (error instanceof BuildError || error instanceof DockerfileError) throw error;
        if (error instanceof RunFailedError) {
          const tail = error.tail.length ? `\n  last output:\n${error.tail.map((l) => `    ${l}`).join("\n")}` : "";
          progress({ type: "error", number: stepNumber, message: error.message });
          fail(`${error.message}${tail}`, error.exitCode || 1);
        }
        if (error instanceof UserError) {
          fail((error as Error).message);
        }
        throw error;
      }
      const duration = Math.round(performance.now() - started);
      progress({ type: "done", number: stepNumber, step: step.id, status, durationMs: duration });
      results.push({ id: step.id, stage: stage.id, instruction: step.text, key: state!.key, status, duration_ms: duration });
      inputsById.push({ id: step.id, key: state!.key, inputs });
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
  const image = storeImage(store, config, final.layers.map((l) => l.descriptor));
  store.recordBuildInputs(options.dockerfileAbsolute ?? options.dockerfilePath, graph.target.id, inputsById);
  if (remote && options.remoteUpload !== "background") await remote.flush();
  return { image, steps: results, inputs: inputsMap, plan, graph };
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
    return fail(`--chown=${chown}: ${(error as Error).message}`);
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
    return { state: { ...parent, key: stepKey(inputs), configState: { cmdSet: false } }, inputs };
  }
  if (base.kind === "scratch") {
    const inputs: StepInputs = { instruction: "FROM scratch", platform: platformText };
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
      layers: image!.manifest.layers.map((descriptor, i) => ({ diffId: image!.config.rootfs.diff_ids[i], descriptor })),
      config,
      configState: { cmdSet: false },
    },
    inputs,
  };
}

interface ExecuteContext {
  options: BuildOptions;
  getContext: () => Promise<BuildContext>;
  layersOf: (layers: LayerRef[]) => Promise<string[]>;
  states: Map<number, StageState>;
  resolveImage: (ref: string) => StoredImage | undefined;
  stageByReference: (reference: string, before: number) => Stage | undefined;
  onOutput: (line: string) => void;
  fail: (message: string) => never;
  downloads: Downloads;
}

/** Runs a RUN/COPY/ADD step and stores its layer; returns the layer's diff ID. */
async function executeStep(step: Step, current: StageState, stage: Stage, x: ExecuteContext): Promise<string> {
  const { store } = x.options;
  const instruction = step.instruction;
  const lowers = await x.layersOf(current.layers);
  let layerDir: string;
  const staging = store.tempDir("step");
  const mounted: string[] = [];
  try {
    if (instruction.kind === "RUN") {
      const context = instruction.mounts.some((m) => m.type === "bind" && m.from === undefined) ? await x.getContext() : undefined;
      layerDir = await executeRun({
        instruction,
        config: current.config,
        env: step.runEnv ?? [],
        lowers,
        store,
        context: context!,
        stageLayers: (reference) => {
          const source = x.stageByReference(reference, stage.index);
          const layers = source ? x.states.get(source.index)?.layers : undefined;
          return layers ? lowersSync(store, layers) : undefined;
        },
        secrets: x.options.secrets,
        network: x.options.network,
        onOutput: x.onOutput,
      }, staging);
    } else if (instruction.kind === "COPY" || instruction.kind === "ADD") {
      layerDir = join(staging, "layer");
      // --link lays the files out without looking at the layers below (BuildKit's rule), so
      // the layer does not depend on them: new directories get default modes.
      const view = new LayerView(instruction.link ? [] : lowers);
      const owner = await ownerFor(instruction.chown, current, x.layersOf, x.fail);
      const from = instruction.kind === "COPY" ? instruction.from : undefined;
      let sourceRoot: string | undefined;
      if (from !== undefined) {
        const source = x.stageByReference(from, stage.index);
        const layers = source ? x.states.get(source.index)!.layers : x.resolveImage(from)!.manifest.layers.map((d, i) => ({ diffId: x.resolveImage(from)!.config.rootfs.diff_ids[i], descriptor: d }));
        const sourceLowers = await x.layersOf(layers);
        sourceRoot = join(staging, "source");
        if (sourceLowers.length > 0) {
          mountOverlay({ lowers: [...sourceLowers].reverse(), target: sourceRoot });
          mounted.push(sourceRoot);
        } else {
          mkdirSync(sourceRoot, { recursive: true });
        }
      }
      mkdirSync(layerDir, { recursive: true });
      const urls = instruction.sources.filter(isUrl);
      const checksum = instruction.kind === "ADD" ? instruction.checksum : undefined;
      const fetched = await Promise.all(urls.map((url) => x.downloads.fetch(url, checksum)));
      const needsContext = !sourceRoot && instruction.sources.some((s) => !isUrl(s));
      executeCopy(
        {
          instruction,
          workdir: current.config.config.WorkingDir || "/",
          view,
          owner,
          context: needsContext ? await x.getContext() : undefined,
          sourceRoot,
          downloads: fetched,
        },
        layerDir,
      );
    } else {
      throw new Error(`${instruction.kind} has no executor`);
    }
    for (const target of mounted.splice(0)) unmount(target);
    // Layers stay uncompressed in the cache (the blob is the tar; its digest is the diff ID), as
    // in BuildKit: compressing every layer at build time cost seconds on large contexts.
    const tar = join(staging, "layer.tar");
    const epoch = sourceDateEpoch(x.options.buildArgs);
    const packed = writeLayerTar(layerDir, tar, epoch !== undefined ? { clampMtime: epoch } : {});
    store.adoptBlob(tar, packed.diffId);
    store.adoptSnapshot(packed.diffId, layerDir);
    store.recordLayer({ diffId: packed.diffId, digest: packed.diffId, size: packed.size, uncompressedSize: packed.size, mediaType: MEDIA.layerTar });
    return packed.diffId;
  } finally {
    for (const target of mounted) unmount(target);
    rmSync(staging, { recursive: true, force: true });
  }
}


/** Snapshot paths of layers already unpacked (stages built earlier in this build). */
function lowersSync(store: LocalStore, layers: LayerRef[]): string[] {
  return layers.map((l) => store.snapshotPath(l.diffId));
}
