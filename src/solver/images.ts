/** Which images a build reads, and finding them in the local image store. */
import type { LocalStore } from "../cache/store.ts";
import type { Plan } from "../frontend/plan.ts";
import { loadImage, type StoredImage } from "../image/layout.ts";
import { findImage } from "../image/lookup.ts";

/** Resolves FROM and --from image references (names or image IDs) against the local image store. */
export function imageResolver(store: LocalStore) {
  const cache = new Map<string, StoredImage | undefined>();
  const resolve = (ref: string): StoredImage | undefined => {
    if (cache.has(ref)) return cache.get(ref);
    // A name, or an image ID (full or a unique prefix) of a build before this one.
    const found = findImage(store, ref);
    const image = found ? loadImage(store, found.manifestDigest) : undefined;
    cache.set(ref, image);
    return image;
  };
  return Object.assign(resolve, { forget: (ref: string) => cache.delete(ref) });
}

/** Image references a plan reads that are not stages (nor `named` contexts): bases, COPY --from, RUN --mount from. */
export function imageReferences(plan: Plan, named: ReadonlySet<string> = new Set()): Set<string> {
  const refs = new Set<string>();
  const isStage = (reference: string, before: number) =>
    named.has(reference.toLowerCase()) || plan.stages.some((s, i) => i < before && (s.name === reference.toLowerCase() || String(s.index) === reference));
  for (const stage of plan.stages) {
    if (stage.base.kind === "image" && !named.has(stage.base.ref.toLowerCase())) refs.add(stage.base.ref);
    for (const step of stage.steps) {
      const instruction = step.instruction;
      if (instruction.kind === "COPY" && instruction.from !== undefined && !isStage(instruction.from, stage.index)) refs.add(instruction.from);
      if (instruction.kind === "RUN") {
        for (const mount of instruction.mounts) {
          if ((mount.type === "bind" || mount.type === "cache") && mount.from !== undefined && !isStage(mount.from, stage.index)) refs.add(mount.from);
        }
      }
    }
  }
  return refs;
}
