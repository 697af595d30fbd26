import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { OCI_SCHEMA_DIR, ociSchemaErrors } from "./oci-schema.ts";

/** The id git gives a file's content, which upstream's `git ls-tree` lists: it proves the copy unchanged. */
const gitBlobId = (content: Buffer) => createHash("sha1").update(`blob ${content.length}\0`).update(content).digest("hex");

describe("the OCI image-spec schemas kept in schema/oci", () => {
  const source = readFileSync(join(OCI_SCHEMA_DIR, "SOURCE"), "utf8").split("\n");
  const listed = source.filter((line) => /^[0-9a-f]{40} /.test(line)).map((line) => line.split(" ") as [string, string]);

  test("name their upstream and commit", () => {
    expect(source).toContain("upstream opencontainers/image-spec schema/ and LICENSE");
    expect(source).toContain("commit 13cff54902ec9ad6320cbc487a685b66fcd67171");
  });

  test("are the files SOURCE lists, each byte for byte the upstream's", () => {
    const present = readdirSync(OCI_SCHEMA_DIR).filter((file) => file !== "SOURCE");
    expect(present.sort()).toEqual(listed.map(([, file]) => file).sort());
    for (const [blob, file] of listed) {
      expect({ file, blob: gitBlobId(readFileSync(join(OCI_SCHEMA_DIR, file))) }).toEqual({ file, blob });
    }
  });

  // The validator is only worth something if it can say no: a vacuous one passes every export.
  const descriptor = (mediaType: string, hex: string) => ({ mediaType, digest: `sha256:${hex.repeat(64)}`, size: 2 });
  const manifest = {
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: descriptor("application/vnd.oci.image.config.v1+json", "a"),
    layers: [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", "b")],
  };

  test("accept a well-formed manifest, index and layout", () => {
    expect(ociSchemaErrors("manifest", manifest)).toEqual([]);
    expect(ociSchemaErrors("index", { schemaVersion: 2, manifests: [descriptor(manifest.mediaType, "c")] })).toEqual([]);
    expect(ociSchemaErrors("layout", { imageLayoutVersion: "1.0.0" })).toEqual([]);
  });

  test("reject what the spec forbids, naming the field", () => {
    expect(ociSchemaErrors("manifest", { ...manifest, schemaVersion: 1 })).toEqual(["/schemaVersion must be >= 2"]);
    expect(ociSchemaErrors("manifest", { ...manifest, layers: [] })).toEqual(["/layers must NOT have fewer than 1 items"]);
    const badDigest = { ...manifest, config: { ...manifest.config, digest: "sha256:" } };
    expect(ociSchemaErrors("manifest", badDigest).join("\n")).toContain("/config/digest must match pattern");
    expect(ociSchemaErrors("layout", {})).toEqual(["/ must have required property 'imageLayoutVersion'"]);
  });
});
