/**
 * What the solver asks an executor to do, as plain data: it survives `JSON.stringify`, so a
 * step can be sent to another machine. Everything a step reads is named, never handed over:
 * layers by diff ID, the build context by its digest, downloads by URL and digest, secrets and
 * ssh agents by the ids the instruction's mounts name. The executor that receives a request
 * resolves those names itself (the local one through `ExecutorResources`).
 */
import type { BuildContext } from "../context/context.ts";
import type { Ownership } from "../context/digest.ts";
import type { Instruction } from "../frontend/instructions.ts";
import type { ImageConfig } from "../image/config.ts";
import type { CacheMountProvider } from "./cache-mount.ts";
import type { Download } from "./download.ts";
import type { NetworkMode } from "./network.ts";
import type { Sandbox } from "./sandbox.ts";
import type { SshAgents } from "./ssh.ts";

/** The instructions that make a layer (WORKDIR creates its directory, as BuildKit does). */
export type StepInstruction = Extract<Instruction, { kind: "RUN" | "COPY" | "ADD" | "WORKDIR" }>;

export interface StepRequest {
  instruction: StepInstruction;
  /** The image config before the step (WORKDIR, USER, SHELL). */
  config: ImageConfig;
  /** RUN's environment: ENV and the build args in scope. */
  env: [string, string][];
  /** The step's parent layers by diff ID, bottom (base) first. */
  lowers: string[];
  /** Stages and images the step reads (COPY --from, RUN --mount from=), by the reference the Dockerfile uses: diff IDs, bottom first. */
  sources: Record<string, string[]>;
  /** The build context's digest, when the step reads it. */
  context?: string;
  /** Local --build-context directories the step reads, by reference: their digests. */
  namedContexts: Record<string, string>;
  /** The --chown owner (for WORKDIR: the USER), resolved once (root when not given). */
  owner: Ownership;
  /** ADD's URL sources, with the digest (or --checksum) their content must have. */
  downloads: { url: string; digest: string }[];
  /** SOURCE_DATE_EPOCH: file times in the layer are clamped to it. */
  epoch?: number;
  /** The build's network mode; the RUN's own --network, when given, wins (network.ts). */
  network: NetworkMode;
  /** --add-host, --shm-size, --ulimit. */
  sandbox?: Sandbox;
  /** The stage's platform (`os/arch[/variant]`), when RUN needs emulation for it (another architecture). */
  platform?: string;
}

/** The channel beside a request: not data about the step, so not part of it. */
export interface StepIO {
  /** An empty staging directory of the step's own; the caller removes it. */
  work: string;
  onOutput: (line: string) => void;
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
  execute(request: StepRequest, io: StepIO): Promise<StepLayer>;
  /** Waits for what finished steps left exiting in the background (a RUN's slirp4netns). */
  settle?(): Promise<void>;
}

/** How the local executor finds what a request names. */
export interface ExecutorResources {
  /** Snapshot directories of layers, by diff ID (unpacked when needed). */
  snapshots(diffIds: string[]): Promise<string[]>;
  /** A build context (main or named) the solver loaded, by its digest. */
  context(digest: string): BuildContext;
  /** An ADD URL's content, fetched once per build and checked against `digest`. */
  download(url: string, digest: string): Promise<Download>;
  secrets: ReadonlyMap<string, Buffer>;
  ssh?: SshAgents;
  cacheMounts: CacheMountProvider;
}

/** A request with its names resolved on this machine: what RUN and COPY work with. */
export interface ResolvedStep extends Omit<StepRequest, "lowers" | "sources" | "context" | "namedContexts" | "downloads"> {
  /** Snapshot directories, bottom first. */
  lowers: string[];
  sources: Map<string, string[]>;
  context?: BuildContext;
  namedContexts: Map<string, BuildContext>;
  downloads: Download[];
  secrets: ReadonlyMap<string, Buffer>;
  ssh?: SshAgents;
  cacheMounts: CacheMountProvider;
  onOutput: (line: string) => void;
  work: string;
}
