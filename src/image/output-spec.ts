/**
 * `--output` as buildx reads it: `type=TYPE,KEY=VALUE,...`, or the shorthands `-o DIR` (the file
 * system into a directory) and `-o -` (the file system as a tar on stdout). `dest=-` writes an
 * archive to stdout. Every type says which keys it takes; anything else is an error that lists
 * what is supported.
 */
import { UserError } from "../errors.ts";

export type Compression = "gzip" | "zstd" | "uncompressed";

/** How layers are compressed on export: `compression=`, `compression-level=`, `force-compression=` (buildx's keys). */
export interface LayerCompression {
  compression: Compression;
  /** gzip 0-9 (default 6), zstd 1-22 (default 3). */
  level?: number;
  /** Recompress layers already compressed another way (pulled or imported bases). */
  force?: boolean;
}

/** `dest=-`: standard output. */
export const STDOUT = "-";

export type OutputSpec =
  /** Push to a registry: the `name=` names, else every -t name. */
  | ({ type: "registry"; names: string[] } & Partial<LayerCompression>)
  /** `type=image` without push: the names are given to the image in the local store. */
  | { type: "image"; names: string[] }
  /** An OCI layout directory; with dest=- an OCI archive on stdout. */
  | ({ type: "oci"; dest: string; names: string[] } & LayerCompression)
  | ({ type: "oci-archive"; dest: string; names: string[] } & LayerCompression)
  | { type: "docker-archive"; dest: string; names: string[] }
  /** `type=docker` without dest: loaded into the Docker Engine, as --load. */
  | { type: "docker"; names: string[] }
  /** The file system itself (filesystem-export.ts): a directory, or one tar. */
  | { type: "local"; dest: string }
  | { type: "tar"; dest: string };

export class OutputError extends UserError {}

/** The keys each type takes, as buildx names them. */
const KEYS: Record<string, string[]> = {
  oci: ["dest", "compression", "compression-level", "force-compression", "name"],
  "oci-archive": ["dest", "compression", "compression-level", "force-compression", "name"],
  docker: ["dest", "name"],
  "docker-archive": ["dest", "name"],
  image: ["name", "push", "compression", "compression-level", "force-compression"],
  registry: ["name", "compression", "compression-level", "force-compression"],
  local: ["dest"],
  tar: ["dest"],
};

const SUPPORTED = `${Object.keys(KEYS).join(", ")} (and the shorthands -o DIR for type=local, -o - for a tar of the file system on stdout)`;

export function parseOutputSpec(spec: string, resolvePath: (path: string) => string): OutputSpec {
  if (spec === STDOUT) return { type: "tar", dest: STDOUT };
  if (!spec.includes("=")) return { type: "local", dest: resolvePath(spec) };
  const fields = parseFields(spec);
  const type = fields.get("type") ?? "";
  const keys = KEYS[type];
  if (!keys) throw new OutputError(`--output type=${type || "?"} is not supported: use ${SUPPORTED}`);
  for (const key of fields.keys()) {
    if (key !== "type" && !keys.includes(key)) throw new OutputError(`--output ${spec}: type=${type} takes no "${key}" (it takes ${keys.join(", ")})`);
  }
  const names = (fields.get("name") ?? "").split(/[,\s]+/).filter(Boolean);
  const raw = fields.get("dest");
  const dest = raw === undefined || raw === STDOUT ? raw : resolvePath(raw);
  switch (type) {
    case "registry":
      return { type, names, ...layerCompression(spec, fields) };
    case "image":
      return parseBoolean(spec, fields.get("push")) ? { type: "registry", names, ...layerCompression(spec, fields) } : { type, names };
    case "docker":
      return dest === undefined ? { type, names } : { type: "docker-archive", dest, names };
    case "local":
      // buildx: a local export to stdout is the tar of the file system.
      return required(spec, dest) === STDOUT ? { type: "tar", dest: STDOUT } : { type, dest: dest! };
    case "tar":
      return { type, dest: required(spec, dest) };
    case "docker-archive":
      return { type, dest: required(spec, dest), names };
    default:
      return { type: type as "oci" | "oci-archive", dest: required(spec, dest), names, ...layerCompression(spec, fields) };
  }
}

/** `k=v,k=v`; a `name=` value may itself hold commas when quoted (`"name=a,b"` or `name="a,b"`, as buildx's CSV reads it). */
function parseFields(spec: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const quoted of spec.match(/(?:[^,"]|"[^"]*")+/g) ?? []) {
    const part = quoted.replace(/^"(.*)"$/, "$1"); // a CSV field quoted whole: "name=a,b"
    const eq = part.indexOf("=");
    const key = (eq < 0 ? part : part.slice(0, eq)).trim();
    const value = eq < 0 ? "" : part.slice(eq + 1).replace(/^"(.*)"$/, "$1");
    if (fields.has(key)) throw new OutputError(`--output ${spec}: "${key}" is given twice`);
    fields.set(key, value);
  }
  return fields;
}

function required(spec: string, dest: string | undefined): string {
  if (!dest) throw new OutputError(`--output ${spec}: dest=PATH is required (dest=- writes to stdout)`);
  return dest;
}

function layerCompression(spec: string, fields: Map<string, string>): LayerCompression {
  const compression = fields.get("compression") ?? "gzip";
  if (compression !== "gzip" && compression !== "zstd" && compression !== "uncompressed") throw new OutputError(`--output ${spec}: compression must be gzip, zstd or uncompressed`);
  const levelText = fields.get("compression-level");
  const [low, high] = compression === "zstd" ? [1, 22] : [0, 9];
  const level = levelText === undefined ? undefined : Number(levelText);
  if (level !== undefined && (!Number.isInteger(level) || level < low || level > high || compression === "uncompressed")) {
    throw new OutputError(`--output ${spec}: compression-level must be a whole number from ${low} to ${high} for ${compression}${compression === "uncompressed" ? " (uncompressed has none)" : ""}`);
  }
  const force = fields.has("force-compression") ? parseBoolean(spec, fields.get("force-compression"), "force-compression") : undefined;
  return { compression, ...(level !== undefined ? { level } : {}), ...(force ? { force } : {}) };
}

function parseBoolean(spec: string, value: string | undefined, key = "push"): boolean {
  if (value === undefined || value === "false") return false;
  if (value === "true" || value === "") return true;
  throw new OutputError(`--output ${spec}: ${key} must be true or false`);
}

/** Whether an output writes to stdout (only one may; nothing else may print there then). */
export function writesToStdout(output: OutputSpec): boolean {
  return "dest" in output && output.dest === STDOUT;
}
