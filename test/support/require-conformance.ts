/**
 * Preloaded by `bun test` (bunfig.toml): where MEMOBUILD_REQUIRE_CONFORMANCE=1 says the
 * conformance data must be there (CI), its absence stops the run at once with one line, before
 * any test, rather than minutes later as failures spread over several files.
 */
import { requiredButMissing } from "./conformance.ts";

const failure = requiredButMissing();
if (failure) {
  console.error(`error: ${failure}`);
  process.exit(1);
}
