/**
 * `RUN --mount=type=…,target=…` specifications, parsed and validated (BuildKit's option names
 * and defaults). The spec is comma-separated with CSV quoting, as BuildKit reads it.
 */
import { posix } from "node:path";
import { parseSize } from "../util/sizes.ts";

export type Mount =
  | { type: "bind"; target: string; source: string; from?: string; readonly: boolean }
  | {
      type: "cache";
      target: string;
      id: string;
      sharing: "shared" | "private" | "locked";
      source?: string;
      from?: string;
      readonly: boolean;
      mode: number;
      uid: number;
      gid: number;
    }
  | { type: "tmpfs"; target: string; sizeBytes?: number }
  | { type: "secret"; id: string; target?: string; env?: string; required: boolean; mode: number; uid: number; gid: number }
  /** target "" means BuildKit's /run/buildkit/ssh_agent.N (N counts the RUN's ssh mounts). */
  | { type: "ssh"; id: string; target: string; required: boolean; mode: number; uid: number; gid: number };

const KEYS: Record<Mount["type"], string[]> = {
  bind: ["type", "target", "source", "from", "readonly", "readwrite"],
  cache: ["type", "target", "source", "from", "readonly", "readwrite", "id", "sharing", "mode", "uid", "gid"],
  tmpfs: ["type", "target", "size"],
  secret: ["type", "target", "id", "env", "required", "mode", "uid", "gid"],
  ssh: ["type", "target", "id", "required", "mode", "uid", "gid"],
};

const ALIASES: Record<string, string> = {
  dst: "target",
  destination: "target",
  src: "source",
  ro: "readonly",
  rw: "readwrite",
};

/** Splits `a=b,"c=d,e"` on commas outside double quotes, dropping the quotes. */
function splitCsv(spec: string): string[] {
  const fields: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < spec.length; i++) {
    const ch = spec[i];
    if (ch === '"') {
      if (quoted && spec[i + 1] === '"') {
        field += '"';
        i++;
      } else quoted = !quoted;
    } else if (ch === "," && !quoted) {
      fields.push(field);
      field = "";
    } else field += ch;
  }
  if (quoted) throw new Error(`unterminated quote in "${spec}"`);
  fields.push(field);
  return fields;
}

function parseBool(key: string, value: string | undefined): boolean {
  if (value === undefined) return true;
  if (/^(true|1)$/i.test(value)) return true;
  if (/^(false|0)$/i.test(value)) return false;
  throw new Error(`invalid value for ${key}: ${value}`);
}

function parseNumber(key: string, value: string, radix: number): number {
  const pattern = radix === 8 ? /^[0-7]+$/ : /^\d+$/;
  if (!pattern.test(value)) throw new Error(`invalid value for ${key}: ${value}`);
  return parseInt(value, radix);
}


export function parseMount(spec: string): Mount {
  const options = new Map<string, string | undefined>();
  for (const field of splitCsv(spec)) {
    if (field.trim() === "") continue;
    const eq = field.indexOf("=");
    const rawKey = (eq < 0 ? field : field.slice(0, eq)).trim().toLowerCase();
    const key = ALIASES[rawKey] ?? rawKey;
    if (options.has(key)) throw new Error(`${rawKey} given twice`);
    options.set(key, eq < 0 ? undefined : field.slice(eq + 1));
  }
  const type = options.get("type") ?? "bind";
  if (!(type in KEYS)) throw new Error(`unknown mount type "${type}" (use bind, cache, tmpfs, secret or ssh)`);
  const allowed = KEYS[type as Mount["type"]];
  for (const key of options.keys()) {
    if (!allowed.includes(key)) throw new Error(`unknown option "${key}" for type=${type}`);
  }
  const target = options.get("target");
  const readonly = options.has("readwrite")
    ? !parseBool("readwrite", options.get("readwrite"))
    : options.has("readonly")
      ? parseBool("readonly", options.get("readonly"))
      : undefined;
  const number = (key: string, fallback: number, radix = 10) =>
    options.has(key) ? parseNumber(key, options.get(key) ?? "", radix) : fallback;

  switch (type) {
    // Without target= a mount lands on the working directory (dockerfile2llb joins "" to it).
    case "bind":
      return { type, target: target ?? "", source: options.get("source") ?? "", from: options.get("from"), readonly: readonly ?? true };
    case "cache": {
      const sharing = options.get("sharing") ?? "shared";
      if (sharing !== "shared" && sharing !== "private" && sharing !== "locked") {
        throw new Error(`invalid sharing "${sharing}" (use shared, private or locked)`);
      }
      return {
        type,
        target: target ?? "",
        // BuildKit's default id is the cleaned target ("." without one).
        id: options.get("id") || posix.normalize(target || "."),
        sharing,
        source: options.get("source"),
        from: options.get("from"),
        readonly: readonly ?? false,
        mode: number("mode", 0o755, 8),
        uid: number("uid", 0),
        gid: number("gid", 0),
      };
    }
    case "ssh":
      return {
        type,
        id: options.get("id") || "default",
        target: target ?? "",
        required: options.has("required") ? parseBool("required", options.get("required")) : false,
        mode: number("mode", 0o600, 8),
        uid: number("uid", 0),
        gid: number("gid", 0),
      };
    case "tmpfs": {
      const size = options.get("size");
      return { type, target: target ?? "", sizeBytes: size === undefined ? undefined : parseSize(size) };
    }
    default: {
      const env = options.get("env");
      const id = options.get("id") || (target ? target.split("/").filter(Boolean).pop() : undefined) || env;
      if (!id) throw new Error("type=secret needs id=ID (or a target or env to name it)");
      return {
        type: "secret",
        id,
        target: target ?? (env ? undefined : `/run/secrets/${id}`),
        env,
        required: options.has("required") ? parseBool("required", options.get("required")) : false,
        mode: number("mode", 0o400, 8),
        uid: number("uid", 0),
        gid: number("gid", 0),
      };
    }
  }
}

/** Options equal to their defaults are left out, so the text is short and still canonical. */
const DEFAULTS: Record<string, unknown> = { readonly: undefined, sharing: "shared", mode: undefined, uid: 0, gid: 0, required: false, source: "" };

/** The mount as text, for instruction text and cache keys: type first, defaults omitted. */
export function formatMount(mount: Mount): string {
  const fields: string[] = [];
  for (const [key, value] of Object.entries(mount)) {
    if (value === undefined || DEFAULTS[key] === value) continue;
    if (key === "readonly") {
      const defaultReadonly = mount.type === "bind";
      if (value !== defaultReadonly) fields.push(value ? "readonly" : "rw");
      continue;
    }
    if (key === "mode") {
      const defaultMode = mount.type === "secret" ? 0o400 : mount.type === "ssh" ? 0o600 : 0o755;
      if (value !== defaultMode) fields.push(`mode=0${(value as number).toString(8)}`);
      continue;
    }
    if (key === "id" && mount.type === "cache" && value === posix.normalize(mount.target || ".")) continue;
    if (key === "target" && mount.type === "secret" && value === `/run/secrets/${mount.id}`) continue;
    if (key === "id" && mount.type === "ssh" && value === "default") continue;
    if (key === "target" && value === "") continue;
    fields.push(`${key}=${String(value)}`);
  }
  return fields.join(",");
}
