/**
 * The executor: runs one RUN, COPY or ADD step and packs what it changed into a layer. The
 * solver decides (keys, caches, scheduling) and hands over everything resolved once: the lower
 * layers, the stages it reads, the owner, the fetched URLs. The executor acts (mounts, runs,
 * copies, packs) and returns the layer in its staging directory for the solver to store.
 * BuildKit's solver/executor split; the solver is tested with a fake executor.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { BuildContext } from "../context/context.ts";
import type { Ownership } from "../context/digest.ts";
import type { Instruction } from "../frontend/instructions.ts";
import type { ImageConfig } from "../image/config.ts";
import { Root } from "../rootfs/root.ts";
import { mountOverlay, unmount } from "../snapshot/overlay.ts";
import { writeLayerTar } from "../snapshot/pack.ts";
import type { CacheMountProvider } from "./cache-mount.ts";
import { executeCopy } from "./copy.ts";
import type { Download } from "./download.ts";
import { executeRun } from "./run.ts";

export type StepInstruction = Extract<Instruction, { kind: "RUN" | "COPY" | "ADD" }>;

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
  /** The --chown owner, resolved once (root when not given). */
  owner: Ownership;
  /** ADD's URL sources, fetched and checked. */
  downloads: Download[];
  /** SOURCE_DATE_EPOCH: file times in the layer are clamped to it. */
  epoch?: number;
  secrets: Map<string, Buffer>;
  network: "none" | "host";
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
    const directory = request.instruction.kind === "RUN" ? await executeRun(request, request.work) : executeTransfer(request);
    const tar = join(request.work, "layer.tar");
    const packed = writeLayerTar(directory, tar, request.epoch !== undefined ? { clampMtime: request.epoch } : {});
    return { directory, tar, diffId: packed.diffId, size: packed.size };
  }
}

/**
 * COPY/ADD: the files are written through an overlay of the lower layers (so symlinks and
 * directories of the base are seen as the kernel sees them), and the overlay's upper directory
 * is the layer. --link lays the files out without looking below (BuildKit's rule).
 */
function executeTransfer(request: StepRequest): string {
  const { instruction, work } = request;
  if (instruction.kind === "RUN") throw new Error("RUN is not a transfer");
  const layer = join(work, "layer");
  mkdirSync(layer);
  const mounted: string[] = [];
  const roots: Root[] = [];
  try {
    let target = layer;
    if (!instruction.link && request.lowers.length > 0) {
      target = join(work, "rootfs");
      mountOverlay({ layers: request.lowers, upper: layer, work: join(work, "overlay-work"), target });
      mounted.push(target);
    }
    const root = Root.open(target);
    roots.push(root);
    let source: Root | undefined;
    const from = instruction.kind === "COPY" ? instruction.from : undefined;
    if (from !== undefined) {
      const layers = request.sources.get(from);
      if (!layers) throw new Error(`the solver gave no layers for --from=${from}`);
      const sourceDir = join(work, "source");
      mountOverlay({ layers, target: sourceDir });
      mounted.push(sourceDir);
      source = Root.open(sourceDir);
      roots.push(source);
    }
    executeCopy({
      instruction,
      workdir: request.config.config.WorkingDir || "/",
      root,
      owner: request.owner,
      context: request.context,
      source,
      downloads: request.downloads,
      scratch: work,
    });
  } finally {
    for (const root of roots) root.close();
    for (const target of mounted.reverse()) unmount(target);
  }
  return layer;
}
