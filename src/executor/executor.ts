/**
 * The executor: runs one RUN, COPY or ADD step and packs what it changed into a layer. The
 * solver decides (keys, caches, scheduling) and hands over everything resolved once: the lower
 * layers, the stages it reads, the owner, the fetched URLs. The executor acts (mounts, runs,
 * copies, packs) and returns the layer in its staging directory for the solver to store.
 * BuildKit's solver/executor split; the solver is tested with a fake executor.
 */
import type { Sandbox } from "./sandbox.ts";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { BuildContext } from "../context/context.ts";
import type { Ownership } from "../context/digest.ts";
import type { Instruction } from "../frontend/instructions.ts";
import { workdirAfter, type ImageConfig } from "../image/config.ts";
import { Root } from "../rootfs/root.ts";
import { mountOverlay, unmount } from "../snapshot/overlay.ts";
import { writeLayerTar } from "../snapshot/pack.ts";
import type { CacheMountProvider } from "./cache-mount.ts";
import { executeCopy } from "./copy.ts";
import type { Download } from "./download.ts";
import { executeRun } from "./run.ts";
import type { SshAgents } from "./ssh.ts";

/** The instructions that make a layer (WORKDIR creates its directory, as BuildKit does). */
export type StepInstruction = Extract<Instruction, { kind: "RUN" | "COPY" | "ADD" | "WORKDIR" }>;

export interface StepRequest {
  instruction: StepInstruction;
  /** The image config before the step (WORKDIR, USER, SHELL). */
  config: ImageConfig;
  /** RUN's environment: ENV and the build args in scope. */
  env: [string, string][];
  /** The step's parent layers as unpacked snapshot directories, bottom (base) first. */
  lowers: string[];
  /** Stages and images the step reads (COPY --from, RUN --mount from=): snapshot directories, bottom first. */
  sources: Map<string, string[]>;
  /** The build context, when the step reads it. */
  context?: BuildContext;
  /** Local --build-context directories the step reads (COPY --from=NAME, RUN --mount from=NAME). */
  namedContexts?: Map<string, BuildContext>;
  /** The --chown owner (for WORKDIR: the USER), resolved once (root when not given). */
  owner: Ownership;
  /** ADD's URL sources, fetched and checked. */
  downloads: Download[];
  /** SOURCE_DATE_EPOCH: file times in the layer are clamped to it. */
  epoch?: number;
  secrets: Map<string, Buffer>;
  /** Agents RUN --mount=type=ssh may forward, by ID (none when not given). */
  ssh?: SshAgents;
  network: "none" | "host";
  /** --add-host, --shm-size, --ulimit. */
  sandbox?: Sandbox;
  cacheMounts: CacheMountProvider;
  onOutput: (line: string) => void;
  /** An empty staging directory of the step's own; the caller removes it. */
  work: string;
}

export interface StepLayer {
  /** The layer unpacked in overlayfs format (a snapshot), inside `work`. */
  directory: string;
  /** The layer tar, inside `work`; its sha256 is the diff ID. */
  tar: string;
  diffId: string;
  size: number;
}

export interface Executor {
  execute(request: StepRequest): Promise<StepLayer>;
}

/** Runs steps for real: overlayfs, the OCI runtime, the root-confined copier. */
export class LocalExecutor implements Executor {
  async execute(request: StepRequest): Promise<StepLayer> {
    const { instruction } = request;
    const directory =
      instruction.kind === "RUN" ? await executeRun(request, request.work) : instruction.kind === "WORKDIR" ? executeWorkdir(request) : executeTransfer(request);
    const tar = join(request.work, "layer.tar");
    const packed = writeLayerTar(directory, tar, request.epoch !== undefined ? { clampMtime: request.epoch } : {});
    return { directory, tar, diffId: packed.diffId, size: packed.size };
  }
}

/**
 * The lower layers as one root (an overlay whose upper directory becomes the layer), for `use`;
 * unmounted after. Without lowers the layer directory is the root itself.
 */
function withLayerRoot<T>(request: StepRequest, overlay: boolean, use: (root: Root, layer: string) => T): T {
  const layer = join(request.work, "layer");
  mkdirSync(layer);
  let target = layer;
  if (overlay && request.lowers.length > 0) {
    target = join(request.work, "rootfs");
    mountOverlay({ layers: request.lowers, upper: layer, work: join(request.work, "overlay-work"), target });
  }
  try {
    return Root.with(target, (root) => use(root, layer));
  } finally {
    if (target !== layer) unmount(target);
  }
}

/**
 * WORKDIR: the directory and its missing parents, owned by the USER (BuildKit's mkdir -p with
 * the user). The layer is made even when the directory exists, as BuildKit makes one.
 */
function executeWorkdir(request: StepRequest): string {
  const { instruction } = request;
  if (instruction.kind !== "WORKDIR") throw new Error("not a WORKDIR");
  const path = workdirAfter(request.config, instruction.path);
  return withLayerRoot(request, true, (root, layer) => {
    root.mkdirAll(path, { mode: 0o755, owner: request.owner });
    return layer;
  });
}

/**
 * COPY/ADD: the files are written through an overlay of the lower layers (so symlinks and
 * directories of the base are seen as the kernel sees them), and the overlay's upper directory
 * is the layer. --link lays the files out without looking below (BuildKit's rule).
 */
function executeTransfer(request: StepRequest): string {
  const { instruction, work } = request;
  if (instruction.kind !== "COPY" && instruction.kind !== "ADD") throw new Error(`${instruction.kind} is not a transfer`);
  return withLayerRoot(request, !instruction.link, (root, layer) => {
    const from = instruction.kind === "COPY" ? instruction.from : undefined;
    const named = from !== undefined ? request.namedContexts?.get(from) : undefined;
    if (from === undefined || named) {
      copyInto(named ? { ...request, context: named } : request, instruction, root);
      return layer;
    }
    const layers = request.sources.get(from);
    if (!layers) throw new Error(`the solver gave no layers for --from=${from}`);
    const sourceDir = join(work, "source");
    mountOverlay({ layers, target: sourceDir });
    try {
      Root.with(sourceDir, (source) => copyInto(request, instruction, root, source));
    } finally {
      unmount(sourceDir);
    }
    return layer;
  });
}

function copyInto(request: StepRequest, instruction: Extract<StepInstruction, { kind: "COPY" | "ADD" }>, root: Root, source?: Root) {
  executeCopy({
    instruction,
    workdir: request.config.config.WorkingDir || "/",
    root,
    owner: request.owner,
    context: request.context,
    source,
    downloads: request.downloads,
    scratch: request.work,
  });
}
