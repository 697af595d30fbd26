/**
 * What the steps of one build may read, found once per build: stages built earlier, images in
 * the store (or given by --build-context), the build context and named local contexts (each
 * loaded once and known by its digest), ADD downloads, and the users of an image's
 * /etc/passwd. Operations ask it; the local executor resolves requests through it.
 */
import { rmSync } from "node:fs";
import { statCacheFile } from "../config/cache-dir.ts";
import type { LocalStore } from "../cache/store.ts";
import { loadContext, type BuildContext } from "../context/context.ts";
import { Downloads } from "../executor/download.ts";
import type { ExecutorResources } from "../executor/request.ts";
import type { Plan, Stage } from "../frontend/plan.ts";
import type { Platform } from "../frontend/platform.ts";
import type { StoredImage } from "../image/layout.ts";
import { LayerView } from "../snapshot/view.ts";
import { diffIds, imageLayers, type LayerRef, type StageState } from "./state.ts";
import { similarLocalImage } from "./images.ts";

/** What a `--build-context` name stands for. */
export type NamedContext =
  | {
      kind: "image";
      image: StoredImage;
      /** The stored digest (a multi-platform index, maybe): another platform's image comes from it. */
      digest?: string;
    }
  | { kind: "local"; dir: string };

export interface WorldOptions {
  store: LocalStore;
  plan: Plan;
  contextDir: string;
  dockerfileAbsolute?: string;
  statCacheFile?: string;
  namedContexts: Map<string, NamedContext>;
  /** Images by reference and platform, --build-context images first. */
  image: (ref: string, platform: Platform) => StoredImage | undefined;
  /** Told the context's digest once it is read. */
  onContext: (digest: string) => void;
  /** ADD's URLs may not reach this machine's loopback (a worker's job without network.host). */
  refuseLoopbackUrls?: boolean;
}

/** A stage or image a step reads: what it stands for (in keys) and its layers (for the executor). */
export interface Source {
  identity: string;
  layers: LayerRef[];
}

export class BuildWorld {
  /** Stages built so far, by index. */
  readonly stages = new Map<number, StageState>();
  readonly downloads: Downloads;
  private readonly contexts = new Map<string, BuildContext>();
  private main?: Promise<BuildContext>;
  private readonly named = new Map<string, Promise<BuildContext>>();
  private downloadDir?: string;

  constructor(private readonly options: WorldOptions) {
    this.downloads = new Downloads(() => (this.downloadDir ??= options.store.tempDir("downloads")), { refuseLoopback: options.refuseLoopbackUrls });
  }

  image(ref: string, platform: Platform): StoredImage | undefined {
    return this.options.image(ref, platform);
  }

  /** A local image name a missing `ref` may be a typo of (for "did you mean"). */
  similarImage(ref: string): string | undefined {
    return similarLocalImage(this.options.store, ref);
  }

  /** A local --build-context directory the reference names. */
  localContext(reference: string): { dir: string } | undefined {
    const context = this.options.namedContexts.get(reference.toLowerCase());
    return context?.kind === "local" ? context : undefined;
  }

  /** A stage defined before stage `before`, by name or index, as `--from` and `from=` name them. */
  stageBefore(reference: string, before: number): Stage | undefined {
    const lower = reference.toLowerCase();
    return this.options.plan.stages.find((s, i) => i < before && (s.name === lower || String(s.index) === reference));
  }

  /** A stage built earlier (its key) or an image for `platform` (its manifest digest); undefined when neither. */
  source(reference: string, before: number, platform: Platform): Source | undefined {
    const stage = this.stageBefore(reference, before);
    if (stage) {
      const built = this.stages.get(stage.index)!;
      return { identity: built.key, layers: built.layers };
    }
    const image = this.image(reference, platform);
    return image && { identity: image.manifestDigest, layers: imageLayers(image) };
  }

  /** The build context, loaded once per build; its digest names it in requests. */
  context(): Promise<BuildContext> {
    const { contextDir, dockerfileAbsolute, statCacheFile } = this.options;
    return (this.main ??= loadContext({ contextDir, dockerfile: dockerfileAbsolute, statCacheFile }).then((loaded) => {
      this.options.onContext(this.register(loaded));
      return loaded;
    }));
  }

  /** A local --build-context directory, loaded once per build like the main context. */
  namedContext(reference: string, dir: string): Promise<BuildContext> {
    const name = reference.toLowerCase();
    let load = this.named.get(name);
    if (!load) {
      load = loadContext({ contextDir: dir, statCacheFile: statCacheFile(this.options.store.dir, dir) }).then((loaded) => (this.register(loaded), loaded));
      this.named.set(name, load);
    }
    return load;
  }

  /** A request names a loaded context by its digest (the same files are the same context). */
  private register(context: BuildContext): string {
    const digest = context.digest();
    this.contexts.set(digest, context);
    return digest;
  }

  snapshots(layers: LayerRef[] | string[]): Promise<string[]> {
    const ids = typeof layers[0] === "string" ? (layers as string[]) : diffIds(layers as LayerRef[]);
    return Promise.all(ids.map((id) => this.options.store.ensureSnapshot(id)));
  }

  /** Reads files of a stage's file system (its /etc/passwd and /etc/group, to look users up). */
  async reader(state: StageState): Promise<(path: string) => string | undefined> {
    const view = new LayerView(await this.snapshots(state.layers));
    return (path) => view.readFile(path);
  }

  /** How the local executor finds what requests name. */
  resources(extra: Pick<ExecutorResources, "secrets" | "ssh" | "cacheMounts">): ExecutorResources {
    return {
      ...extra,
      snapshots: (ids) => this.snapshots(ids),
      context: (digest) => {
        const context = this.contexts.get(digest);
        if (!context) throw new Error(`no build context with digest ${digest} was loaded`);
        return context;
      },
      download: (url, digest) => this.downloads.fetch(url, digest),
    };
  }

  close() {
    if (this.downloadDir) rmSync(this.downloadDir, { recursive: true, force: true });
  }
}
