/** Which images a build reads, and finding them in the local image store. */
import type { LocalStore } from "../cache/store.ts";
import type { Plan, Step } from "../frontend/plan.ts";
import { familiarReference, normalizeReference } from "../image/reference.ts";
import { closest } from "../util/closest.ts";
import { loadImage, type StoredImage } from "../image/layout.ts";
import { formatPlatform, normalizePlatform, parsePlatform, type Platform } from "../frontend/platform.ts";
import type { Stage } from "../frontend/plan.ts";
import { findImage } from "../image/lookup.ts";

/**
 * Resolves FROM and --from image references (names or image IDs) against the local image store,
 * for a platform: a multi-platform image stands for its image of that platform.
 */
export function imageResolver(store: LocalStore) {
  const cache = new Map<string, StoredImage | undefined>();
  const resolve = (ref: string, platform: Platform): StoredImage | undefined => {
    const key = `${ref}\n${formatPlatform(platform)}`;
    if (cache.has(key)) return cache.get(key);
    // A name, or an image ID (full or a unique prefix) of a build before this one.
    const found = findImage(store, ref);
    const image = found ? loadImage(store, found.manifestDigest, platform) : undefined;
    cache.set(key, image);
    return image;
  };
  const forget = (ref: string) => {
    for (const key of cache.keys()) if (key.startsWith(`${ref}\n`)) cache.delete(key);
  };
  return Object.assign(resolve, { forget });
}

/**
 * The platform a stage's steps are for: its FROM's `--platform` (expanded), else the build's
 * target. A stage's steps are keyed, run and based on images of that platform.
 */
export function stagePlatform(stage: Stage, target: Platform): Platform {
  // Spelled as --platform is (linux/arm64/v8 is linux/arm64): one platform, one key.
  return stage.platform === undefined ? target : normalizePlatform(parsePlatform(stage.platform));
}

/** The images each stage reads, with the platform it reads them for (what a pull must fetch). */
export function imageReadsByPlatform(plan: Plan, named: ReadonlySet<string>, target: Platform): { ref: string; platform: Platform }[] {
  const reads = new Map<string, { ref: string; platform: Platform }>();
  for (const stage of plan.stages) {
    let platform: Platform;
    try {
      platform = stagePlatform(stage, target);
    } catch {
      continue; // an invalid --platform is the FROM step's error, with its line
    }
    for (const ref of imageReferences(plan, named, stage.index)) reads.set(`${ref}\n${formatPlatform(platform)}`, { ref, platform });
  }
  return [...reads.values()];
}

/** Image references a plan reads that are not stages (nor `named` contexts): bases, COPY --from, RUN --mount from. */
export function imageReferences(plan: Plan, named: ReadonlySet<string> = new Set(), only?: number): Set<string> {
  const refs = new Set<string>();
  const isStage = (reference: string, before: number) =>
    named.has(reference.toLowerCase()) || plan.stages.some((s, i) => i < before && (s.name === reference.toLowerCase() || String(s.index) === reference));
  for (const stage of plan.stages) {
    if (only !== undefined && stage.index !== only) continue;
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

/** The first step that reads image `ref` (a FROM, COPY --from or RUN --mount from=), for errors to point at. */
export function stepReading(plan: Plan, ref: string): Step | undefined {
  for (const stage of plan.stages) {
    if (stage.base.kind === "image" && stage.base.ref === ref) return stage.steps[0];
    for (const step of stage.steps) {
      const instruction = step.instruction;
      if (instruction.kind === "COPY" && instruction.from === ref) return step;
      if (instruction.kind === "RUN" && instruction.mounts.some((m) => "from" in m && m.from === ref)) return step;
    }
  }
  return undefined;
}

/**
 * A name in the local store one or two edits from `ref` (a typo of a local image, as
 * `memobuild/busybx`), in the form the user wrote (`:latest` left out when they left it out).
 */
export function similarLocalImage(store: LocalStore, ref: string): string | undefined {
  let wanted: string;
  try {
    wanted = normalizeReference(ref);
  } catch {
    return undefined;
  }
  const names = store.images().map((record) => record.ref).filter((name) => name !== wanted);
  const found = closest(wanted, names);
  if (!found) return undefined;
  const familiar = familiarReference(found);
  return /:[^/]+$/.test(ref) ? familiar : familiar.replace(/:latest$/, "");
}
