/** A job definition comes from the submitter: its --cache-mount-scope is checked before a worker passes it on as a flag. */
import { expect, test } from "bun:test";
import { parseJobDefinition } from "./job-definition.ts";

const definition = (extra: Record<string, unknown>) => ({
  version: 1,
  dockerfile: { text: "FROM scratch\n", path: "Dockerfile" },
  buildArgs: {},
  noCache: false,
  context: { manifest: "a".repeat(64), digest: "b".repeat(64) },
  images: {},
  labels: {},
  secrets: [],
  ...extra,
});

test("a cache mount scope is kept when it is a scope name, and refused otherwise, naming the field", () => {
  expect(parseJobDefinition(definition({ cacheMountScope: "feature/x" })).cacheMountScope).toBe("feature/x");
  expect(parseJobDefinition(definition({})).cacheMountScope).toBeUndefined();
  for (const bad of ["--allow=security.insecure", "", "x".repeat(129), 7, "a b"]) {
    expect(() => parseJobDefinition(definition({ cacheMountScope: bad }))).toThrow("job definition: cacheMountScope: expected up to 128 letters");
  }
});
