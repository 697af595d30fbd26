/**
 * `memobuild build --builder URL`: the build runs on a worker, and ends here as if it had run
 * here. The client sends what only it has — the context's files the server lacks, and base
 * images from its own store — as blobs, submits the build's definition, follows the worker's
 * progress in the same display, and imports the image (checked blob by blob) into its store,
 * so tags and every `-o` output are written locally as after a local build.
 */
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { LocalStore } from "../cache/store.ts";
import { loadContext, type BuildContext } from "../context/context.ts";
import { UserError } from "../errors.ts";
import { parseDockerfile } from "../frontend/parser.ts";
import { plan as planStages } from "../frontend/plan.ts";
import { formatPlatform, hostPlatform, type Platform } from "../frontend/platform.ts";
import { sha256File } from "../hash/sha256.ts";
import { isIndex, loadImage, MEDIA, type StoredImage } from "../image/layout.ts";
import type { Index } from "../image/oci-types.ts";
import { findImage } from "../image/lookup.ts";
import { JobsClient, JobsError, type AgentAsk } from "../remote/jobs-client.ts";
import { parseBlobRef, type BlobRef, type ContextFile, type ImageBlobs, type ImageIndexBlobs, type JobDefinition } from "../remote/job-definition.ts";
import type { RemoteCache } from "../remote/client.ts";
import { Root } from "../rootfs/root.ts";
import type { SpreadJob } from "./spread-plan.ts";
import { runSpread } from "./spread-run.ts";
import { imageReferences, imageResolver } from "../solver/images.ts";
import type { NamedContext } from "../solver/solver.ts";
import { statCacheFile } from "../config/cache-dir.ts";
import type { ProgressEvent, ProgressSink } from "../solver/progress.ts";
import { WorkerClock } from "./worker-clock.ts";
import type { StepResult } from "../solver/result.ts";
import { terminalText } from "../util/terminal-text.ts";
import { AGENT_FAILURE } from "../util/agent-frames.ts";
import type { SshAgents } from "../executor/ssh.ts";
import { RemoteAgents } from "./remote-agents.ts";

export interface RemoteBuildOptions {
  jobs: JobsClient;
  /** The same server's cache, for downloading the image's blobs (checked as every download is). */
  remote: RemoteCache;
  store: LocalStore;
  contextDir: string;
  dockerfileText: string;
  dockerfilePath: string;
  dockerfileAbsolute?: string;
  statCacheFile?: string;
  buildArgs: Record<string, string>;
  target?: string;
  noCache: boolean;
  labels: Record<string, string>;
  progress: ProgressSink;
  /** Keys of the steps (from a dry run here), so the server can send the job where they are cached. */
  hints?: string[];
  /** `--secret` values: they stay here until the worker's build asks for them, and go only to it. */
  secrets?: ReadonlyMap<string, Buffer>;
  /** The build cut into jobs for several workers (spread-plan.ts), and the plan the client shows; absent: one job. */
  spread?: { jobs: SpreadJob[]; plan: ProgressEvent };
  /** --cache-mount-scope, for the worker's shared cache mounts. */
  cacheMountScope?: string;
  /** `--build-context` names: directories go up as the main context does, images as base images. */
  namedContexts?: ReadonlyMap<string, NamedContext>;
  /** `--ssh` agents: they stay here, and answer the worker's build for as long as it runs. */
  ssh?: { ids: string[]; agents: SshAgents };
  /** The hub's id of this build (its reporter's): the worker's uploads name it. */
  build?: string;
  /**
   * What the submitter asks of the worker's RUNs and image, as a local build would take them
   * (--network, --allow, --add-host, --shm-size, --ulimit, --no-cache-filter, --pull, --annotation):
   * checked here first, and again by the worker, which grants entitlements only as it was started to.
   */
  asked?: Pick<JobDefinition, "network" | "allow" | "sandbox" | "noCacheFilter" | "pull" | "annotations">;
  /** `--platform`: the one platform this job builds for (absent: the worker's own). */
  platform?: Platform;
}

export class RemoteBuildError extends UserError {}

/** At most this many context files go up at once. */
const UPLOADS = 8;

export async function buildRemotely(options: RemoteBuildOptions): Promise<{ image: StoredImage; steps: StepResult[] }> {
  const { jobs, progress } = options;
  const context = await loadContext({ contextDir: options.contextDir, dockerfile: options.dockerfileAbsolute, statCacheFile: options.statCacheFile });
  progress({ type: "context", digest: context.digest() });
  // With --pull the worker looks every base image up in its registry: none goes from this store.
  const bases = options.asked?.pull ? { images: {}, indexes: {} } : await uploadImages(options);
  const definition: JobDefinition = {
    // A worker that cannot take the flags or the platform asked for refuses the job instead of dropping them.
    version: options.platform ? 3 : carriesFlags(options.asked) ? 2 : 1,
    dockerfile: { text: options.dockerfileText, path: options.dockerfilePath },
    buildArgs: options.buildArgs,
    ...(options.target !== undefined ? { target: options.target } : {}),
    noCache: options.noCache,
    context: { manifest: await uploadContext(options, context), digest: context.digest() },
    contexts: await uploadNamedDirectories(options),
    images: { ...bases.images, ...(await uploadNamedImages(options)) },
    ...(Object.keys(bases.indexes).length ? { imageIndexes: bases.indexes } : {}),
    ...(options.platform ? { platform: formatPlatform(options.platform) } : {}),
    labels: options.labels,
    secrets: [...(options.secrets?.keys() ?? [])],
    ...(options.cacheMountScope !== undefined ? { cacheMountScope: options.cacheMountScope } : {}),
    ssh: options.ssh?.ids ?? [],
    ...(options.build !== undefined ? { build: options.build } : {}),
    allow: [],
    sandbox: { addHost: [], ulimit: [] },
    noCacheFilter: [],
    pull: false,
    annotations: {},
    ...options.asked,
  };
  const secrets = secretTexts(options.secrets); // before anything is submitted
  const agents = options.ssh ? new RemoteAgents(options.ssh.agents) : undefined;
  const followJob = (id: string, sink: ProgressSink) => follow(jobs, id, sink, secrets, agents);
  try {
    const outcome = options.spread
      ? await runSpread({ jobs, definition, spread: options.spread.jobs, plan: options.spread.plan, progress, follow: followJob })
      : await runOne(jobs, definition, options.hints ?? [], progress, followJob);
    return { image: await importImage(options, outcome.image), steps: outcome.steps };
  } finally {
    agents?.close();
  }
}

/** Whether the job asks its worker for anything a version-1 definition cannot say. */
function carriesFlags(asked: RemoteBuildOptions["asked"]): boolean {
  if (!asked) return false;
  const { network, allow, sandbox, noCacheFilter, pull, annotations } = asked;
  return network !== undefined || allow.length > 0 || sandbox.addHost.length > 0 || sandbox.shmSize !== undefined || sandbox.ulimit.length > 0 || noCacheFilter.length > 0 || pull || Object.keys(annotations).length > 0;
}

/** The whole build as one job; Ctrl-C cancels it. */
async function runOne(jobs: JobsClient, definition: JobDefinition, hints: string[], progress: ProgressSink, followJob: (id: string, sink: ProgressSink) => Promise<{ image: ImageBlobs; steps: StepResult[] }>): Promise<{ image: ImageBlobs; steps: StepResult[] }> {
  const id = await jobs.submit(definition, hints);
  const cancel = () => void jobs.cancel(id).finally(() => process.exit(130));
  process.once("SIGINT", cancel);
  try {
    return await followJob(id, progress);
  } finally {
    process.removeListener("SIGINT", cancel);
  }
}

/** The context's files the server lacks go up as blobs; then the manifest that names them all. */
async function uploadContext(options: RemoteBuildOptions, context: BuildContext): Promise<string> {
  const entries: ContextFile[] = context.entries.map((e) =>
    e.type === "file"
      ? { path: e.path, type: "file", mode: e.mode, blake3: Buffer.from(e.contentDigest!).toString("hex"), size: e.size }
      : e.type === "symlink"
        ? { path: e.path, type: "symlink", mode: e.mode, target: e.linkTarget! }
        : { path: e.path, type: "dir", mode: e.mode },
  );
  // Files are read through a root that follows no link, so a link put there since the walk
  // cannot send a file from outside the context (its content would not match its name anyway).
  // Opened by hand, not with Root.with: the reads wait for uploads, and the root must stay open.
  const root = Root.open(context.root, { symlinks: "none" });
  try {
    const files = entries.filter((e) => e.type === "file");
    const sent = new Set<string>();
    for (let i = 0; i < files.length; i += UPLOADS) {
      await Promise.all(
        files.slice(i, i + UPLOADS).map(async (file) => {
          if (sent.has(file.blake3!)) return;
          sent.add(file.blake3!);
          const fd = root.openFile(Buffer.from(file.path, "latin1"), false);
          await options.jobs.putBlobFrom(fd, file.blake3!);
        }),
      );
    }
  } finally {
    root.close();
  }
  return putJson(options, { entries });
}

/**
 * Base images the Dockerfile reads that are in this machine's store (and no --build-context
 * names): their blobs go up. A job for a given platform gets an image this store holds as an
 * index whole (every platform's image, when the store has them all): its stages may read it for
 * more than one platform (FROM --platform=$BUILDPLATFORM beside the target's), as a local build would.
 */
async function uploadImages(options: RemoteBuildOptions): Promise<{ images: Record<string, ImageBlobs>; indexes: Record<string, ImageIndexBlobs> }> {
  const named = new Set(options.namedContexts?.keys() ?? []);
  const target = options.platform ?? hostPlatform();
  const plan = planStages(parseDockerfile(options.dockerfileText, options.dockerfilePath), { buildArgs: options.buildArgs, platform: target, namedContexts: named });
  const resolve = imageResolver(options.store);
  const images: Record<string, ImageBlobs> = {};
  const indexes: Record<string, ImageIndexBlobs> = {};
  for (const ref of imageReferences(plan, named)) {
    const whole = options.platform ? wholeIndex(options.store, ref) : undefined;
    if (whole) {
      indexes[ref] = { index: await uploadBlob(options, whole.digest), images: await Promise.all(whole.images.map((image) => uploadImage(options, image))) };
      continue;
    }
    const image = resolve(ref, target);
    if (image) images[ref] = await uploadImage(options, image); // else the worker pulls it from its registry
  }
  return { images, indexes };
}

/**
 * An index this store holds with every platform's image it names (else undefined: the target's
 * image goes alone). Attestation manifests (platform unknown/unknown) are no platform's image.
 */
function wholeIndex(store: LocalStore, ref: string): { digest: string; images: StoredImage[] } | undefined {
  const found = findImage(store, ref);
  if (!found || !isIndex(store, found.manifestDigest)) return undefined;
  const entries = store.readJson<Index>(found.manifestDigest).manifests.filter((m) => m.platform && m.platform.os !== "unknown");
  if (!entries.length || entries.some((m) => m.mediaType === MEDIA.index || !store.hasBlob(m.digest))) return undefined;
  return { digest: found.manifestDigest, images: entries.map((m) => loadImage(store, m.digest)) };
}

/** `--build-context NAME=docker-image://…|oci-layout://…`, resolved here as for a local build: the image goes up under NAME. */
async function uploadNamedImages(options: RemoteBuildOptions): Promise<Record<string, ImageBlobs>> {
  const images: Record<string, ImageBlobs> = {};
  for (const [name, context] of options.namedContexts ?? []) if (context.kind === "image") images[name] = await uploadImage(options, context.image);
  return images;
}

/** `--build-context NAME=DIR`: each directory's files the server lacks go up, as the main context's. */
async function uploadNamedDirectories(options: RemoteBuildOptions): Promise<Record<string, { manifest: string; digest: string }>> {
  const contexts: Record<string, { manifest: string; digest: string }> = {};
  for (const [name, named] of options.namedContexts ?? []) {
    if (named.kind !== "local") continue;
    const context = await loadContext({ contextDir: named.dir, statCacheFile: statCacheFile(options.store.dir, named.dir) });
    contexts[name] = { manifest: await uploadContext(options, context), digest: context.digest() };
  }
  return contexts;
}

async function uploadBlob(options: RemoteBuildOptions, digest: string, mediaType?: string): Promise<BlobRef> {
  return { blake3: await options.jobs.putBlob(options.store.blobPath(digest)), digest, size: options.store.blobSize(digest), ...(mediaType ? { mediaType } : {}) };
}

async function uploadImage(options: RemoteBuildOptions, image: StoredImage): Promise<ImageBlobs> {
  const blob = (digest: string, mediaType?: string) => uploadBlob(options, digest, mediaType);
  return {
    manifest: await blob(image.manifestDigest, image.manifest.mediaType),
    config: await blob(image.manifest.config.digest, image.manifest.config.mediaType),
    layers: await Promise.all(image.manifest.layers.map((l) => blob(l.digest, l.mediaType))),
  };
}

async function putJson(options: RemoteBuildOptions, value: unknown): Promise<string> {
  const staging = options.store.tempDir("builder");
  try {
    const file = join(staging, "blob.json");
    writeFileSync(file, JSON.stringify(value));
    return await options.jobs.putBlob(file);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

/** Secrets travel as JSON text (a worker's build reads them from its environment): text only. */
function secretTexts(secrets: ReadonlyMap<string, Buffer> | undefined): Record<string, string> {
  const texts: Record<string, string> = {};
  for (const [id, value] of secrets ?? []) {
    const text = value.toString("utf8");
    if (!Buffer.from(text, "utf8").equals(value) || text.includes("\0")) throw new RemoteBuildError(`--secret id=${id}: a remote builder takes text secrets only (this one is binary)`);
    texts[id] = text;
  }
  return texts;
}

/** The worker's progress, shown as it comes; the job's outcome, checked. */
async function follow(jobs: JobsClient, id: string, progress: ProgressSink, secrets: Record<string, string>, agents?: RemoteAgents): Promise<{ image: ImageBlobs; steps: StepResult[] }> {
  let since = 0;
  const clock = new WorkerClock();
  for (;;) {
    const followed = await jobs.follow(id, since);
    if (followed.asks) await jobs.answerSecrets(id, Object.fromEntries(followed.asks.filter((s) => s in secrets).map((s) => [s, secrets[s]])));
    await answerAgents(jobs, id, followed.agentAsks, agents);
    const times = clock.place(followed.events.map(({ event }) => (event as { time?: unknown } | null)?.time), Date.now());
    for (const [i, { seq, event }] of followed.events.entries()) {
      since = Math.max(since, seq);
      const shown = progressEvent(event, times[i]);
      if (shown) progress(withWorker(shown, followed.worker));
    }
    if (followed.state === "queued" || followed.state === "running") continue;
    if (followed.state !== "succeeded") throw new RemoteBuildError(`the build ${followed.state === "cancelled" ? "was cancelled" : "failed"} on worker ${terminalText(followed.worker ?? "(none)", { max: 64 })}: ${terminalText(followed.error ?? "no reason given", { max: 4000 })}`);
    return parseOutcome(followed.result, followed.worker);
  }
}

/** The worker's build talks to this machine's ssh agents; a build given none gets failures. */
async function answerAgents(jobs: JobsClient, id: string, asks: AgentAsk[] | undefined, agents: RemoteAgents | undefined) {
  if (!asks?.length) return;
  const failure = AGENT_FAILURE.toString("base64");
  await jobs.answerAgent(id, agents ? await agents.answer(asks) : Object.fromEntries(asks.map((ask) => [ask.id, ask.close ? "" : failure])));
}

const EVENT_TYPES = new Set(["plan", "context", "start", "output", "done", "error", "warning"]);

/**
 * A worker's event as this display shows it: known types only, every text made safe for a
 * terminal, and its time the one the worker stamped, on this machine's clock (or none).
 */
function progressEvent(raw: unknown, time: number | undefined): ProgressEvent | undefined {
  if (typeof raw !== "object" || raw === null || !EVENT_TYPES.has((raw as { type?: unknown }).type as string)) return undefined;
  const { time: _stamped, ...event } = JSON.parse(JSON.stringify(raw, (_, value) => (typeof value === "string" ? terminalText(value, { max: 16 * 1024 }) : value))) as ProgressEvent;
  return time === undefined ? event : { ...event, time };
}

/** A step's end names the worker it ended on (the display, the hub and explain show it). */
function withWorker(event: ProgressEvent, worker: string | undefined): ProgressEvent {
  return event.type === "done" && worker ? { ...event, worker } : event;
}

function parseOutcome(result: unknown, worker: string | undefined): { image: ImageBlobs; steps: StepResult[] } {
  const value = result as { image?: { manifest?: unknown; config?: unknown; layers?: unknown }; steps?: unknown } | undefined;
  if (!value?.image || !Array.isArray(value.image.layers) || !Array.isArray(value.steps)) throw new JobsError("the worker's result is not an image and its steps");
  const image = { manifest: parseBlobRef(value.image.manifest, "result.image.manifest"), config: parseBlobRef(value.image.config, "result.image.config"), layers: value.image.layers.map((l, i) => parseBlobRef(l, `result.image.layers[${i}]`)) };
  const steps = (value.steps as StepResult[]).filter((s) => typeof s === "object" && s !== null && typeof s.id === "string").map((s) => ({ ...s, ...(worker ? { worker } : {}) }));
  return { image, steps };
}

/** The image the worker made, from the server's blobs, each checked against its digest before the store takes it. */
async function importImage(options: RemoteBuildOptions, image: ImageBlobs): Promise<StoredImage> {
  const { store, remote } = options;
  const staging = store.tempDir("builder-import");
  try {
    const fetch = async (blob: BlobRef) => {
      if (store.hasBlob(blob.digest)) return;
      const file = join(staging, blob.blake3);
      if (!(await remote.fetchBlob(blob.blake3, file, blob.size))) throw new RemoteBuildError(`the build server lost blob ${blob.digest} of the image it built`);
      const digest = await sha256File(file);
      if (digest !== blob.digest) throw new RemoteBuildError(`blob ${blob.digest} of the built image hashes to ${digest}`);
      store.adoptBlob(file, blob.digest);
    };
    await fetch(image.manifest);
    await fetch(image.config);
    const config = store.readJson<{ rootfs?: { diff_ids?: unknown } }>(image.config.digest);
    const diffIds = config.rootfs?.diff_ids;
    if (!Array.isArray(diffIds) || diffIds.length !== image.layers.length) throw new RemoteBuildError("the built image's config does not list one diff ID per layer");
    for (const [i, layer] of image.layers.entries()) {
      await fetch(layer);
      // Checks the diff ID while unpacking; never changes a layer the store already has.
      await store.adoptLayer({ diffId: String(diffIds[i]), digest: layer.digest, size: layer.size, uncompressedSize: -1, mediaType: layer.mediaType ?? "application/vnd.oci.image.layer.v1.tar" });
    }
    return loadImage(store, image.manifest.digest);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}
