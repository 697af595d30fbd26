/**
 * What a client sends a worker to build: the Dockerfile and its arguments, the build context as
 * a manifest of files stored as blobs, and the base images only the client has, as blobs. It is
 * a definition, not results: the worker plans and keys the build itself from it, so what it
 * writes to the shared cache under a key is what that key says, whoever submitted the job.
 * Everything here comes from the submitter, so the worker checks it field by field.
 */
import { UserError } from "../errors.ts";
import { isPrivateScope, privateScope, SCOPE_NAME } from "./mount-manifest.ts";

/** A blob as the server stores it (BLAKE3), with the OCI digest it must also have. */
export interface BlobRef {
  blake3: string;
  digest: string;
  size: number;
  mediaType?: string;
}

export interface ImageBlobs {
  manifest: BlobRef;
  config: BlobRef;
  layers: BlobRef[];
}

export interface ImageIndexBlobs {
  index: BlobRef;
  images: ImageBlobs[];
}

export interface ContextFile {
  /** The path in the context ("/"-separated, no "." or ".." parts), as latin1 bytes. */
  path: string;
  type: "file" | "dir" | "symlink";
  mode: number;
  blake3?: string;
  size?: number;
  target?: string;
}

export interface ContextManifest {
  entries: ContextFile[];
}

export interface JobDefinition {
  /**
   * 2 when the job carries build flags (network … annotations below): a worker from before them
   * refuses the job ("version: expected 1") rather than build without them. 3 when it names a
   * platform (or sends a base image as an index): a worker from before that would build for its
   * own platform. 1 otherwise.
   */
  version: 1 | 2 | 3;
  dockerfile: { text: string; path: string };
  buildArgs: Record<string, string>;
  target?: string;
  noCache: boolean;
  /** The BLAKE3 name of the context manifest blob, and the context's digest the worker must get from it. */
  context: { manifest: string; digest: string };
  /** `--build-context NAME=DIR` directories, each as a manifest blob and the digest the worker must get from it. */
  contexts: Record<string, { manifest: string; digest: string }>;
  /** Base images the client has and the registry may not, by the reference the Dockerfile uses (or a `--build-context` name). */
  images: Record<string, ImageBlobs>;
  /**
   * Base images the client holds as an index, for a job with a `platform` whose stages read one
   * of them for more than one platform (a `FROM --platform=$BUILDPLATFORM` stage beside the
   * target's): the index blob and each platform's image the client has.
   */
  imageIndexes?: Record<string, ImageIndexBlobs>;
  /** `--platform`: the one platform the job builds for (absent: the worker's own); another architecture's RUN runs under QEMU there. */
  platform?: string;
  labels: Record<string, string>;
  /** Ids of the secrets the client holds for the build: the worker asks for their values while it runs. */
  secrets: string[];
  /** --cache-mount-scope: the worker keeps a trusted submitter's mounts under it (worker.ts). */
  cacheMountScope?: string;
  /** Ids of the ssh agents the client holds for the build (`--ssh ID`): the worker's RUNs reach them through the server. */
  ssh: string[];
  /**
   * The hub's id of the build the submitter reports: the results the worker uploads name it, so
   * a step not reproducible (or a conflict) links the build. The server takes the claim only
   * from the worker holding the job, for a build of the job's submitter (app.ts).
   */
  build?: string;
  /** `--network`: the RUN network asked for (absent: default). host needs network.host in `allow`. */
  network?: "none" | "host";
  /** `--allow`: entitlements asked for; the worker grants them only if it was started with them, and only to a trusted submitter. */
  allow: JobEntitlement[];
  /** `--add-host`, `--shm-size`, `--ulimit` as the submitter wrote them: the worker's build parses them again. */
  sandbox: { addHost: string[]; shmSize?: string; ulimit: string[] };
  /** `--no-cache-filter`: the stages (names or indexes) run without the cache. */
  noCacheFilter: string[];
  /** `--pull`: base images are looked up in their registries, none sent from the client's store. */
  pull: boolean;
  /** `--annotation` of the image's manifest (the only kind one platform's build has). */
  annotations: Record<string, string>;
}

export const JOB_ENTITLEMENTS = ["network.host", "security.insecure"] as const;
export type JobEntitlement = (typeof JOB_ENTITLEMENTS)[number];

export class JobDefinitionError extends UserError {}

/**
 * The `--ulimit`s a job of an untrusted submitter (any token but a read-write one) may set: only
 * limits that bound its own RUNs, each up to a value that costs the worker nothing new. Never
 * rtprio or rttime (real-time scheduling starves the worker's other work), memlock (memory
 * pinned where the worker cannot reclaim it) or nice (priority over the other jobs). Limits
 * that hold kernel memory are capped: nofile at the kernel's default nr_open, msgqueue at
 * Linux's default, sigpending at 65536. -1 (unlimited) counts as above any cap.
 */
export const UNTRUSTED_ULIMITS: Readonly<Record<string, number>> = {
  core: Infinity, cpu: Infinity, data: Infinity, fsize: Infinity, locks: Infinity, nproc: Infinity, rss: Infinity, stack: Infinity,
  nofile: 1_048_576, msgqueue: 819_200, sigpending: 65_536,
};

/** Why an untrusted submitter's job may not carry these `--ulimit` specs: one line each (none: it may). */
export function untrustedUlimitProblems(specs: readonly string[]): string[] {
  const allowed = Object.entries(UNTRUSTED_ULIMITS).map(([name, cap]) => (cap === Infinity ? name : `${name} up to ${cap}`)).join(", ");
  const problems: string[] = [];
  for (const spec of specs) {
    const match = /^([a-z]+)=(-?\d+)(?::(-?\d+))?$/.exec(spec);
    const cap = match && Object.hasOwn(UNTRUSTED_ULIMITS, match[1]!) ? UNTRUSTED_ULIMITS[match[1]!] : undefined;
    const value = (text: string | undefined) => (text === undefined ? 0 : Number(text) === -1 ? Infinity : Number(text));
    const within = cap !== undefined && value(match![2]) <= cap && value(match![3]) <= cap;
    if (!within) problems.push(`--ulimit ${spec}: a read-only token's build may set only limits that bound its own RUNs (${allowed}) (submit it with a read-write token)`);
  }
  return problems;
}

const HASH = /^[0-9a-f]{64}$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;
const MAX_ENTRIES = 1_000_000;

function fail(field: string, expected: string): never {
  throw new JobDefinitionError(`job definition: ${field}: expected ${expected}`);
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value);

function strings(value: unknown, field: string): Record<string, string> {
  if (!isRecord(value)) fail(field, "an object of strings");
  for (const [k, v] of Object.entries(value)) if (typeof v !== "string" || k.length > 1024 || v.length > 1024 * 1024) fail(`${field}.${k}`, "a string");
  return value as Record<string, string>;
}

export function parseBlobRef(value: unknown, field: string): BlobRef {
  if (!isRecord(value)) fail(field, "a blob");
  if (typeof value.blake3 !== "string" || !HASH.test(value.blake3)) fail(`${field}.blake3`, "64 hex digits");
  if (typeof value.digest !== "string" || !DIGEST.test(value.digest)) fail(`${field}.digest`, "sha256:<64 hex>");
  if (!Number.isSafeInteger(value.size) || (value.size as number) < 0) fail(`${field}.size`, "a size in bytes");
  if (value.mediaType !== undefined && (typeof value.mediaType !== "string" || value.mediaType.length > 256)) fail(`${field}.mediaType`, "a media type");
  return { blake3: value.blake3, digest: value.digest, size: value.size as number, ...(value.mediaType ? { mediaType: value.mediaType as string } : {}) };
}

export function parseJobDefinition(value: unknown): JobDefinition {
  if (!isRecord(value) || (value.version !== 1 && value.version !== 2 && value.version !== 3)) fail("version", "1, 2 or 3");
  const dockerfile = value.dockerfile;
  if (!isRecord(dockerfile) || typeof dockerfile.text !== "string" || typeof dockerfile.path !== "string" || dockerfile.path.length > 4096) fail("dockerfile", "{ text, path }");
  const context = treeRef(value.context, "context");
  const contexts: Record<string, { manifest: string; digest: string }> = {};
  const named = value.contexts ?? {};
  if (!isRecord(named) || Object.keys(named).length > 64) fail("contexts", "at most 64 named contexts");
  for (const [name, tree] of Object.entries(named)) {
    if (!/^[a-z0-9][\w.:@\/-]{0,255}$/.test(name)) fail(`contexts.${name}`, "a context name (lowercase letters, digits, . _ - / : @)");
    contexts[name] = treeRef(tree, `contexts.${name}`);
  }
  if (value.target !== undefined && typeof value.target !== "string") fail("target", "a stage name");
  if (!isRecord(value.images)) fail("images", "an object");
  const images: Record<string, ImageBlobs> = {};
  for (const [ref, image] of Object.entries(value.images)) {
    imageRef(ref, `images.${ref}`);
    images[ref] = imageBlobs(image, `images.${ref}`);
  }
  const imageIndexes = value.imageIndexes === undefined ? undefined : indexBlobs(value.imageIndexes);
  return {
    version: value.version,
    dockerfile: { text: dockerfile.text as string, path: dockerfile.path as string },
    buildArgs: strings(value.buildArgs ?? {}, "buildArgs"),
    ...(value.target !== undefined ? { target: value.target as string } : {}),
    noCache: value.noCache === true,
    context,
    contexts,
    images,
    ...(imageIndexes ? { imageIndexes } : {}),
    ...(value.platform !== undefined ? { platform: platformName(value.platform) } : {}),
    labels: strings(value.labels ?? {}, "labels"),
    secrets: secretIds(value.secrets ?? [], "secrets"),
    ssh: secretIds(value.ssh ?? [], "ssh"),
    ...(value.cacheMountScope !== undefined ? { cacheMountScope: scopeName(value.cacheMountScope) } : {}),
    ...(value.build !== undefined ? { build: buildId(value.build) } : {}),
    ...(value.network !== undefined && value.network !== "default" ? { network: networkMode(value.network) } : {}),
    allow: entitlements(value.allow ?? []),
    sandbox: sandboxFlags(value.sandbox ?? {}),
    noCacheFilter: flagValues(value.noCacheFilter ?? [], "noCacheFilter", /^[\w.,-]{1,256}$/),
    pull: value.pull === true,
    annotations: annotations(value.annotations ?? {}),
  };
}

function imageBlobs(value: unknown, field: string): ImageBlobs {
  if (!isRecord(value) || !Array.isArray(value.layers)) fail(field, "{ manifest, config, layers }");
  return { manifest: parseBlobRef(value.manifest, `${field}.manifest`), config: parseBlobRef(value.config, `${field}.config`), layers: value.layers.map((l, i) => parseBlobRef(l, `${field}.layers[${i}]`)) };
}

/**
 * A base image's reference, which the worker passes as --build-context=REF=oci-layout://DIR: the
 * build splits that at its first "=", so an "=" in REF would let the job choose the context's
 * source (a git URL the worker fetches with its own credentials, say). No image reference has
 * one, nor a space or control character.
 */
function imageRef(ref: string, field: string) {
  if (!/^[^=\s\x00-\x1f\x7f]{1,512}$/.test(ref)) fail(field, "a reference of at most 512 characters, without =, spaces or control characters");
}

function indexBlobs(value: unknown): Record<string, ImageIndexBlobs> {
  if (!isRecord(value) || Object.keys(value).length > 64) fail("imageIndexes", "at most 64 indexes");
  const indexes: Record<string, ImageIndexBlobs> = {};
  for (const [ref, entry] of Object.entries(value)) {
    const field = `imageIndexes.${ref}`;
    imageRef(ref, field);
    if (!isRecord(entry) || !Array.isArray(entry.images) || entry.images.length > 64) fail(field, "{ index, images: at most 64 }");
    indexes[ref] = { index: parseBlobRef(entry.index, `${field}.index`), images: entry.images.map((image, i) => imageBlobs(image, `${field}.images[${i}]`)) };
  }
  return indexes;
}

/** The worker hands it to its build as --platform=VALUE: os/arch[/variant], nothing else. */
function platformName(value: unknown): string {
  if (typeof value !== "string" || !/^[a-z0-9]{1,32}\/[a-z0-9_]{1,32}(\/[a-z0-9]{1,32})?$/.test(value)) fail("platform", "os/arch[/variant], e.g. linux/arm64");
  return value;
}

function networkMode(value: unknown): "none" | "host" {
  if (value !== "none" && value !== "host") fail("network", "default, none or host");
  return value;
}

function entitlements(value: unknown): JobEntitlement[] {
  if (!Array.isArray(value) || value.some((e) => !(JOB_ENTITLEMENTS as readonly unknown[]).includes(e))) fail("allow", `a list of ${JOB_ENTITLEMENTS.join(", ")}`);
  return [...new Set(value as JobEntitlement[])];
}

/** Values the worker hands its build joined to their flag (--flag=VALUE): bounded, one line each. */
function flagValues(value: unknown, field: string, shape: RegExp): string[] {
  if (!Array.isArray(value) || value.length > 64 || value.some((v) => typeof v !== "string" || !shape.test(v))) fail(field, `at most 64 values matching ${shape}`);
  return value as string[];
}

function sandboxFlags(value: unknown): JobDefinition["sandbox"] {
  if (!isRecord(value)) fail("sandbox", "{ addHost, shmSize, ulimit }");
  if (value.shmSize !== undefined && (typeof value.shmSize !== "string" || !/^[\w.]{1,32}$/.test(value.shmSize))) fail("sandbox.shmSize", "a size such as 256m");
  return {
    addHost: flagValues(value.addHost ?? [], "sandbox.addHost", /^[\w.:=\[\]-]{1,300}$/),
    ...(value.shmSize !== undefined ? { shmSize: value.shmSize as string } : {}),
    ulimit: flagValues(value.ulimit ?? [], "sandbox.ulimit", /^[a-z]{1,16}=-?\d{1,20}(:-?\d{1,20})?$/),
  };
}

/** Manifest annotations: a key is what `--annotation manifest:KEY=VALUE` can carry (no space, no =). */
function annotations(value: unknown): Record<string, string> {
  const found = strings(value, "annotations");
  if (Object.keys(found).length > 256) fail("annotations", "at most 256 annotations");
  for (const key of Object.keys(found)) if (!/^[^\s=]{1,1024}$/.test(key)) fail(`annotations.${key}`, "a key without spaces or =");
  return found;
}

function buildId(value: unknown): string {
  if (typeof value !== "string" || !/^[A-Za-z0-9_-]{8,64}$/.test(value)) fail("build", "a build id: 8 to 64 letters, digits, _ or -");
  return value;
}

function scopeName(value: unknown): string {
  if (typeof value !== "string" || !SCOPE_NAME.test(value)) fail("cacheMountScope", "up to 128 letters, digits and . _ / -, starting with a letter or digit");
  // A worker names those itself, for submitters it does not trust: a job naming one would share
  // that submitter's files and results.
  if (isPrivateScope(value)) fail("cacheMountScope", `a scope not named ${privateScope("…")} (the worker gives those to untrusted submitters)`);
  return value;
}

/** A directory sent as a manifest blob, with the digest it must have once rebuilt. */
function treeRef(value: unknown, field: string): { manifest: string; digest: string } {
  if (!isRecord(value) || typeof value.manifest !== "string" || !HASH.test(value.manifest) || typeof value.digest !== "string" || !HASH.test(value.digest)) fail(field, "{ manifest: BLAKE3, digest: 64 hex }");
  return { manifest: value.manifest, digest: value.digest };
}

function secretIds(value: unknown, field: string): string[] {
  if (!Array.isArray(value) || value.length > 64 || value.some((id) => typeof id !== "string" || !/^[\w.-]{1,256}$/.test(id))) fail(field, "at most 64 ids (letters, digits, . _ -)");
  if (new Set(value).size !== value.length) fail(field, "ids given once each");
  return value as string[];
}

/** A context manifest from the blob its definition names: every path relative and clean. */
export function parseContextManifest(value: unknown): ContextManifest {
  if (!isRecord(value) || !Array.isArray(value.entries) || value.entries.length > MAX_ENTRIES) fail("context manifest", "{ entries: [...] }");
  const entries = value.entries.map((raw, i): ContextFile => {
    const field = `context.entries[${i}]`;
    if (!isRecord(raw) || typeof raw.path !== "string") fail(field, "{ path, type, mode }");
    const path = raw.path;
    if (path === "" || path.startsWith("/") || path.split("/").some((part) => part === "" || part === "." || part === "..") || path.includes("\0")) fail(`${field}.path`, "a clean relative path");
    if (!Number.isSafeInteger(raw.mode) || (raw.mode as number) < 0 || (raw.mode as number) > 0o7777) fail(`${field}.mode`, "permission bits");
    const mode = raw.mode as number;
    switch (raw.type) {
      case "dir":
        return { path, type: "dir", mode };
      case "symlink":
        if (typeof raw.target !== "string" || raw.target.length > 4096 || raw.target.includes("\0")) fail(`${field}.target`, "a link target");
        return { path, type: "symlink", mode, target: raw.target };
      case "file":
        if (typeof raw.blake3 !== "string" || !HASH.test(raw.blake3)) fail(`${field}.blake3`, "64 hex digits");
        if (!Number.isSafeInteger(raw.size) || (raw.size as number) < 0) fail(`${field}.size`, "a size in bytes");
        return { path, type: "file", mode, blake3: raw.blake3, size: raw.size as number };
      default:
        return fail(`${field}.type`, "file, dir or symlink");
    }
  });
  return { entries };
}
