/**
 * Validates provenance against SLSA v1 (schema/slsa, a transcription of SLSA's own CUE) and SBOMs
 * against SPDX 2.3's JSON schema (schema/spdx, spdx-spec's, unchanged). See their SOURCE files.
 */
import Ajv from "ajv";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const SCHEMA_DIR = join(import.meta.dir, "../../schema");

let ajv: Ajv | undefined;

function load(): Ajv {
  const instance = new Ajv({ strict: false, allErrors: true, logger: false });
  instance.addFormat("uri", (text: string) => URL.canParse(text) && /^[a-z][a-z0-9+.-]*:/i.test(text));
  instance.addFormat("date-time", /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/);
  instance.addSchema(JSON.parse(readFileSync(join(SCHEMA_DIR, "slsa/provenance-v1.schema.json"), "utf8")), "slsa");
  instance.addSchema(JSON.parse(readFileSync(join(SCHEMA_DIR, "spdx/spdx-schema-2.3.json"), "utf8")), "spdx");
  return instance;
}

/** The schema errors for `value` (empty when it is valid). */
export function attestSchemaErrors(kind: "slsa" | "spdx", value: unknown): string[] {
  ajv ??= load();
  const validate = ajv.getSchema(kind)!;
  return validate(value) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message}`);
}
