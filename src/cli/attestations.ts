/**
 * `build --provenance/--sbom/--attest/--sign-key`: the flags checked before any work, then, after
 * the build, what the exporters are handed (src/attest/ does the rest).
 */
import type { KeyObject } from "node:crypto";
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { relative } from "node:path";
import packageJson from "../../package.json" with { type: "json" };
import { Attester } from "../attest/attest.ts";
import { attestOptions, attestsAnything, type AttestOptions } from "../attest/options.ts";
import { buildRecord, builderIdOf, type BuildOutcome } from "../attest/record.ts";
import { loadSigningKey, signatureIdentity } from "../attest/sign.ts";
import { sha256Hex } from "../attest/statement.ts";
import type { LocalStore } from "../cache/store.ts";
import { loadContext } from "../context/context.ts";
import { formatPlatform } from "../frontend/platform.ts";
import type { OutputSpec } from "../image/export.ts";
import type { StoredImage } from "../image/layout.ts";
import { usage, type BuildFlags } from "./build-flags.ts";
import { UsageError } from "./errors.ts";

export interface AttestPlan {
  options: AttestOptions;
  signKey?: KeyObject;
  startedOn: Date;
}

/** Undefined when the build attests and signs nothing (and so writes what it always wrote). */
export function attestPlan(flags: BuildFlags, outputs: OutputSpec[], tags: string[]): AttestPlan | undefined {
  const options = usage(() => attestOptions(flags));
  if (!attestsAnything(options) && !flags.signKey) return undefined;
  const signKey = flags.signKey ? usage(() => loadSigningKey(flags.signKey!)) : undefined;
  if (signKey && !tags.length) throw new UsageError("--sign-key: a signature names the image's repository: give a -t name");
  if (!outputs.some((o) => o.type === "registry" || o.type === "oci" || o.type === "oci-archive")) {
    throw new UsageError("--provenance, --sbom, --attest and --sign-key attach to an image output: add --push, -o type=registry, -o type=oci or -o type=oci-archive");
  }
  return { options, signKey, startedOn: new Date() };
}

export interface BuildFacts {
  dockerfileText: string;
  dockerfilePath: string;
  contextDir: string;
  dockerfileAbsolute?: string;
  statCacheFile: string;
  target?: string;
  buildArgs: Record<string, string>;
  labels: Record<string, string>;
  sourceDateEpoch?: number;
}

export async function attesterFor(plan: AttestPlan, store: LocalStore, image: StoredImage, result: BuildOutcome, facts: BuildFacts, tags: string[]): Promise<Attester> {
  const context = plan.options.provenance
    ? await loadContext({ contextDir: facts.contextDir, dockerfile: facts.dockerfileAbsolute, statCacheFile: facts.statCacheFile })
    : undefined;
  // The platform the image is for (--platform), which a rebuild must build for again.
  const { os, architecture, variant } = image.config;
  const platform = formatPlatform({ os, architecture, variant });
  const record = buildRecord(
    {
      version: packageJson.version,
      builderId: plan.options.builderId ?? builderIdOf(result, hostname()),
      invocationId: randomUUID(),
      startedOn: plan.startedOn,
      finishedOn: new Date(),
      // A path the user gave, relative to the context when it is inside it: no home directories.
      dockerfile: { path: facts.dockerfileAbsolute ? relative(facts.contextDir, facts.dockerfileAbsolute) : facts.dockerfilePath, sha256: sha256Hex(facts.dockerfileText) },
      contextBlake3: context?.digest(),
      target: facts.target,
      buildArgs: facts.buildArgs,
      platform,
      labels: facts.labels,
      sourceDateEpoch: facts.sourceDateEpoch,
    },
    result,
  );
  const created = facts.sourceDateEpoch !== undefined ? new Date(facts.sourceDateEpoch * 1000) : new Date();
  return new Attester(store, image, { options: plan.options, record, name: tags[0] ?? "", created, signKey: plan.signKey, identity: tags[0] ? signatureIdentity(tags[0]) : undefined });
}
