/**
 * `--output` as buildx reads it: `type=TYPE,KEY=VALUE,...`, or the shorthands `-o DIR` (the file
 * system into a directory) and `-o -` (the file system as a tar on stdout). `dest=-` writes an
 * archive to stdout. Every type says which keys it takes; anything else is an error that lists
 * what is supported.
 */
import { UserError } from "../errors.ts";

export type Compression = "gzip" | "uncompressed";

/** `dest=-`: standard output. */
export const STDOUT = "-";

export type OutputSpec =
  /** Push to a registry: the `name=` names, else every -t name. */
  | { type: "registry"; names: string[] }
  /** `type=image` without push: the names are given to the image in the local store. */
  | { type: "image"; names: string[] }
  /** An OCI layout directory; with dest=- an OCI archive on stdout. */
  | { type: "oci"; dest: string; compression: Compression; names: string[] }
  | { type: "oci-archive"; dest: string; compression: Compression; names: string[] }
  | { type: "docker-archive"; dest: string; names: string[] }
  /** `type=docker` without dest: loaded into the Docker Engine, as --load. */
  | { type: "docker"; names: string[] }
  /** The file system itself (filesystem-export.ts): a directory, or one tar. */
  | { type: "local"; dest: string }
  | { type: "tar"; dest: string };

export class OutputError extends UserError {}

/** The keys each type takes, as buildx names them. */
const KEYS: Record<string, string[]> = {
  oci: ["dest", "compression", "name"],
  "oci-archive": ["dest", "compression", "name"],
  docker: ["dest", "name"],
  "docker-archive": ["dest", "name"],
  image: ["name", "push"],
  registry: ["name"],
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
      return { type, names };
    case "image":
      return parseBoolean(spec, fields.get("push")) ? { type: "registry", names } : { type, names };
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
      return { type: type as "oci" | "oci-archive", dest: required(spec, dest), compression: parseCompression(spec, fields.get("compression")), names };
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

function parseCompression(spec: string, value: string | undefined): Compression {
  const compression = value ?? "gzip";
  if (compression !== "gzip" && compression !== "uncompressed") throw new OutputError(`--output ${spec}: compression must be gzip or uncompressed`);
  return compression;
}

function parseBoolean(spec: string, value: string | undefined): boolean {
  if (value === undefined || value === "false") return false;
  if (value === "true" || value === "") return true;
  throw new OutputError(`--output ${spec}: push must be true or false`);
}

/** Whether an output writes to stdout (only one may; nothing else may print there then). */
export function writesToStdout(output: OutputSpec): boolean {
  return "dest" in output && output.dest === STDOUT;
}
