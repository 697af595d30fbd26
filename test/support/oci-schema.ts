/**
 * Validates JSON against the OCI image-spec schemas in schema/oci (draft-04; opencontainers/
 * image-spec's, as schema/oci/SOURCE records). Their relative $refs resolve against whatever
 * `id` encloses them (…/schema/, …/schema/image/, …/schema/descriptor/…), so every file is
 * registered under every base an `id` in the set implies.
 */
import Ajv from "ajv-draft-04";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** The project's copy, so that checking its own output needs nothing from outside the repository. */
export const OCI_SCHEMA_DIR = join(import.meta.dir, "../../schema/oci");

let ajv: Ajv | undefined;

function load(): Ajv {
  const instance = new Ajv({ strict: false, allErrors: true, logger: false });
  instance.addFormat("uri", /^[a-z][a-z0-9+.-]*:/i);
  instance.addFormat("date-time", /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/);
  const files = readdirSync(OCI_SCHEMA_DIR).filter((f) => f.endsWith(".json"));
  const schemas = new Map(files.map((file) => [file, JSON.parse(readFileSync(join(OCI_SCHEMA_DIR, file), "utf8"))]));
  const bases = new Set<string>();
  const collect = (node: unknown) => {
    if (!node || typeof node !== "object") return;
    const id = (node as { id?: unknown }).id;
    if (typeof id === "string" && id.startsWith("http")) bases.add(id.slice(0, id.lastIndexOf("/") + 1));
    for (const value of Object.values(node)) collect(value);
  };
  schemas.forEach(collect);
  const taken = new Set<string>();
  for (const [, schema] of schemas) if (schema.id) (instance.addSchema(schema), taken.add(schema.id));
  for (const [file, schema] of schemas) {
    const { id: _id, ...withoutId } = schema;
    for (const base of bases) {
      if (!taken.has(base + file)) instance.addSchema({ ...withoutId, id: base + file });
    }
  }
  return instance;
}

export type OciKind = "config" | "manifest" | "index" | "layout";
const IDS: Record<OciKind, string> = {
  config: "https://opencontainers.org/schema/image/config",
  manifest: "https://opencontainers.org/schema/image/manifest",
  index: "https://opencontainers.org/schema/image/index",
  layout: "https://opencontainers.org/schema/image/layout",
};

/** The schema errors for `value` (empty when it is valid). */
export function ociSchemaErrors(kind: OciKind, value: unknown): string[] {
  ajv ??= load();
  const validate = ajv.getSchema(IDS[kind]);
  if (!validate) throw new Error(`schema ${IDS[kind]} not loaded`);
  return validate(value) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message}`);
}
