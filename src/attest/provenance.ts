/**
 * SLSA v1 provenance of a MemoBuild build. The record it is made from is plain data gathered by
 * the CLI; nothing secret is in it by construction (secret values, --ssh sockets and tokens are
 * never fields of a BuildRecord), and `buildArgs` is all the user-given text it carries.
 */
import { PROVENANCE_TYPE, statement, type Statement, type Subject } from "./statement.ts";
import type { ProvenanceMode } from "./options.ts";

/** The buildType URI: what the fields of externalParameters and internalParameters mean (README). */
export const BUILD_TYPE = "https://memobuild.dev/buildtypes/dockerfile/v1";

export type StepOrigin = "executed" | "cached-local" | "cached-remote" | "skipped";

export interface StepRecord {
  id: string;
  instruction: string;
  key: string;
  status: StepOrigin;
  /** What the key was made of (mode=max), context file lists left out. */
  inputs?: unknown;
  /** The key that signed a reused remote result, when the cache said. */
  signer?: string;
  /** The worker that satisfied the step, for a build run with --builder. */
  worker?: string;
}

export interface Dependency {
  uri: string;
  digest: Record<string, string>;
  name?: string;
}

export interface BuildRecord {
  version: string;
  builderId: string;
  invocationId: string;
  startedOn: Date;
  finishedOn: Date;
  dockerfile: { path: string; sha256: string };
  /** BLAKE3 of the whole main context, as `COPY . /` would land it. */
  contextBlake3?: string;
  target?: string;
  buildArgs: Record<string, string>;
  platform: string;
  labels: Record<string, string>;
  /** SOURCE_DATE_EPOCH, when the build had one: a rebuild needs it to make the same bytes. */
  sourceDateEpoch?: number;
  dependencies: Dependency[];
  steps: StepRecord[];
}

export interface SlsaProvenance {
  buildDefinition: {
    buildType: string;
    externalParameters: Record<string, unknown>;
    internalParameters: Record<string, unknown>;
    resolvedDependencies: Dependency[];
  };
  runDetails: {
    builder: { id: string; version: Record<string, string> };
    metadata: { invocationId: string; startedOn: string; finishedOn: string };
    byproducts: { name: string; digest: Record<string, string>; annotations: Record<string, string> }[];
  };
}

/** RFC 3339 in UTC without fractions, as SLSA's Timestamp asks. */
const timestamp = (date: Date) => date.toISOString().replace(/\.\d+Z$/, "Z");

export function provenanceStatement(record: BuildRecord, subject: Subject, mode: ProvenanceMode): Statement<SlsaProvenance> {
  const externalParameters: Record<string, unknown> = {
    dockerfile: { path: record.dockerfile.path, digest: { sha256: record.dockerfile.sha256 } },
    ...(record.contextBlake3 ? { context: { digest: { blake3: record.contextBlake3 } } } : {}),
    ...(record.target ? { target: record.target } : {}),
    buildArgs: record.buildArgs,
    platform: record.platform,
    labels: record.labels,
    ...(record.sourceDateEpoch !== undefined ? { sourceDateEpoch: record.sourceDateEpoch } : {}),
  };
  const internalParameters: Record<string, unknown> = { memobuildVersion: record.version, mode };
  if (mode === "max") internalParameters.steps = record.steps.map((s) => ({ id: s.id, instruction: s.instruction, key: s.key, inputs: s.inputs }));
  return statement(subject, PROVENANCE_TYPE, {
    buildDefinition: { buildType: BUILD_TYPE, externalParameters, internalParameters, resolvedDependencies: record.dependencies },
    runDetails: {
      builder: { id: record.builderId, version: { memobuild: record.version } },
      metadata: { invocationId: record.invocationId, startedOn: timestamp(record.startedOn), finishedOn: timestamp(record.finishedOn) },
      byproducts: record.steps.map((s) => ({
        name: `step:${s.id}`,
        digest: { blake3: s.key },
        annotations: { instruction: s.instruction, status: s.status, ...(s.signer ? { signer: s.signer } : {}), ...(s.worker ? { worker: s.worker } : {}) },
      })),
    },
  });
}
