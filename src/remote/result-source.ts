/**
 * Somewhere a build may find results it did not compute: the remote cache server, or a build
 * cache kept in a registry or a directory (`--cache-from`). Each source checks what it hands
 * over (shape, and signatures against the reader's trust list); the step cache then checks the
 * layer itself (sha256, diff ID) before the local store takes it.
 */
import type { RemoteAction } from "./action.ts";

export interface ResultSource {
  /** A result for the key this build may use, or undefined (why not, in `refused`). */
  getAction(key: string): Promise<RemoteAction | undefined>;
  /** Downloads the result's layer blob to `file`; false when the source does not have it. */
  fetchLayer(layer: NonNullable<RemoteAction["layer"]>, file: string): Promise<boolean>;
  /** A result that failed a check here: not used, and the user is told once. */
  distrust(key: string, reason: string): void;
  /** Why a result the source holds was not used, by step key. */
  readonly refused: Map<string, string>;
}
