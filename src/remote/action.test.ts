import { describe, expect, test } from "bun:test";
import { validateAction } from "./action.ts";

const HEX = "a".repeat(64);
const DIGEST = `sha256:${"1".repeat(64)}`;

describe("validateAction: a name is the whole field, never a prefix of it", () => {
  const layer = { blake3: HEX, digest: DIGEST, size: 1, mediaType: "application/vnd.oci.image.layer.v1.tar" };
  test("well-formed digests and hashes pass", () => {
    expect(validateAction({ blobs: [HEX], diffId: DIGEST, layer })).toMatchObject({ blobs: [HEX], diffId: DIGEST, layer });
  });

  test.each([
    ["a diff ID with a path after it", { blobs: [], diffId: `${DIGEST}/../x` }],
    ["a diff ID with text before it", { blobs: [], diffId: `x${DIGEST}` }],
    ["a layer digest with a path after it", { blobs: [HEX], diffId: DIGEST, layer: { ...layer, digest: `${DIGEST}/../x` } }],
    ["a blob hash with a path after it", { blobs: [`${HEX}/../x`], diffId: null }],
    ["a layer whose media type is no layer's", { blobs: [HEX], diffId: DIGEST, layer: { ...layer, mediaType: "text/html\u001b[2J" } }],
    ["a layer's BLAKE3 with a path after it", { blobs: [`${HEX}/../x`], diffId: DIGEST, layer: { ...layer, blake3: `${HEX}/../x` } }],
  ])("refused: %s", (_what, action) => {
    expect(typeof validateAction(action)).toBe("string");
  });
});
