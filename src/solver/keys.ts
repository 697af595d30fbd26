/**
 * Step keys: BLAKE3 over everything a step's result depends on (its parent's key, the
 * instruction as expanded, what it reads, the platform) and nothing it does not (no times,
 * no host paths). The inputs are kept too, so `explain` can say what changed.
 */
import { blake3Hex } from "../hash/blake3.ts";

/** What a step's key was made from; kept so `explain` can say what changed. */
export interface StepInputs {
  parent?: string;
  instruction: string;
  platform: string;
  base?: string;
  fromStage?: string;
  /** `digest` covers every file; `files` (per-file digests) is kept only for `explain`. */
  context?: { digest: string; files: Record<string, string> };
  env?: [string, string][];
  /** ADD URL sources: their checksum, or the sha256 of what they served. */
  urls?: string[];
  /**
   * WORKDIR: the uid:gid its directory is made with. (It also keeps these keys apart from those
   * of older versions, where WORKDIR only changed the config and made no layer.)
   */
  owner?: string;
  /** RUN: --add-host, --shm-size and --ulimit, when given (see executor/sandbox.ts). */
  sandbox?: string;
}

export function stepKey(inputs: StepInputs): string {
  const { context, ...rest } = inputs;
  return blake3Hex(JSON.stringify(context ? { ...rest, context: context.digest } : rest));
}
