import { afterEach, describe, expect, test } from "bun:test";
import { ImageFormatError, parseImageConfig, parseImageIndex, parseImageManifest, SHA256_DIGEST } from "./validate.ts";

const digest = (c: string) => `sha256:${c.repeat(64)}`;
const json = (value: unknown) => Buffer.from(JSON.stringify(value));
const descriptor = (c = "a", size: unknown = 10) => ({ mediaType: "x", digest: digest(c), size });
const manifest = (layers: unknown[], config: unknown = descriptor("c")) => json({ schemaVersion: 2, config, layers });

/** The message a parser refuses `bytes` with (and that it is an ImageFormatError). */
function refusal(parse: () => unknown): string {
  try {
    parse();
  } catch (error) {
    expect(error).toBeInstanceOf(ImageFormatError);
    return (error as Error).message;
  }
  throw new Error("accepted");
}

afterEach(() => {
  delete process.env.MEMOBUILD_MAX_LAYERS;
});

describe("digests", () => {
  test("only sha256 with 64 lowercase hex digits, nothing before or after", () => {
    expect(SHA256_DIGEST.test(digest("a"))).toBe(true);
    for (const bad of [`${digest("a")}/../x`, `x${digest("a")}`, digest("A"), `sha256:${"a".repeat(63)}`, `sha256:${"a".repeat(65)}`, `sha512:${"a".repeat(64)}`, `sha256:${"g".repeat(64)}`, `sha256:${"a".repeat(64)}\n`]) {
      expect(SHA256_DIGEST.test(bad)).toBe(false);
    }
  });
});

describe("parseImageIndex", () => {
  test("a list of good descriptors is returned as parsed", () => {
    const index = parseImageIndex(json({ schemaVersion: 2, manifests: [descriptor("a"), descriptor("b", 0)] }), "index X");
    expect(index.manifests.map((m) => m.digest)).toEqual([digest("a"), digest("b")]);
  });

  test("not JSON, not an object, or no manifests list is refused, naming the input", () => {
    expect(refusal(() => parseImageIndex(Buffer.from("{ nope"), "index X"))).toBe("index X is not JSON");
    for (const bad of [null, 3, "s", [], {}, { manifests: {} }]) expect(refusal(() => parseImageIndex(json(bad), "index X"))).toBe("index X has no manifests list");
  });

  test("each descriptor's digest and size are checked, by position", () => {
    expect(refusal(() => parseImageIndex(json({ manifests: [descriptor("a"), { digest: "sha256:../../etc", size: 1 }] }), "index X"))).toBe('index X: manifest 2 has digest "sha256:../../etc", not a sha256 digest');
    expect(refusal(() => parseImageIndex(json({ manifests: [{ size: 1 }] }), "index X"))).toBe("index X: manifest 1 has digest undefined, not a sha256 digest");
    expect(refusal(() => parseImageIndex(json({ manifests: [null] }), "index X"))).toBe("index X: manifest 1 has digest undefined, not a sha256 digest");
    for (const size of [-1, 1.5, "10", null, 2 ** 53]) {
      expect(refusal(() => parseImageIndex(json({ manifests: [descriptor("a", size)] }), "index X"))).toBe(`index X: manifest 1 (${digest("a")}) has an invalid size ${JSON.stringify(size)}`);
    }
  });
});

describe("parseImageManifest", () => {
  test("a manifest with a config and layers is returned as parsed", () => {
    const parsed = parseImageManifest(manifest([descriptor("a"), descriptor("b")]), "image Y");
    expect(parsed.layers).toHaveLength(2);
    expect(parsed.config.digest).toBe(digest("c"));
  });

  test("not JSON, or without a config or a layers list, is refused", () => {
    expect(refusal(() => parseImageManifest(Buffer.from("["), "image Y"))).toBe("image Y: the manifest is not JSON");
    for (const bad of [null, 1, "s", [], {}, { config: descriptor() }, { layers: [] }, { config: descriptor(), layers: "x" }]) {
      expect(refusal(() => parseImageManifest(json(bad), "image Y"))).toBe("image Y: not an image manifest (no config and layers)");
    }
  });

  test("the config's and each layer's descriptor are checked", () => {
    expect(refusal(() => parseImageManifest(manifest([], { digest: "md5:abc", size: 2 }), "image Y"))).toBe('image Y: config has digest "md5:abc", not a sha256 digest');
    expect(refusal(() => parseImageManifest(manifest([descriptor("a"), descriptor("b", -5)]), "image Y"))).toBe(`image Y: layer 2 (${digest("b")}) has an invalid size -5`);
  });

  test("the layer count is held to MEMOBUILD_MAX_LAYERS, at most that many accepted", () => {
    process.env.MEMOBUILD_MAX_LAYERS = "2";
    expect(parseImageManifest(manifest([descriptor("a"), descriptor("b")]), "image Y").layers).toHaveLength(2);
    expect(refusal(() => parseImageManifest(manifest([descriptor("a"), descriptor("b"), descriptor("d")]), "image Y"))).toBe("image Y: 3 layers is over the limit (the limit is MEMOBUILD_MAX_LAYERS=2)");
  });
});

describe("parseImageConfig", () => {
  const config = (diffIds: unknown) => json({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: diffIds } });

  test("diff IDs that are digests, as many as the manifest's layers, are accepted", () => {
    expect(parseImageConfig(config([digest("a"), digest("b")]), "config Z", 2).rootfs.diff_ids).toHaveLength(2);
    expect(parseImageConfig(config([]), "config Z").rootfs.diff_ids).toEqual([]);
    expect(parseImageConfig(config([digest("a")]), "config Z").os).toBe("linux");
  });

  test("not JSON, no diff ID list, a diff ID that is not a digest, or a count unlike the manifest's is refused", () => {
    expect(refusal(() => parseImageConfig(Buffer.from("{ not json"), "config Z"))).toBe("config Z is not JSON");
    for (const bad of [json(null), json({}), json({ rootfs: {} }), config("x")]) expect(refusal(() => parseImageConfig(bad, "config Z"))).toBe("config Z has no rootfs.diff_ids list");
    expect(refusal(() => parseImageConfig(config([digest("a"), "sha256:../.."]), "config Z"))).toBe('config Z: diff ID "sha256:../.." is not a sha256 digest');
    expect(refusal(() => parseImageConfig(config([7]), "config Z"))).toBe("config Z: diff ID 7 is not a sha256 digest");
    // Not a string, though its text is a digest.
    expect(refusal(() => parseImageConfig(config([[digest("a")]]), "config Z"))).toBe(`config Z: diff ID ["${digest("a")}"] is not a sha256 digest`);
    expect(refusal(() => parseImageConfig(config([digest("a")]), "config Z", 2))).toBe("config Z lists 1 layers, the manifest 2");
    expect(refusal(() => parseImageConfig(config([digest("a"), digest("b")]), "config Z", 0))).toBe("config Z lists 2 layers, the manifest 0");
  });
});
