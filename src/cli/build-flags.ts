/**
 * The flags of `build`, which `explain` and `graph` accept too (a user copies a build command
 * and changes the verb), and what they mean once parsed.
 */
import type { CacheSpec } from "../registry/build-cache.ts";
import { parseReference } from "../image/reference.ts";
import { Option, type Command } from "commander";
import { existsSync, statSync } from "node:fs";
import { TMPFS_BYTES } from "../executor/private-tmpfs.ts";
import { HostFileError, readRegularFile } from "../util/host-file.ts";
import { formatBytes } from "../util/sizes.ts";
import { join, resolve } from "node:path";
import { formatPlatform, normalizePlatform, parsePlatform, parsePlatformList, type Platform } from "../frontend/platform.ts";
import { parseOutputSpec, writesToStdout, type OutputSpec } from "../image/output-spec.ts";
import { parseAddHost, parseShmSize, parseUlimit, type Sandbox } from "../executor/sandbox.ts";
import { NETWORK_MODES, type NetworkMode } from "../executor/network.ts";
import { UsageError } from "./errors.ts";
import { collect } from "./collect.ts";
import { isGitUrl } from "./context-source.ts";
import type { SettingFlags } from "./settings.ts";

export interface BuildFlags extends SettingFlags {
  output: string[];
  push?: boolean;
  load?: boolean;
  metadataFile?: string;
  cache: boolean;
  noCacheFilter: string[];
  pull?: boolean;
  buildContext: string[];
  platform?: string;
  secret: string[];
  ssh: string[];
  network: string;
  addHost: string[];
  shmSize?: string;
  ulimit: string[];
  allow: string[];
  buildLabel: string[];
  label: string[];
  annotation: string[];
  iidfile?: string;
  insecureRegistry: string[];
  cacheFrom: string[];
  cacheTo: string[];
  provenance?: string[];
  sbom?: string[];
  attest?: string[];
  signKey?: string;
}

/** Every option of `build` beyond the Dockerfile's (-f, --target, --build-arg) and the remote's. */
export function buildFlagOptions(command: Command): Command {
  return command
    .option("-t, --tag <ref>", "name the image in the local store (repeatable)", collect)
    .option("--label <name=value>", "set a label on the image, as LABEL would (repeatable)", collect)
    .option("--annotation <[type][[platform]]:key=value>", "an annotation on the image's manifest (default), or with a type on manifest-descriptor, index or index-descriptor; [os/arch] picks one platform (repeatable)", collect)
    .option("-q, --quiet", "print only the image ID (its config digest) on stdout; warnings and errors still go to stderr")
    .option("--iidfile <file>", "write the image ID (its config digest) to this file")
    .option(
      "-o, --output <spec>",
      "also export (repeatable): type=oci,dest=DIR | type=oci-archive,dest=FILE (oci ones take compression=gzip|uncompressed) | " +
        "type=docker[,dest=FILE] (a docker archive; without dest: loaded, as --load) | type=docker-archive,dest=FILE | " +
        "type=image,name=REF[,push=true] | type=registry[,name=REF] (push the names, else every -t) | type=local,dest=DIR | type=tar,dest=FILE (the file system); " +
        "archives take name=REF and dest=- (stdout); DIR alone is type=local, - alone a tar of the file system on stdout",
      collect,
    )
    .option("--push", "push every -t name (the same as --output type=registry)")
    .option("--load", "load the image (with its -t names) into the Docker Engine at $DOCKER_HOST (default: the local socket)")
    .option("--insecure-registry <host>", "use plain HTTP for this registry (repeatable; also $MEMOBUILD_INSECURE_REGISTRIES)", collect)
    .option("--metadata-file <file>", "write the image digest and every step's status as JSON")
    .option("--no-cache", "run every step, ignoring cached results")
    .addOption(valueOption("--no-cache-filter <stage>", "run the steps of these stages (names or indexes, comma-separated; repeatable) without the cache"))
    .option("--build-context <name=value>", "a named context for FROM/COPY --from/RUN --mount from=NAME: a directory, a git URL (https://…/r.git#ref:dir, git@host:o/r.git, git://…), docker-image://REF or oci-layout://DIR[:TAG] (repeatable)", collect)
    .option("--pull", "look every base image up in its registry, even when the local store has it")
    .option("--platform <os/arch[,...]>", "the platforms to build for (default: this machine's); several make one image index; another architecture's RUN runs under QEMU (Debian's qemu-user-static)")
    .option("--progress <mode>", "auto|tty|plain|json|quiet (default: auto: tty on a terminal, else plain)")
    .option("--cache-dir <dir>", "cache directory (default: $MEMOBUILD_CACHE_DIR, the config's cacheDir, or ~/.cache/memobuild)")
    .option("--secret <spec>", "[type=file|env,]id=ID[,src=PATH|,env=VAR]: a secret for RUN --mount=type=secret (repeatable)", collect)
    .option("--ssh <spec>", "ID[=SOCKET|KEY[,KEY]]: an SSH agent for RUN --mount=type=ssh; `default` alone forwards $SSH_AUTH_SOCK (repeatable)", collect)
    .option("--network <mode>", "network for RUN: default (its own, with outbound access through slirp4netns) | none | host (needs --allow network.host)", "default")
    .option("--add-host <name:ip>", "an /etc/hosts entry for every RUN; NAME:host-gateway reaches the host's own loopback (repeatable)", collect)
    .option("--shm-size <size>", "the size of /dev/shm in every RUN, e.g. 256m (default: 64m)")
    .option("--ulimit <name=soft[:hard]>", "a resource limit for every RUN, e.g. nofile=1024:2048 (repeatable)", collect)
    .option("--allow <entitlement>", "let the Dockerfile use network.host (RUN --network=host) or security.insecure (RUN --security=insecure) (repeatable)", collect)
    .option("--jobs <n>", "how many independent stages may build at once (default: the number of CPUs)")
    .option("--cache-from <spec>", "read step results from a build cache: type=registry,ref=REF | type=local,src=DIR | REF (repeatable: tried in order, after the remote cache; one that cannot be read costs a warning)", collect)
    .option("--cache-to <spec>", "write the build's step results as a build cache: type=registry,ref=REF | type=local,dest=DIR [,mode=min|max] [,ignore-error=true] (repeatable)", collect)
    .option("--build-label <name=value>", "a label for this build in the build hub's history, e.g. team=web (repeatable)", collect)
    .option("--provenance <spec>", "attach SLSA v1 provenance: true|false|mode=min|mode=max[,builder-id=URI] (as buildx)", collect)
    .option("--sbom <spec>", "attach an SPDX 2.3 SBOM read from the image's package data: true|false", collect)
    .option("--attest <spec>", "type=provenance[,mode=min|max] | type=sbom [,disabled=true] (repeatable, as buildx)", collect)
    .option("--sign-key <file>", "sign the image (and its attestations) the way cosign does, with this ECDSA P-256 PEM key (memobuild key generate --type ecdsa-p256)");
}

/**
 * A repeatable option whose name starts with --no- but takes values, as buildx's
 * --no-cache-filter (Commander would make any --no-X the boolean negation of --X).
 */
function valueOption(flags: string, description: string): Option {
  const option = new Option(flags, description).argParser(collect);
  option.negate = false;
  return option;
}

/** A UserError from a parser, as a usage error (exit code 2). */
export function usage<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/** --network default|none|host; host only with --allow network.host, as BuildKit's entitlement. */
export function networkFrom(flags: Pick<BuildFlags, "network" | "allow">): NetworkMode {
  const mode = flags.network;
  if (!(NETWORK_MODES as readonly string[]).includes(mode)) throw new UsageError(`--network ${mode}: use ${NETWORK_MODES.join(", ")}`);
  if (mode === "host" && !flags.allow.includes("network.host")) throw new UsageError("--network host uses the host's network: add --allow network.host to let it");
  return mode as NetworkMode;
}

/** --add-host, --shm-size, --ulimit; undefined when none is given. */
export function sandboxFrom(flags: Pick<BuildFlags, "addHost" | "shmSize" | "ulimit">): Sandbox | undefined {
  if (!flags.addHost.length && flags.shmSize === undefined && !flags.ulimit.length) return undefined;
  return usage(() => ({
    hosts: flags.addHost.map(parseAddHost),
    shmBytes: flags.shmSize === undefined ? undefined : parseShmSize(flags.shmSize),
    ulimits: flags.ulimit.map(parseUlimit),
  }));
}

/**
 * --platform P[,P...]: the platforms to build for (undefined: this machine's). Linux only: RUN
 * needs its kernel; another architecture's RUN is emulated (executor/emulation.ts).
 */
export function platformsFrom(flag: string | undefined): Platform[] | undefined {
  if (flag === undefined) return undefined;
  const platforms = usage(() => parsePlatformList(flag));
  const other = platforms.find((p) => p.os !== "linux");
  if (other) throw new UsageError(`--platform ${flag}: ${other.os} images are not supported (MemoBuild builds Linux images)`);
  return platforms;
}

/** --no-cache-filter a,b --no-cache-filter c → {a, b, c}. */
export function noCacheStages(values: string[]): Set<string> {
  return new Set(values.flatMap((v) => v.split(",")).map((v) => v.trim().toLowerCase()).filter(Boolean));
}

/** One `--annotation` of a manifest or its descriptor: for every platform, or for one (`manifest[linux/arm64]:`). */
export interface PlatformAnnotation {
  platform?: string;
  key: string;
  value: string;
}

/** `--annotation`, by where each goes (buildx's four types). */
export interface AnnotationSpec {
  /** On each platform's image manifest. */
  manifest: PlatformAnnotation[];
  /** On each platform's entry in the image index. */
  manifestDescriptor: PlatformAnnotation[];
  /** On the image index. */
  index: Record<string, string>;
  /** On the index's entry in an OCI layout's index.json. */
  indexDescriptor: Record<string, string>;
}

const ANNOTATION_TYPES = { manifest: "manifest", "manifest-descriptor": "manifestDescriptor", index: "index", "index-descriptor": "indexDescriptor" } as const;
const ANNOTATION_FORM = "[TYPE[,TYPE...]][[OS/ARCH]]:KEY=VALUE, TYPE one of manifest (the default), manifest-descriptor, index, index-descriptor";

/**
 * `--annotation [TYPE[,TYPE...]][[PLATFORM]]:KEY=VALUE` as buildx reads it: the text before the
 * first `=` names where it goes and the key, the rest is the value. Without a type it annotates
 * the manifest; a platform selector picks one platform's manifest (or its descriptor).
 */
export function parseAnnotations(values: string[]): AnnotationSpec {
  const spec: AnnotationSpec = { manifest: [], manifestDescriptor: [], index: {}, indexDescriptor: {} };
  for (const text of values) {
    const eq = text.indexOf("=");
    const parsed = eq < 0 ? null : /^(?:([a-z-]+(?:,[a-z-]+)*)(?:\[([^\]]*)\])?:)?(\S+)$/.exec(text.slice(0, eq));
    if (!parsed) throw new UsageError(`--annotation ${text}: use ${ANNOTATION_FORM}`);
    const [, typeList, selector, key] = parsed as unknown as [string, string | undefined, string | undefined, string];
    const platform = selector === undefined ? undefined : usage(() => formatPlatform(normalizePlatform(parsePlatform(selector))));
    for (const type of (typeList ?? "manifest").split(",")) {
      const field = ANNOTATION_TYPES[type as keyof typeof ANNOTATION_TYPES];
      if (!field) throw new UsageError(`--annotation ${text}: unknown type ${type}; use ${ANNOTATION_FORM}`);
      if (field === "index" || field === "indexDescriptor") {
        if (platform) throw new UsageError(`--annotation ${text}: the index is every platform's; a platform selector goes with manifest or manifest-descriptor`);
        spec[field][key] = text.slice(eq + 1);
      } else spec[field].push({ platform, key, value: text.slice(eq + 1) });
    }
  }
  return spec;
}

/** The annotations of `platform`'s manifest (or descriptor): those for every platform, then its own over them. */
export function annotationsFor(annotations: PlatformAnnotation[], platform: Platform): Record<string, string> | undefined {
  const name = formatPlatform(platform);
  const chosen = [...annotations.filter((a) => !a.platform), ...annotations.filter((a) => a.platform === name)];
  return chosen.length ? Object.fromEntries(chosen.map((a) => [a.key, a.value])) : undefined;
}

/**
 * What --annotation asks of this build, checked before any work: a platform selector names a
 * platform built; the index and descriptor types need an image index (several platforms), and
 * index-descriptor a layout whose index.json holds the index's entry.
 */
export function checkAnnotations(spec: AnnotationSpec, platforms: Platform[], outputs: OutputSpec[]) {
  const built = platforms.map(formatPlatform);
  const selected = [...spec.manifest, ...spec.manifestDescriptor].find((a) => a.platform && !built.includes(a.platform));
  if (selected) throw new UsageError(`--annotation: ${selected.platform} (for ${selected.key}) is not a platform of this build (${built.join(", ")})`);
  const indexTypes = [spec.manifestDescriptor.length && "manifest-descriptor", Object.keys(spec.index).length && "index", Object.keys(spec.indexDescriptor).length && "index-descriptor"].filter(Boolean);
  if (indexTypes.length && built.length < 2) {
    throw new UsageError(`--annotation ${indexTypes.join(", ")}: a build of one platform makes no image index to annotate; build several (--platform a,b) or annotate the manifest (manifest:KEY=VALUE)`);
  }
  if (Object.keys(spec.indexDescriptor).length && !outputs.some((o) => o.type === "oci" || o.type === "oci-archive")) {
    throw new UsageError("--annotation index-descriptor: annotates the index's entry in an OCI layout's index.json, and no output writes one: add -o type=oci or type=oci-archive (a registry has no such entry)");
  }
}

/** A `--build-context` value, parsed (nothing read yet). */
export type NamedContextSpec = { name: string } & ({ kind: "local"; dir: string } | { kind: "docker-image"; ref: string } | { kind: "oci-layout"; dir: string; tag?: string } | { kind: "git"; url: string });

/** `--build-context NAME=DIR|docker-image://REF|oci-layout://DIR[:TAG]|GIT-URL`, as buildx reads it. */
export function parseBuildContexts(values: string[]): NamedContextSpec[] {
  return values.map((spec) => {
    const eq = spec.indexOf("=");
    if (eq < 1) throw new UsageError(`--build-context ${spec}: use NAME=DIR, NAME=GIT-URL, NAME=docker-image://REF or NAME=oci-layout://DIR[:TAG]`);
    const name = spec.slice(0, eq).toLowerCase();
    const value = spec.slice(eq + 1);
    if (value.startsWith("docker-image://")) return { name, kind: "docker-image", ref: value.slice("docker-image://".length) };
    if (value.startsWith("oci-layout://")) {
      const rest = value.slice("oci-layout://".length);
      if (rest.includes("@")) throw new UsageError(`--build-context ${spec}: choose the image in the layout by its tag (DIR:TAG), not by digest`);
      // DIR:TAG, where TAG is a ref.name in the layout, which may hold ":" and "/" itself
      // (MemoBuild writes `team/app:3`): DIR is the first prefix that is a layout.
      for (let colon = rest.indexOf(":"); colon > 0; colon = rest.indexOf(":", colon + 1)) {
        if (existsSync(join(resolve(rest.slice(0, colon)), "index.json"))) return { name, kind: "oci-layout", dir: resolve(rest.slice(0, colon)), tag: rest.slice(colon + 1) };
      }
      return { name, kind: "oci-layout", dir: resolve(rest) };
    }
    // A git URL is fetched when the build starts (resolveNamedContexts), as the main context is.
    if (isGitUrl(value)) return { name, kind: "git", url: value };
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) throw new UsageError(`--build-context ${spec}: ${value.split(":")[0]} sources are not supported (use a directory, a git URL, docker-image:// or oci-layout://)`);
    const dir = resolve(value);
    if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UsageError(`--build-context ${spec}: ${value} is not a directory`);
    return { name, kind: "local", dir };
  });
}

/** Whether any flag asks for attestations or a signature (only then is src/attest/ loaded). */
export const attestFlagsGiven = (flags: Pick<BuildFlags, "provenance" | "sbom" | "attest" | "signKey">) => Boolean(flags.provenance?.length || flags.sbom?.length || flags.attest?.length || flags.signKey);

/** --output specs, and --push as type=registry. */
export function outputsFrom(flags: Pick<BuildFlags, "output" | "push">): OutputSpec[] {
  const outputs = flags.output.map((spec) => usage(() => parseOutputSpec(spec, (path) => resolve(path))));
  if (flags.push && !outputs.some((o) => o.type === "registry")) outputs.push({ type: "registry", names: [] });
  return outputs;
}

/**
 * What the outputs need before any work: a name to push, and stdout to themselves (one output
 * there, no -q or JSON progress there, and not a terminal, which a tar would garble).
 */
export function checkOutputs(outputs: OutputSpec[], tags: string[], progress: string, stdoutIsTty = !!process.stdout.isTTY) {
  if (outputs.some((o) => o.type === "registry" && o.names.length === 0) && tags.length === 0) {
    throw new UsageError("--push and --output type=registry push the -t names: give at least one (or name=REF)");
  }
  const toStdout = outputs.filter(writesToStdout);
  if (toStdout.length === 0) return;
  if (toStdout.length > 1) throw new UsageError("--output: only one output can write to stdout (dest=-)");
  if (progress === "quiet" || progress === "json") throw new UsageError(`--output dest=- writes the image to stdout, where --progress ${progress} (or -q) prints too: use one of them`);
  if (stdoutIsTty) throw new UsageError("--output dest=- would write a tar to the terminal: redirect stdout (> image.tar), or give dest=FILE");
}

/**
 * What a multi-platform build (one image index) cannot do, refused before any work. The Docker
 * Engine loads one image, not an index (buildx refuses too: "docker exporter does not currently
 * support exporting manifest lists"); a remote builder's build for several platforms is not made yet.
 */
export function checkMultiPlatform(flags: Pick<BuildFlags, "platform" | "load">, outputs: OutputSpec[]) {
  const what = `--platform ${flags.platform} makes an image index (one image per platform)`;
  if (flags.load || outputs.some((o) => o.type === "docker" || o.type === "docker-archive")) {
    throw new UsageError(`${what}, which the Docker Engine cannot load (--load, type=docker, type=docker-archive): build one platform to load it, or write -o type=oci,dest=DIR`);
  }
}

/** `--label k=v` (the image's) and `--build-label k=v` (the build's, in the build hub). */
export function parseLabels(flag: string, values: string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const value of values) {
    const eq = value.indexOf("=");
    if (eq < 1) throw new UsageError(`${flag} ${value}: use NAME=VALUE`);
    labels[value.slice(0, eq)] = value.slice(eq + 1);
  }
  if (Object.keys(labels).length > 64) throw new UsageError(`${flag}: at most 64 labels`);
  return labels;
}

/**
 * A secret file: the user named it (a link is followed), but it must be a regular file (a
 * FIFO or /dev/zero would be read forever) that fits in the in-memory file system a RUN gets its
 * secrets in: a larger one could never be mounted.
 */
function readSecretFile(id: string, source: string): Buffer {
  if (!existsSync(source)) throw new UsageError(`--secret id=${id}: file ${source} does not exist`);
  try {
    return readRegularFile(source, { follow: true, limit: TMPFS_BYTES, what: `--secret id=${id}: ${source}` });
  } catch (error) {
    if (!(error instanceof HostFileError)) throw error;
    const tooLarge = `is larger than ${TMPFS_BYTES} bytes: not reading it`;
    throw new UsageError(error.message.replace(tooLarge, `is larger than ${formatBytes(TMPFS_BYTES)}, the in-memory file system a RUN's secrets live in`));
  }
}

/**
 * `--secret` as buildx reads it: `[type=file|env,]id=ID[,src=PATH|,env=VAR]`. Without src or
 * env, the variable named ID. The value is read now, so no path or variable is read later.
 */
export function parseSecret(spec: string): [string, Buffer] {
  const fields: Record<string, string> = {};
  for (const field of spec.split(",")) {
    const eq = field.indexOf("=");
    const key = eq < 0 ? field : field.slice(0, eq);
    if (!["type", "id", "src", "source", "env"].includes(key)) throw new UsageError(`--secret ${spec}: unknown key "${key}" (use type=, id=, src= or env=)`);
    fields[key] = eq < 0 ? "" : field.slice(eq + 1);
  }
  const { id, type = "file" } = fields;
  if (!id) throw new UsageError(`--secret ${spec}: id=ID is required`);
  if (type !== "file" && type !== "env") throw new UsageError(`--secret ${spec}: type must be file or env, not "${type}"`);
  const source = fields.src ?? fields.source;
  if (type === "file" && source !== undefined) return [id, readSecretFile(id, source)];
  const variable = fields.env ?? source ?? id;
  const value = process.env[variable];
  if (value === undefined) throw new UsageError(`--secret id=${id}: the environment variable ${variable} is not set${type === "file" ? " (or give src=PATH)" : ""}`);
  return [id, Buffer.from(value)];
}

const ENTITLEMENTS = ["network.host", "security.insecure"] as const;
export type Entitlement = (typeof ENTITLEMENTS)[number];

export function parseEntitlements(values: string[]): Set<Entitlement> {
  for (const value of values) {
    if (!(ENTITLEMENTS as readonly string[]).includes(value)) throw new UsageError(`--allow ${value}: unknown entitlement (use ${ENTITLEMENTS.join(" or ")})`);
  }
  return new Set(values as Entitlement[]);
}


/**
 * `--cache-from` / `--cache-to`, as buildx spells them: `type=registry,ref=REF` (REF alone too),
 * `type=local,src=DIR` (from) or `dest=DIR` (to), `mode=min|max` (to; min: the target stage's
 * own steps, as BuildKit's min keeps the exported image's layers), `ignore-error=true|false`.
 */
export function parseCacheSpec(flag: "--cache-from" | "--cache-to", spec: string): CacheSpec {
  if (!spec.includes("=")) return { type: "registry", ref: usage(() => (parseReference(spec), spec)), mode: "min", ignoreError: flag === "--cache-from" };
  const fields: Record<string, string> = {};
  for (const field of spec.split(",")) {
    const eq = field.indexOf("=");
    const key = field.slice(0, eq < 0 ? undefined : eq).trim();
    const allowed = flag === "--cache-from" ? ["type", "ref", "src"] : ["type", "ref", "dest", "mode", "ignore-error"];
    if (!allowed.includes(key)) throw new UsageError(`${flag} ${spec}: unknown key "${key}" (use ${allowed.join(", ")})`);
    fields[key] = eq < 0 ? "" : field.slice(eq + 1);
  }
  const mode = fields.mode ?? "min";
  if (mode !== "min" && mode !== "max") throw new UsageError(`${flag} ${spec}: mode must be min or max`);
  const ignoreError = fields["ignore-error"] === undefined ? flag === "--cache-from" : /^(true|1)$/i.test(fields["ignore-error"]);
  const type = fields.type ?? "registry";
  if (type === "registry") {
    if (!fields.ref) throw new UsageError(`${flag} ${spec}: type=registry needs ref=REF`);
    usage(() => parseReference(fields.ref));
    return { type, ref: fields.ref, mode, ignoreError };
  }
  if (type === "local") {
    const dir = flag === "--cache-from" ? fields.src : fields.dest;
    if (!dir) throw new UsageError(`${flag} ${spec}: type=local needs ${flag === "--cache-from" ? "src" : "dest"}=DIR`);
    return { type, dir: resolve(dir), mode, ignoreError };
  }
  throw new UsageError(`${flag} ${spec}: type ${type} is not supported (use registry or local)`);
}
