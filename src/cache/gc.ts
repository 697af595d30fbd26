/**
 * Keeping the cache in bounds: usage by kind, and eviction of least recently used step
 * results until the cache fits a size. Layers that a named image in the store uses are never
 * evicted; a layer goes (blob and snapshot) once no kept step or image refers to it.
 */
import { removeTree } from "../rootfs/root.ts";
import { join, resolve } from "node:path";
import type { LocalStore } from "./store.ts";

export interface Usage {
  blobs: number;
  snapshots: number;
  mounts: number;
  total: number;
  steps: number;
  layers: number;
  images: number;
}

/** Bytes under a directory (apparent size), without following symlinks. */
export function directorySize(path: string): number {
  // An absolute path cannot be read as an option; a missing one prints nothing: 0.
  // Stryker disable next-line ObjectLiteral: only where du's complaints about a missing path go
  const result = Bun.spawnSync(["du", "-sb", resolve(path)], { stdout: "pipe", stderr: "ignore" });
  return Number(result.stdout.toString().split("\t")[0]) || 0;
}

export function usage(store: LocalStore): Usage {
  const blobs = directorySize(join(store.dir, "blobs"));
  const snapshots = directorySize(join(store.dir, "snapshots"));
  const mounts = directorySize(join(store.dir, "mounts"));
  return { blobs, snapshots, mounts, total: blobs + snapshots + mounts, ...store.counts() };
}

/** Every blob and layer a named image needs. */
function protectedByImages(store: LocalStore): { layers: Set<string>; blobs: Set<string> } {
  const layers = new Set<string>();
  const blobs = new Set<string>();
  for (const record of store.images()) {
    try {
      // Only the digests an image names matter here, so the manifest and config are read as
      // plain JSON (the image/ folder builds on the store, not the other way round).
      const manifest = store.readJson<{ config: { digest: string }; layers: { digest: string }[] }>(record.manifestDigest);
      const config = store.readJson<{ rootfs: { diff_ids: string[] } }>(manifest.config.digest);
      blobs.add(record.manifestDigest);
      blobs.add(manifest.config.digest);
      for (const diffId of config.rootfs.diff_ids) layers.add(diffId);
      for (const layer of manifest.layers) blobs.add(layer.digest);
    } catch {
      // A damaged image protects nothing; `image ls` shows it as damaged.
    }
  }
  return { layers, blobs };
}

export interface GcResult {
  stepsRemoved: number;
  layersRemoved: number;
  bytesFreed: number;
}

/** Deletes layers no kept step or image refers to; returns bytes freed and count. */
function sweep(store: LocalStore, protect: { layers: Set<string>; blobs: Set<string> }): { layers: number; bytes: number } {
  const referenced = store.stepLayerIds();
  let layers = 0;
  let bytes = 0;
  for (const { diffId } of store.layers()) {
    if (referenced.has(diffId) || protect.layers.has(diffId)) continue;
    bytes += directorySize(store.snapshotPath(diffId));
    store.removeSnapshot(diffId);
    // The row goes before the blob: a crash in between leaves a loose blob the next gc takes.
    store.deleteLayer(diffId);
    layers++;
  }
  // Blobs no layer row and no named image needs: the swept layers' (plain and compressed),
  // and config and manifest blobs of builds no image is named for.
  for (const digest of store.blobDigests()) {
    if (protect.blobs.has(digest) || store.isLayerBlob(digest)) continue;
    bytes += store.blobSize(digest);
    store.removeBlob(digest);
  }
  return { layers, bytes };
}

/** Evicts least recently used step results until the cache is at most `maxBytes`. */
export function collectGarbage(store: LocalStore, maxBytes: number): GcResult {
  const protect = protectedByImages(store);
  let total = usage(store).total;
  const result: GcResult = { stepsRemoved: 0, layersRemoved: 0, bytesFreed: 0 };
  const first = sweep(store, protect);
  result.layersRemoved += first.layers;
  result.bytesFreed += first.bytes;
  total -= first.bytes;
  for (const step of store.stepsByLastUse()) {
    if (total <= maxBytes) break;
    store.deleteStep(step.key);
    result.stepsRemoved++;
    // Stryker disable next-line ConditionalExpression: a config-only step frees no layer; this only skips a sweep that finds nothing
    if (step.diffId === null) continue;
    const swept = sweep(store, protect);
    result.layersRemoved += swept.layers;
    result.bytesFreed += swept.bytes;
    total -= swept.bytes;
  }
  return result;
}

/** Removes every step result (and, with `mounts`, the cache mounts); keeps named images. */
export function prune(store: LocalStore, options: { mounts: boolean }): GcResult {
  const protect = protectedByImages(store);
  const stepsRemoved = store.deleteAllSteps();
  const swept = sweep(store, protect);
  let bytes = swept.bytes;
  if (options.mounts) {
    bytes += directorySize(join(store.dir, "mounts"));
    removeTree(join(store.dir, "mounts"));
  }
  return { stepsRemoved, layersRemoved: swept.layers, bytesFreed: bytes };
}
