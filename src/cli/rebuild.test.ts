/** verify --rebuild reads what the provenance names only inside the context the user gives. */
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { SlsaProvenance } from "../attest/provenance.ts";
import type { Statement } from "../attest/statement.ts";
import { rebuildCommand } from "./rebuild.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-rebuild-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const provenanceNaming = (path: string) => ({ predicate: { buildDefinition: { externalParameters: { dockerfile: { path, digest: { sha256: "0".repeat(64) } } } } } }) as unknown as Statement<SlsaProvenance>;

test("a Dockerfile path that leaves the context, directly or through a link, is refused without reading it", async () => {
  const context = join(work, "context");
  mkdirSync(context);
  writeFileSync(join(work, "secret"), "not for the provenance");
  symlinkSync(join(work, "secret"), join(context, "linked"));
  await expect(rebuildCommand(provenanceNaming("../secret"), context, join(work, "out"), [])).rejects.toThrow("the provenance names the Dockerfile ../secret, outside the context");
  await expect(rebuildCommand(provenanceNaming("/etc/passwd"), context, join(work, "out"), [])).rejects.toThrow("outside the context");
  await expect(rebuildCommand(provenanceNaming("linked"), context, join(work, "out"), [])).rejects.toThrow(/linked/);
});
