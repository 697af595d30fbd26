/** `--build-context` values made concrete before a build: images found (or pulled, or imported), git URLs fetched, directories kept. */
import type { LocalStore } from "../cache/store.ts";
import { adoptImageLayers, importOciLayout, loadImage } from "../image/layout.ts";
import { hostPlatform, platformMatches } from "../frontend/platform.ts";
import { normalizeReference } from "../image/reference.ts";
import type { NamedContext } from "../solver/solver.ts";
import { UserError } from "../errors.ts";
import type { NamedContextSpec } from "./build-flags.ts";
import { usage } from "./build-flags.ts";
import { gitContext } from "./context-source.ts";

export async function resolveNamedContexts(
  specs: NamedContextSpec[],
  store: LocalStore,
  pull: ((ref: string) => Promise<void>) | undefined,
  pullAlways = false,
): Promise<Map<string, NamedContext>> {
  const contexts = new Map<string, NamedContext>();
  for (const spec of specs) {
    if (spec.kind === "local") {
      contexts.set(spec.name, { kind: "local", dir: spec.dir });
      continue;
    }
    if (spec.kind === "git") {
      // A scratch clone at the commit the ref names; its files key the steps that read it.
      const fetched = gitContext(spec.url, `--build-context ${spec.name}`);
      process.stderr.write(`memobuild: --build-context ${spec.name}: git ${fetched.shown} at commit ${fetched.commit}\n`);
      contexts.set(spec.name, { kind: "local", dir: fetched.dir });
      continue;
    }
    if (spec.kind === "oci-layout") {
      const imported = importOciLayout(store, spec.dir, spec.tag);
      // Unpacked now, as `image import` does: a base image's layers must be in the cache to mount.
      for (const image of imported.images) await adoptImageLayers(store, image.manifest, image.config);
      // A multi-platform layout serves each platform's build its own image (from `digest`).
      const host = imported.images.find((image) => platformMatches(hostPlatform(), image.config)) ?? imported.images[0]!;
      contexts.set(spec.name, { kind: "image", image: host, digest: imported.digest });
      continue;
    }
    const ref = usage(() => normalizeReference(spec.ref));
    let record = store.image(ref);
    if ((!record || pullAlways) && pull) {
      await pull(spec.ref);
      record = store.image(ref);
    }
    if (!record) throw new UserError(`--build-context ${spec.name}=docker-image://${spec.ref}: the image is not in the local image store (memobuild image pull ${spec.ref})`);
    contexts.set(spec.name, { kind: "image", image: loadImage(store, record.manifestDigest), digest: record.manifestDigest });
  }
  return contexts;
}
