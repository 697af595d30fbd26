/**
 * What a build attests, from the flags as buildx spells them: `--provenance true|false|min|max|
 * mode=min|mode=max[,builder-id=URI]`, `--sbom true|false`, `--attest type=provenance,mode=max`,
 * `--attest type=sbom`, `…,disabled=true`. Without any of them a build attests nothing (and so writes
 * exactly what it wrote before these flags existed).
 */
import { UserError } from "../errors.ts";

export type ProvenanceMode = "min" | "max";

export interface AttestOptions {
  provenance?: ProvenanceMode;
  /** `builder-id=URI`, as buildx takes it: who the provenance says built the image. */
  builderId?: string;
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

/** One provenance spec; mode undefined when it turns provenance off. */
function provenanceSpec(flag: string, spec: string): { mode?: ProvenanceMode; builderId?: string } {
  const lone = spec.trim().toLowerCase();
  if (lone === "min" || lone === "max") return { mode: lone };
  if (!lone.includes("=")) return { mode: bool(flag, lone) ? "min" : undefined };
  const parsed: { mode?: ProvenanceMode; builderId?: string } = { mode: "min" };
  for (const [key, value] of fieldsOf(spec)) {
    if (key === "type") continue;
    if (key === "disabled") {
      if (bool(`${flag} disabled`, value)) return {};
    } else if (key === "mode") {
      if (value !== "min" && value !== "max") throw new AttestOptionError(`${flag} ${spec}: mode must be min or max`);
      parsed.mode = value;
    } else if (key === "builder-id") {
      if (!URL.canParse(value)) throw new AttestOptionError(`${flag} ${spec}: builder-id must be a URI`);
      parsed.builderId = value;
    } else if (key === "version") {
      if (value !== "v1") throw new AttestOptionError(`${flag} ${spec}: MemoBuild writes SLSA provenance v1 only (version=v1)`);
    } else throw new AttestOptionError(`${flag} ${spec}: unknown option "${key}" (MemoBuild reads mode=, builder-id=, version=v1 and disabled=)`);
  }
  return parsed;
}

function setProvenance(options: AttestOptions, parsed: { mode?: ProvenanceMode; builderId?: string }) {
  options.provenance = parsed.mode;
  if (parsed.builderId) options.builderId = parsed.builderId;
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
  for (const spec of flags.provenance ?? []) setProvenance(options, provenanceSpec("--provenance", spec));
  for (const spec of flags.sbom ?? []) options.sbom = sbomSpec("--sbom", spec);
  for (const spec of flags.attest ?? []) {
    const type = fieldsOf(spec).get("type");
    if (type === "provenance") setProvenance(options, provenanceSpec("--attest", spec));
    else if (type === "sbom") options.sbom = sbomSpec("--attest", spec);
    else throw new AttestOptionError(`--attest ${spec}: type must be provenance or sbom`);
  }
  return options;
}

export const attestsAnything = (options: AttestOptions) => options.provenance !== undefined || options.sbom;
