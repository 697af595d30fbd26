import { existsSync } from "node:fs";
import { join, resolve } from "node:path";

/**
 * The shared conformance data sits beside the checkout (`../shared/conformance`), in CI as here.
 * MEMOBUILD_CONFORMANCE_DIR overrides it. Tests fail loudly when it is missing: a conformance
 * suite that silently runs zero cases would be a test that cannot fail.
 */
export function conformanceDir(...parts: string[]): string {
  const root = process.env.MEMOBUILD_CONFORMANCE_DIR ?? resolve(import.meta.dir, "../../../shared/conformance");
  if (!existsSync(root)) {
    throw new Error(`conformance data not found at ${root} (set MEMOBUILD_CONFORMANCE_DIR)`);
  }
  return join(root, ...parts);
}
