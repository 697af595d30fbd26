import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { attestSchemaErrors } from "./attest-schema.ts";

const SCHEMA_DIR = join(import.meta.dir, "../../schema");

test("the vendored SPDX schema is the one SOURCE records (git blob id)", () => {
  const source = readFileSync(join(SCHEMA_DIR, "spdx/SOURCE"), "utf8");
  for (const [, blob, file] of source.matchAll(/^([0-9a-f]{40}) (\S+)/gm)) {
    const actual = Bun.spawnSync(["git", "hash-object", join(SCHEMA_DIR, "spdx", file!)]).stdout.toString().trim();
    expect(`${file} ${actual}`).toBe(`${file} ${blob}`);
  }
});

test("the schemas reject what they must (a checker that accepts anything would pass any output)", () => {
  expect(attestSchemaErrors("spdx", { spdxVersion: "SPDX-2.3" }).join("\n")).toContain("must have required property");
  const statement = {
    _type: "https://in-toto.io/Statement/v1",
    subject: [{ name: "x", digest: { sha256: "a".repeat(64) } }],
    predicateType: "https://slsa.dev/provenance/v1",
    predicate: { buildDefinition: { buildType: "https://example.com/t", externalParameters: {} }, runDetails: { builder: { id: "https://example.com/b" } } },
  };
  expect(attestSchemaErrors("slsa", statement)).toEqual([]);
  expect(attestSchemaErrors("slsa", { ...statement, predicate: { ...statement.predicate, runDetails: { builder: {} } } }).join()).toContain("id");
  const badTime = { ...statement.predicate.runDetails, metadata: { startedOn: "yesterday" } };
  expect(attestSchemaErrors("slsa", { ...statement, predicate: { ...statement.predicate, runDetails: badTime } }).join()).toContain("pattern");
});
