import { describe, test } from "bun:test";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";

/**
 * The conformance data: test cases of the projects MemoBuild must match (BuildKit's parser and
 * shell tests, BLAKE3's vectors, moby's .dockerignore cases), kept outside the repository in
 * `shared/conformance` beside the checkout (CI has it there). MEMOBUILD_CONFORMANCE_DIR overrides
 * the place.
 *
 * A clone on its own has no such folder: its suites are then skipped by name, with one line
 * saying why, so `make test` passes for anyone who clones the repository. Where the data is
 * meant to be (CI sets MEMOBUILD_REQUIRE_CONFORMANCE=1) its absence fails the run instead,
 * because a conformance suite that quietly runs zero cases is a test that cannot fail.
 */
export function conformanceRoot(): string {
  return process.env.MEMOBUILD_CONFORMANCE_DIR || resolve(import.meta.dir, "../../../shared/conformance");
}

const REQUIRE_VARIABLE = "MEMOBUILD_REQUIRE_CONFORMANCE";
const HOW = 'set MEMOBUILD_CONFORMANCE_DIR to a copy of shared/conformance; see "Conformance data" in the README';

/** The data's folder when it is absent (for the messages), undefined when it is there. */
function absentRoot(): string | undefined {
  const root = conformanceRoot();
  return existsSync(root) ? undefined : root;
}

/** The one line that fails a run where the data is required but absent; undefined otherwise. */
export function requiredButMissing(): string | undefined {
  const root = absentRoot();
  if (root === undefined || process.env[REQUIRE_VARIABLE] !== "1") return undefined;
  return `conformance data not found at ${root}, and ${REQUIRE_VARIABLE}=1 requires it (${HOW})`;
}

/** bun runs every test file in one process: the reason for the skips is said once per run. */
const ANNOUNCED = Symbol.for("memobuild.conformance.announced");

function announceSkips(root: string): void {
  const state = globalThis as { [ANNOUNCED]?: boolean };
  if (state[ANNOUNCED]) return;
  state[ANNOUNCED] = true;
  console.warn(`conformance data not found at ${root}: the suites that need it are skipped (${HOW})`);
}

/**
 * A describe() whose cases come from `subpath` of the conformance data; `body` gets that path.
 * Without the data the cases cannot even be listed, so one skipped test named after the data
 * stands for them under the suite's name (or, where the data is required, one failing test).
 */
export function describeConformance(name: string, subpath: string, body: (path: string) => void): void {
  const root = absentRoot();
  if (root === undefined) {
    describe(name, () => body(join(conformanceRoot(), subpath)));
    return;
  }
  const stand = `every case in conformance/${subpath}`;
  const failure = requiredButMissing();
  if (failure) {
    describe(name, () =>
      test(stand, () => {
        throw new Error(failure);
      }),
    );
    return;
  }
  announceSkips(root);
  describe(name, () => test.skip(stand, () => {}));
}
