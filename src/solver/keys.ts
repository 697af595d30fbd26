/**
 * Step keys: BLAKE3 over everything a step's result depends on (its parent's key, the
 * instruction as expanded, what it reads, the platform) and nothing it does not (no times,
 * no host paths, no names). The inputs are kept too, so `explain` can say what changed.
 */
import { formatInstruction } from "../frontend/format.ts";
import type { Instruction } from "../frontend/instructions.ts";
import { blake3Hex } from "../hash/blake3.ts";

/**
 * The key format. Bumped deliberately when what enters a key changes, since every cache made
 * before misses once: 2 took stage names and the spelling of stage references out of keys.
 */
export const KEY_FORMAT = 2;

/** What a step's key was made from; kept so `explain` can say what changed. */
export interface StepInputs {
  parent?: string;
  instruction: string;
  platform: string;
  base?: string;
  /** The keys (or image digests) of the stages and images the step reads, in the order it names them. */
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
  /** RUN: the network it ran with (default or host: its own --network, else the build's); absent: none. */
  network?: string;
  /** RUN: --add-host, --shm-size and --ulimit, when given (see executor/sandbox.ts). */
  sandbox?: string;
  /** Steps that make a layer: SOURCE_DATE_EPOCH, when set (it clamps the layer's file times). */
  epoch?: number;
  /** RUN of an untrusted submitter's build that reads a cache mount, a secret or an SSH agent: that submitter (ops/run.ts). */
  untrusted?: string;
}

export function stepKey(inputs: StepInputs): string {
  const { context, ...rest } = inputs;
  return blake3Hex(JSON.stringify({ format: KEY_FORMAT, ...rest, ...(context ? { context: context.digest } : {}) }));
}

/**
 * The instruction's text as it enters a key: what a stage or image reference stands for is an
 * input of its own (`base`, `fromStage`), so how it is spelled (a stage's name, its index, an
 * image's tag) and the stage's own name (`AS build`) are left out. Renaming a stage, or writing
 * `--from=0` for `--from=build`, keeps every key.
 */
export function keyText(instruction: Instruction): string {
  switch (instruction.kind) {
    case "FROM":
      // The base's identity is `base` (an image's manifest digest) or `fromStage` (a stage's key).
      return formatInstruction({ ...instruction, image: "", stageName: undefined });
    case "COPY":
      return formatInstruction(instruction.from === undefined ? instruction : { ...instruction, from: "" });
    case "RUN":
      return formatInstruction({ ...instruction, mounts: instruction.mounts.map((m) => ("from" in m && m.from !== undefined ? { ...m, from: "" } : m)) });
    case "ARG":
      // An ARG keys on its names, not its values: a value enters the key of each step that reads
      // it (in its expanded text, or a RUN's environment), as in BuildKit.
      return `ARG ${instruction.args.map((a) => a.name).join(" ")}`;
    default:
      return formatInstruction(instruction);
  }
}
