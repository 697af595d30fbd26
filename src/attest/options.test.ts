import { expect, test } from "bun:test";
import { attestOptions } from "./options.ts";

test("buildx spellings of provenance and SBOM", () => {
  expect(attestOptions({})).toEqual({ sbom: false });
  expect(attestOptions({ provenance: ["true"] }).provenance).toBe("min");
  expect(attestOptions({ provenance: ["mode=max"] }).provenance).toBe("max");
  expect(attestOptions({ provenance: ["max"] }).provenance).toBe("max");
  expect(attestOptions({ provenance: ["true", "false"] }).provenance).toBeUndefined();
  expect(attestOptions({ attest: ["type=provenance,mode=max"] }).provenance).toBe("max");
  expect(attestOptions({ attest: ["type=provenance,disabled=true"] }).provenance).toBeUndefined();
  expect(attestOptions({ sbom: ["true"] }).sbom).toBe(true);
  expect(attestOptions({ sbom: ["false"] }).sbom).toBe(false);
  expect(attestOptions({ attest: ["type=sbom"] }).sbom).toBe(true);
  expect(attestOptions({ provenance: ["mode=max,builder-id=https://ci.example/runner/7,version=v1"] })).toEqual({ provenance: "max", builderId: "https://ci.example/runner/7", sbom: false });
});

test("what MemoBuild does not do is refused by name", () => {
  expect(() => attestOptions({ provenance: ["mode=full"] })).toThrow("mode must be min or max");
  expect(() => attestOptions({ sbom: ["generator=docker/scout-sbom-indexer"] })).toThrow("runs no generator image");
  expect(() => attestOptions({ attest: ["type=vex"] })).toThrow("type must be provenance or sbom");
  expect(() => attestOptions({ provenance: ["perhaps"] })).toThrow('"perhaps" is not true or false');
  expect(() => attestOptions({ provenance: ["version=v0.2"] })).toThrow("SLSA provenance v1 only");
  expect(() => attestOptions({ provenance: ["builder-id=not a uri"] })).toThrow("builder-id must be a URI");
});
