/**
 * What a build attests, from the flags as buildx spells them: `--provenance true|false|min|max|
 * mode=min|mode=max`, `--sbom true|false`, `--attest type=provenance,mode=max`, `--attest
 * type=sbom`, `…,disabled=true`. Without any of them a build attests nothing (and so writes
 * exactly what it wrote before these flags existed).
 */
import { UserError } from "../errors.ts";

export type ProvenanceMode = "min" | "max";

export interface AttestOptions {
  provenance?: ProvenanceMode;
  sbom: boolean;
}

export class AttestOptionError extends UserError {}

/** `k=v,k=v` (a bare word is its own key with an empty value). */
function fieldsOf(spec: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const part of spec.split(",")) {
    const eq = part.indexOf("=");
    fields.set((eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase(), eq < 0 ? "" : part.slice(eq + 1).trim());
  }
  return fields;
}

function bool(flag: string, value: string): boolean {
  if (/^(true|1)$/i.test(value)) return true;
  if (/^(false|0)$/i.test(value)) return false;
  throw new AttestOptionError(`${flag}: "${value}" is not true or false`);
}

/** One provenance spec; undefined when it turns provenance off. */
function provenanceSpec(flag: string, spec: string): ProvenanceMode | undefined {
  const lone = spec.trim().toLowerCase();
  if (lone === "min" || lone === "max") return lone;
  if (!lone.includes("=")) return bool(flag, lone) ? "min" : undefined;
  let mode: ProvenanceMode = "min";
  for (const [key, value] of fieldsOf(spec)) {
    if (key === "type") continue;
    if (key === "disabled") {
      if (bool(`${flag} disabled`, value)) return undefined;
    } else if (key === "mode") {
      if (value !== "min" && value !== "max") throw new AttestOptionError(`${flag} ${spec}: mode must be min or max`);
      mode = value;
    } else throw new AttestOptionError(`${flag} ${spec}: unknown option "${key}" (MemoBuild reads mode= and disabled=)`);
  }
  return mode;
}

/** One SBOM spec: on or off. MemoBuild reads the image itself; it runs no generator image. */
function sbomSpec(flag: string, spec: string): boolean {
  if (!spec.includes("=")) return bool(flag, spec.trim());
  let on = true;
  for (const [key, value] of fieldsOf(spec)) {
    if (key === "type") continue;
    if (key === "disabled") on = !bool(`${flag} disabled`, value);
    else if (key === "generator") throw new AttestOptionError(`${flag} ${spec}: MemoBuild writes the SBOM itself from the image's package data; it runs no generator image`);
    else throw new AttestOptionError(`${flag} ${spec}: unknown option "${key}" (MemoBuild reads disabled=)`);
  }
  return on;
}

/** The flags, in the order given: a later flag wins over an earlier one for the same kind. */
export function attestOptions(flags: { provenance?: string[]; sbom?: string[]; attest?: string[] }): AttestOptions {
  const options: AttestOptions = { sbom: false };
  for (const spec of flags.provenance ?? []) options.provenance = provenanceSpec("--provenance", spec);
  for (const spec of flags.sbom ?? []) options.sbom = sbomSpec("--sbom", spec);
  for (const spec of flags.attest ?? []) {
    const type = fieldsOf(spec).get("type");
    if (type === "provenance") options.provenance = provenanceSpec("--attest", spec);
    else if (type === "sbom") options.sbom = sbomSpec("--attest", spec);
    else throw new AttestOptionError(`--attest ${spec}: type must be provenance or sbom`);
  }
  return options;
}

export const attestsAnything = (options: AttestOptions) => options.provenance !== undefined || options.sbom;
