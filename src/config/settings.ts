/**
 * Every option that makes sense in a file, written once: its key, type, environment variable,
 * whether a project file may set it, and its default. Values come from, in order: flags, the
 * environment, the project file (`memobuild.json`, found from the working directory up to the
 * repository's root), the user file (`$XDG_CONFIG_HOME/memobuild/config.json`), defaults.
 *
 * A project file arrives with the repository, so in CI it is as untrusted as the Dockerfile: it
 * may not hold credentials, choose where the cache lives, or point at keys on the host. Those
 * keys are refused there with an error that says where they belong.
 */
import { existsSync, lstatSync, realpathSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { UserError } from "../errors.ts";
import { HostFileError, isInside, kernelPath, readRegularFile } from "../util/host-file.ts";
import { parseJsonText } from "../util/json-text.ts";

export type Source = "flag" | "env" | "project" | "user" | "default";

type Kind =
  | { type: "string"; path?: boolean; secret?: boolean }
  | { type: "strings" }
  | { type: "map" }
  | { type: "integer"; minimum: number }
  | { type: "boolean" }
  | { type: "enum"; values: readonly string[] };

interface Setting {
  kind: Kind;
  description: string;
  env?: string;
  /** May a project file (committed with the code, so untrusted in CI) set it? */
  project: boolean;
  default?: unknown;
}

export const SETTINGS = {
  dockerfile: { kind: { type: "string", path: true }, project: true, description: "the Dockerfile (default: CONTEXT/Dockerfile); in a project file, inside the project's directory" },
  context: { kind: { type: "string", path: true }, project: true, description: "the build context directory (default: the project file's directory, else the working directory); in a project file, inside the project's directory", default: "." },
  target: { kind: { type: "string" }, project: true, description: "the stage to build (default: the last)" },
  tags: { kind: { type: "strings" }, project: true, description: "names for the built image (-t); a project file may not retag an image it did not name", default: [] },
  buildArgs: { kind: { type: "map" }, project: true, description: "build-time variables (--build-arg); flags override single names", default: {} },
  progress: { kind: { type: "enum", values: ["auto", "tty", "plain", "json", "quiet"] }, env: "MEMOBUILD_PROGRESS", project: true, description: "how a build reports progress: auto is tty on a terminal, else plain", default: "auto" },
  jobs: { kind: { type: "integer", minimum: 1 }, env: "MEMOBUILD_JOBS", project: true, description: "how many independent stages may build at once (default: the number of CPUs)" },
  cacheDir: { kind: { type: "string", path: true }, env: "MEMOBUILD_CACHE_DIR", project: false, description: "the local cache directory (default: $XDG_CACHE_HOME/memobuild or ~/.cache/memobuild)" },
  signKey: { kind: { type: "string", path: true }, env: "MEMOBUILD_SIGN_KEY", project: false, description: "an ECDSA P-256 private key (PEM) that signs built images the way cosign does (--sign-key)" },
  "remote.url": { kind: { type: "string" }, env: "MEMOBUILD_REMOTE_URL", project: true, description: "the shared cache server (memobuild serve)" },
  "remote.token": { kind: { type: "string", secret: true }, env: "MEMOBUILD_TOKEN", project: false, description: "the token for the remote cache" },
  "remote.required": { kind: { type: "boolean" }, env: "MEMOBUILD_REMOTE_REQUIRED", project: true, description: "fail when the remote cache does not answer, instead of going local-only", default: false },
  "remote.upload": { kind: { type: "enum", values: ["wait", "background", "off"] }, env: "MEMOBUILD_REMOTE_UPLOAD", project: true, description: "when results are uploaded", default: "wait" },
  "remote.report": { kind: { type: "enum", values: ["on", "off"] }, env: "MEMOBUILD_REMOTE_REPORT", project: true, description: "report builds to the remote cache's build hub", default: "on" },
  "remote.cacheMounts": { kind: { type: "enum", values: ["on", "read", "off"] }, env: "MEMOBUILD_REMOTE_CACHE_MOUNTS", project: true, description: "share RUN --mount=type=cache directories through the remote: on (fetch, and publish after a build that succeeded), read (fetch only), off", default: "read" },
  "remote.signKey": { kind: { type: "string", path: true }, env: "MEMOBUILD_REMOTE_SIGN_KEY", project: false, description: "an Ed25519 private key file that signs uploaded results" },
  "remote.trust": { kind: { type: "strings" }, env: "MEMOBUILD_REMOTE_TRUST", project: true, description: "public keys whose signed results are used (none: any result); a project file only narrows the user's list", default: [] },
  "remote.cacert": { kind: { type: "string", path: true }, env: "MEMOBUILD_REMOTE_CACERT", project: false, description: "the CA (PEM) that signed the server's certificate" },
  "remote.cert": { kind: { type: "string", path: true }, env: "MEMOBUILD_REMOTE_CERT", project: false, description: "a client certificate (PEM) for mutual TLS" },
  "remote.key": { kind: { type: "string", path: true }, env: "MEMOBUILD_REMOTE_KEY", project: false, description: "the client certificate's key (PEM)" },
} satisfies Record<string, Setting>;

export type SettingKey = keyof typeof SETTINGS;
export const SETTING_KEYS = Object.keys(SETTINGS) as SettingKey[];

export interface Resolved {
  value: unknown;
  source: Source;
  /** The file or environment variable the value came from. */
  origin?: string;
  /** The values of the layers below, which this one overrides. */
  lower?: Resolved[];
}
export type Settings = Record<SettingKey, Resolved>;

export const PROJECT_FILE = "memobuild.json";
const MAX_CONFIG_BYTES = 1024 * 1024;

export function userConfigFile(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CONFIG_HOME || join(homedir(), ".config"), "memobuild", "config.json");
}

/**
 * The nearest memobuild.json from `dir` up, stopping at the repository's root (a .git entry).
 * Found by the entry itself: a link there (even a dangling one) is found, and then refused.
 */
export function findProjectFile(dir: string): string | undefined {
  for (let current = resolve(dir); ; current = dirname(current)) {
    if (lstatSync(join(current, PROJECT_FILE), { throwIfNoEntry: false })) return join(current, PROJECT_FILE);
    if (existsSync(join(current, ".git")) || dirname(current) === current) return undefined;
  }
}

type Values = Partial<Record<SettingKey, unknown>>;

/** Reads and checks one config file; every mistake names the file, the key and what is expected. */
export function readConfigFile(file: string, layer: "project" | "user"): Values {
  const parsed = parseJsonText(readConfigText(file, layer), file);
  if (!isObject(parsed)) throw new UserError(`${file}: expected a JSON object`);
  const flat: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(parsed)) {
    if (key === "$schema") continue;
    if (key === "remote") {
      if (!isObject(value)) throw new UserError(`${file}: remote: expected an object`);
      for (const [inner, v] of Object.entries(value)) flat[`remote.${inner}`] = v;
    } else flat[key] = value;
  }
  const values: Values = {};
  for (const [key, value] of Object.entries(flat)) {
    if (!(key in SETTINGS)) throw new UserError(`${file}: unknown key "${key}" (known: ${SETTING_KEYS.join(", ")})`);
    const setting: Setting = SETTINGS[key as SettingKey];
    if (layer === "project" && !setting.project) {
      throw new UserError(`${file}: "${key}" cannot be set in a project file, which comes with the repository; set it in ${userConfigFile()}${setting.env ? ` or $${setting.env}` : ""}`);
    }
    const problem = check(setting.kind, value);
    if (problem) throw new UserError(`${file}: ${key}: expected ${problem}`);
    values[key as SettingKey] = setting.kind.type === "string" && setting.kind.path ? projectPath(file, layer, key, value as string) : value;
  }
  return values;
}

/**
 * A path a config file names, relative to the file. From a project file it must stay inside
 * the project's directory (the one holding the file) once every symlink is resolved as the
 * kernel would: `{"context": "/home/ci/.docker"}` or a committed link `ctx -> /etc` would put
 * host files into the image, and a Dockerfile outside would be printed in a parse error.
 * (buildx bake asks for `--allow fs.read=PATH` for that; here, a path outside is given on the
 * command line, which the user types.)
 */
function projectPath(file: string, layer: "project" | "user", key: string, value: string): string {
  const path = resolve(dirname(file), value);
  if (layer === "user") return path;
  const project = realpathSync(dirname(file));
  const real = kernelPath(path);
  if (!isInside(real, project)) {
    const how = real === path ? "" : ` (it resolves to ${real})`;
    throw new UserError(`${file}: ${key}: ${value} is outside the project's directory ${project}${how}; a project file comes with the repository and may only name paths inside it. Give a path outside on the command line instead (${key === "context" ? "memobuild build DIR" : "-f FILE"})`);
  }
  return path;
}

/**
 * A config file's text. A project file comes with the repository: it must be the file itself
 * (a link could lead to /dev/zero, a FIFO or a token file), and no config file is read past
 * MAX_CONFIG_BYTES, whatever its size claims. The user's own file may be a link (dotfile managers
 * make them). Parse errors name the line and column, never the text (parseJsonText).
 */
function readConfigText(file: string, layer: "project" | "user"): string {
  const follow = layer === "user";
  const limit = MAX_CONFIG_BYTES;
  try {
    return readRegularFile(file, { limit, follow }).toString("utf8");
  } catch (error) {
    if (!(error instanceof HostFileError)) throw error;
    const why = error.message.startsWith(`${file} is a symbolic link`) ? "; a project file must be the file itself, as it comes with the repository" : "";
    throw new UserError(`${error.message.replace(`is larger than ${limit} bytes`, `is larger than ${limit} bytes (a config file is a few lines)`)}${why}`);
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** What is wrong with a value, as "expected …"; undefined when it fits. */
function check(kind: Kind, value: unknown): string | undefined {
  switch (kind.type) {
    case "string":
      return typeof value === "string" && value !== "" ? undefined : "a non-empty string";
    case "strings":
      return Array.isArray(value) && value.every((v) => typeof v === "string") ? undefined : "a list of strings";
    case "map":
      return isObject(value) && Object.values(value).every((v) => typeof v === "string") ? undefined : 'an object of strings, e.g. { "NAME": "value" }';
    case "integer":
      return Number.isInteger(value) && (value as number) >= kind.minimum ? undefined : `a whole number of at least ${kind.minimum}`;
    case "boolean":
      return typeof value === "boolean" ? undefined : "true or false";
    case "enum":
      return kind.values.includes(value as string) ? undefined : `one of ${kind.values.join(", ")}`;
  }
}

/** An environment variable's value as the setting's type (lists: comma-separated). */
function fromEnv(key: SettingKey, text: string): unknown {
  const setting: Setting = SETTINGS[key];
  const kind = setting.kind;
  const value =
    kind.type === "strings" ? text.split(",").map((s) => s.trim()).filter(Boolean)
    : kind.type === "integer" ? Number(text)
    : kind.type === "boolean" ? (text === "1" || text === "true" ? true : text === "0" || text === "false" ? false : text)
    : kind.type === "string" && kind.path ? resolve(text)
    : text;
  const problem = check(kind, value);
  if (problem) throw new UserError(`$${setting.env}: expected ${problem}, not "${text}"`);
  return value;
}

export interface Layers {
  env: NodeJS.ProcessEnv;
  project?: { file: string; values: Values };
  user?: { file: string; values: Values };
}

/** The user file, when there is one. */
export function userLayer(env: NodeJS.ProcessEnv = process.env): Layers["user"] {
  const file = userConfigFile(env);
  return existsSync(file) ? { file, values: readConfigFile(file, "user") } : undefined;
}

/** Reads the environment, the project file (from `cwd` up) and the user file. */
export function loadLayers(cwd: string = process.cwd(), env: NodeJS.ProcessEnv = process.env): Layers {
  const projectFile = findProjectFile(cwd);
  return {
    env,
    project: projectFile ? { file: projectFile, values: readConfigFile(projectFile, "project") } : undefined,
    user: userLayer(env),
  };
}

/** Each setting's value and where it came from. Flags are given already parsed (undefined: not given). */
export function resolveSettings(flags: Values, layers: Layers): Settings {
  const settings = {} as Settings;
  for (const key of SETTING_KEYS) {
    const setting: Setting = SETTINGS[key];
    const envText = setting.env ? layers.env[setting.env] : undefined;
    const given = (value: unknown) => value !== undefined && !(Array.isArray(value) && value.length === 0);
    const candidates: Resolved[] = [];
    if (given(flags[key])) candidates.push({ value: flags[key], source: "flag" });
    if (envText !== undefined && envText !== "") candidates.push({ value: fromEnv(key, envText), source: "env", origin: `$${setting.env}` });
    if (layers.project && given(layers.project.values[key])) candidates.push({ value: layers.project.values[key], source: "project", origin: layers.project.file });
    if (layers.user && given(layers.user.values[key])) candidates.push({ value: layers.user.values[key], source: "user", origin: layers.user.file });
    const [first, ...lower] = candidates;
    settings[key] = first ? { ...first, ...(lower.length ? { lower } : {}) } : { value: setting.default, source: "default" };
  }
  if (settings["remote.trust"].source === "project") settings["remote.trust"] = narrowedTrust(settings["remote.trust"], layers);
  // In a project, the context is the project's directory unless something says otherwise.
  if (settings.context.source === "default" && layers.project) settings.context = { value: dirname(layers.project.file), source: "project", origin: layers.project.file };
  // Build args merge name by name: a file gives defaults, a flag overrides one name.
  const fileArgs = { ...(layers.user?.values.buildArgs as object), ...(layers.project?.values.buildArgs as object) };
  if (settings.buildArgs.source === "flag") settings.buildArgs.value = { ...fileArgs, ...(flags.buildArgs as object) };
  return settings;
}

/**
 * A project file's trust list may only narrow the user's: with no list of the user's (every
 * result is used) it applies as it is; otherwise only the keys on both lists are trusted, and
 * none in common is refused (an empty list would mean "trust every result", the widest). A
 * pull request that adds its own key to memobuild.json so gains nothing.
 */
function narrowedTrust(project: Resolved, layers: Layers): Resolved {
  const user = (layers.user?.values["remote.trust"] as string[] | undefined) ?? [];
  if (user.length === 0) return project;
  const both = (project.value as string[]).filter((key) => user.includes(key));
  if (both.length === 0) {
    throw new UserError(`${project.origin}: remote.trust: none of its keys is on your own trust list (${layers.user!.file}); a project file can only narrow that list, never replace it`);
  }
  return { ...project, value: both };
}

/** The value of a setting, typed by the caller. */
export function value<T>(settings: Settings, key: SettingKey): T {
  return settings[key].value as T;
}

/** The JSON Schema of both config files (editors validate and complete with it). */
export function configSchema(): object {
  const property = (key: SettingKey) => {
    const setting: Setting = SETTINGS[key];
    const kind = setting.kind;
    const description = setting.description + (setting.project ? "" : " (user config only: a project file may not set it)");
    const type =
      kind.type === "string" ? { type: "string", minLength: 1 }
      : kind.type === "strings" ? { type: "array", items: { type: "string" } }
      : kind.type === "map" ? { type: "object", additionalProperties: { type: "string" } }
      : kind.type === "integer" ? { type: "integer", minimum: kind.minimum }
      : kind.type === "boolean" ? { type: "boolean" }
      : { enum: [...kind.values] };
    return { description, ...type, ...(setting.default !== undefined ? { default: setting.default } : {}) };
  };
  const top = SETTING_KEYS.filter((k) => !k.startsWith("remote."));
  const remote = SETTING_KEYS.filter((k) => k.startsWith("remote."));
  return {
    $schema: "http://json-schema.org/draft-07/schema#",
    title: "MemoBuild configuration (memobuild.json in a project, or the user's config.json)",
    type: "object",
    additionalProperties: false,
    properties: {
      $schema: { type: "string" },
      ...Object.fromEntries(top.map((k) => [k, property(k)])),
      remote: {
        type: "object",
        additionalProperties: false,
        properties: Object.fromEntries(remote.map((k) => [k.slice("remote.".length), property(k)])),
      },
    },
  };
}

/** A value as `memobuild config` prints it: secrets masked. */
export function displayValue(key: SettingKey, value: unknown): string {
  const kind: Kind = SETTINGS[key].kind;
  if (value === undefined) return "-";
  if (kind.type === "string" && kind.secret) return `(set, ${String(value).length} characters)`;
  if (kind.type === "strings") return (value as string[]).length ? (value as string[]).join(", ") : "-";
  if (kind.type === "map") {
    const entries = Object.entries(value as Record<string, string>);
    return entries.length ? entries.map(([k, v]) => `${k}=${v}`).join(" ") : "-";
  }
  return String(value);
}
