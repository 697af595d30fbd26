/**
 * The executor: runs one RUN, COPY, ADD or WORKDIR step and packs what it changed into a layer.
 * The solver decides (keys, caches, scheduling) and sends a plain-data request naming what the
 * step reads; the executor finds those (snapshots by diff ID, contexts by digest...), acts
 * (mounts, runs, copies, packs) and returns the layer in its staging directory for the solver to
 * store. BuildKit's solver/executor split; the solver is tested with a fake executor.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { workdirAfter } from "../image/config.ts";
import { Root } from "../rootfs/root.ts";
import { mountOverlay, unmount } from "../snapshot/overlay.ts";
import { writeLayerTar } from "../snapshot/pack.ts";
import { executeCopy } from "./copy.ts";
import type { Executor, ExecutorResources, ResolvedStep, StepIO, StepInstruction, StepLayer, StepRequest } from "./request.ts";
import { executeRun } from "./run.ts";
import { networksStopped } from "./network.ts";

export type { Executor, StepInstruction, StepIO, StepLayer, StepRequest } from "./request.ts";

/** Runs steps for real on this machine: overlayfs, the OCI runtime, the root-confined copier. */
export class LocalExecutor implements Executor {
  constructor(private readonly resources: ExecutorResources) {}

  settle(): Promise<void> {
    return networksStopped();
  }

  async execute(request: StepRequest, io: StepIO): Promise<StepLayer> {
    const step = await this.resolve(request, io);
    const { instruction } = step;
    const directory = instruction.kind === "RUN" ? await executeRun(step, io.work) : instruction.kind === "WORKDIR" ? executeWorkdir(step) : executeTransfer(step);
    const tar = join(io.work, "layer.tar");
    const packed = writeLayerTar(directory, tar, request.epoch !== undefined ? { clampMtime: request.epoch } : {});
    return { directory, tar, diffId: packed.diffId, size: packed.size };
  }

  /** What the request names, found on this machine. */
  private async resolve(request: StepRequest, io: StepIO): Promise<ResolvedStep> {
    const { resources } = this;
    const sources = new Map<string, string[]>();
    for (const [reference, diffIds] of Object.entries(request.sources)) sources.set(reference, await resources.snapshots(diffIds));
    const namedContexts = new Map(Object.entries(request.namedContexts).map(([reference, digest]) => [reference, resources.context(digest)]));
    return {
      ...request,
      lowers: await resources.snapshots(request.lowers),
      sources,
      context: request.context !== undefined ? resources.context(request.context) : undefined,
      namedContexts,
      downloads: await Promise.all(request.downloads.map((d) => resources.download(d.url, d.digest))),
      secrets: resources.secrets,
      ssh: resources.ssh,
      cacheMounts: resources.cacheMounts,
      onOutput: io.onOutput,
      work: io.work,
    };
  }
}

/**
 * The lower layers as one root (an overlay whose upper directory becomes the layer), for `use`;
 * unmounted after. Without lowers the layer directory is the root itself.
 */
function withLayerRoot<T>(request: ResolvedStep, overlay: boolean, use: (root: Root, layer: string) => T): T {
  const layer = join(request.work, "layer");
  mkdirSync(layer);
  let target = layer;
  if (overlay && request.lowers.length > 0) {
    target = join(request.work, "rootfs");
    mountOverlay({ layers: request.lowers, upper: layer, work: join(request.work, "overlay-work"), target, volatile: true });
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
function executeWorkdir(request: ResolvedStep): string {
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
function executeTransfer(request: ResolvedStep): string {
  const { instruction, work } = request;
  if (instruction.kind !== "COPY" && instruction.kind !== "ADD") throw new Error(`${instruction.kind} is not a transfer`);
  return withLayerRoot(request, !instruction.link, (root, layer) => {
    const from = instruction.kind === "COPY" ? instruction.from : undefined;
    const named = from !== undefined ? request.namedContexts.get(from) : undefined;
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

function copyInto(request: ResolvedStep, instruction: Extract<StepInstruction, { kind: "COPY" | "ADD" }>, root: Root, source?: Root) {
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
