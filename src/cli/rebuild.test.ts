/** verify --rebuild reads what the provenance names only inside the context the user gives. */
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { SlsaProvenance } from "../attest/provenance.ts";
import { sha256Hex, type Statement } from "../attest/statement.ts";
import { formatPlatform, hostPlatform } from "../frontend/platform.ts";
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

test("an image recorded for another platform is rebuilt for it; this machine's needs no flag", async () => {
  const context = join(work, "platform-context");
  mkdirSync(context);
  const text = "FROM scratch\n";
  writeFileSync(join(context, "Dockerfile"), text);
  const recorded = (platform: string) =>
    ({ predicate: { buildDefinition: { externalParameters: { dockerfile: { path: "Dockerfile", digest: { sha256: sha256Hex(text) } }, platform } } } }) as unknown as Statement<SlsaProvenance>;
  const other = hostPlatform().architecture === "arm64" ? "linux/amd64" : "linux/arm64";
  const foreign = await rebuildCommand(recorded(other), context, join(work, "out"), []);
  expect(foreign.argv.join(" ")).toContain(`--platform ${other}`);
  const native = await rebuildCommand(recorded(formatPlatform(hostPlatform())), context, join(work, "out"), []);
  expect(native.argv).not.toContain("--platform");
});
