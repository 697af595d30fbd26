/**
 * Keeping the cache in bounds: usage by kind, and eviction of least recently used step
 * results until the cache fits a size. Layers that a named image in the store uses are never
 * evicted; a layer goes (blob and snapshot) once no kept step or image refers to it.
 */
import { existsSync, readdirSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { loadImage } from "../image/layout.ts";
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
  if (!existsSync(path)) return 0;
  const result = Bun.spawnSync(["du", "-sb", "--", path], { stdout: "pipe", stderr: "ignore" });
  return Number(result.stdout.toString().split("\t")[0]) || 0;
}

export function usage(store: LocalStore): Usage {
  const blobs = directorySize(join(store.dir, "blobs"));
  const snapshots = directorySize(join(store.dir, "snapshots"));
  const mounts = directorySize(join(store.dir, "mounts"));
  const count = (table: string) => (store.db.query(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n;
  return { blobs, snapshots, mounts, total: blobs + snapshots + mounts, steps: count("steps"), layers: count("layers"), images: count("images") };
}

/** Every blob and layer a named image needs. */
function protectedByImages(store: LocalStore): { layers: Set<string>; blobs: Set<string> } {
  const layers = new Set<string>();
  const blobs = new Set<string>();
  for (const record of store.images()) {
    try {
      const image = loadImage(store, record.manifestDigest);
      blobs.add(record.manifestDigest);
      blobs.add(image.manifest.config.digest);
      for (const diffId of image.config.rootfs.diff_ids) layers.add(diffId);
      for (const layer of image.manifest.layers) blobs.add(layer.digest);
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

function layerBytes(store: LocalStore, diffId: string): number {
  const layer = store.layer(diffId);
  let bytes = 0;
  if (layer && store.hasBlob(layer.digest)) bytes += statSync(store.blobPath(layer.digest)).size;
  return bytes + directorySize(store.snapshotPath(diffId));
}

/** Deletes layers no kept step or image refers to; returns bytes freed and count. */
function sweep(store: LocalStore, protect: { layers: Set<string>; blobs: Set<string> }): { layers: number; bytes: number } {
  const referenced = new Set((store.db.query("SELECT DISTINCT diff_id FROM steps WHERE diff_id IS NOT NULL").all() as { diff_id: string }[]).map((r) => r.diff_id));
  let layers = 0;
  let bytes = 0;
  for (const { diff_id: diffId, digest } of store.db.query("SELECT diff_id, digest FROM layers").all() as { diff_id: string; digest: string }[]) {
    if (referenced.has(diffId) || protect.layers.has(diffId)) continue;
    bytes += layerBytes(store, diffId);
    rmSync(store.snapshotPath(diffId), { recursive: true, force: true });
    if (!protect.blobs.has(digest)) rmSync(store.blobPath(digest), { force: true });
    store.db.query("DELETE FROM layers WHERE diff_id = ?").run(diffId);
    layers++;
  }
  // Config and manifest blobs of builds that no image is named for.
  for (const name of readdirSync(join(store.dir, "blobs/sha256"))) {
    const digest = `sha256:${name}`;
    if (protect.blobs.has(digest)) continue;
    const isLayer = store.db.query("SELECT 1 FROM layers WHERE digest = ?").get(digest);
    if (!isLayer) {
      bytes += statSync(store.blobPath(digest)).size;
      rmSync(store.blobPath(digest), { force: true });
    }
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
  const steps = store.db.query("SELECT key, diff_id FROM steps ORDER BY last_used ASC").all() as { key: string; diff_id: string | null }[];
  for (const step of steps) {
    if (total <= maxBytes) break;
    store.db.query("DELETE FROM steps WHERE key = ?").run(step.key);
    result.stepsRemoved++;
    if (step.diff_id === null) continue;
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
  const stepsRemoved = store.db.query("DELETE FROM steps").run().changes;
  const swept = sweep(store, protect);
  let bytes = swept.bytes;
  if (options.mounts) {
    bytes += directorySize(join(store.dir, "mounts"));
    rmSync(join(store.dir, "mounts"), { recursive: true, force: true });
  }
  return { stepsRemoved, layersRemoved: swept.layers, bytesFreed: bytes };
}
