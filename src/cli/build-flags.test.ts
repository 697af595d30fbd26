/** `--annotation` as buildx reads it: where each goes, and what a build refuses before any work. */
import { describe, expect, test } from "bun:test";
import { annotationsFor, checkAnnotations, parseAnnotations } from "./build-flags.ts";
import type { OutputSpec } from "../image/output-spec.ts";

const amd64 = { os: "linux", architecture: "amd64" };
const arm64 = { os: "linux", architecture: "arm64" };
const oci: OutputSpec[] = [{ type: "oci", dest: "/tmp/x", names: [], compression: "gzip" }];

describe("parseAnnotations", () => {
  test("each type, a platform selector, several types at once; no type is the manifest", () => {
    const spec = parseAnnotations([
      "a=1",
      "manifest:b=2",
      "manifest[linux/arm64/v8]:c=3",
      "manifest-descriptor[linux/amd64]:d=4",
      "index:e=5",
      "index-descriptor:f=6",
      "index,manifest:g=x=7",
      "com.example:h=8",
    ]);
    expect(spec.manifest).toEqual([
      { platform: undefined, key: "a", value: "1" },
      { platform: undefined, key: "b", value: "2" },
      { platform: "linux/arm64", key: "c", value: "3" },
      { platform: undefined, key: "g", value: "x=7" },
      { platform: undefined, key: "com.example:h", value: "8" },
    ]);
    expect(spec.manifestDescriptor).toEqual([{ platform: "linux/amd64", key: "d", value: "4" }]);
    expect(spec.index).toEqual({ e: "5", g: "x=7" });
    expect(spec.indexDescriptor).toEqual({ f: "6" });
  });

  test("an unknown type, a selector on the index, a bad platform or no value: each an error saying what is taken", () => {
    expect(() => parseAnnotations(["manifests:a=1"])).toThrow("unknown type manifests; use [TYPE[,TYPE...]][[OS/ARCH]]:KEY=VALUE, TYPE one of manifest (the default), manifest-descriptor, index, index-descriptor");
    expect(() => parseAnnotations(["index[linux/amd64]:a=1"])).toThrow("a platform selector goes with manifest or manifest-descriptor");
    expect(() => parseAnnotations(["index-descriptor[linux/amd64]:a=1"])).toThrow("a platform selector goes with manifest or manifest-descriptor");
    expect(() => parseAnnotations(["manifest[amd64]:a=1"])).toThrow('invalid platform "amd64"');
    expect(() => parseAnnotations(["manifest:a"])).toThrow("--annotation manifest:a: use [TYPE");
  });
});

test("annotationsFor: every platform's, then the platform's own over them; none is undefined", () => {
  const spec = parseAnnotations(["k=all", "manifest[linux/arm64]:k=arm", "manifest[linux/arm64]:only=arm"]);
  expect(annotationsFor(spec.manifest, amd64)).toEqual({ k: "all" });
  expect(annotationsFor(spec.manifest, arm64)).toEqual({ k: "arm", only: "arm" });
  expect(annotationsFor(spec.manifestDescriptor, arm64)).toBeUndefined();
});

describe("checkAnnotations", () => {
  test("a selector must name a platform built", () => {
    expect(() => checkAnnotations(parseAnnotations(["manifest[linux/s390x]:a=1"]), [amd64, arm64], oci)).toThrow("linux/s390x (for a) is not a platform of this build (linux/amd64, linux/arm64)");
    expect(() => checkAnnotations(parseAnnotations(["manifest[linux/amd64]:a=1"]), [amd64], oci)).not.toThrow();
  });

  test("index types need an index (several platforms); index-descriptor an OCI layout", () => {
    for (const type of ["index", "manifest-descriptor", "index-descriptor"]) {
      expect(() => checkAnnotations(parseAnnotations([`${type}:a=1`]), [amd64], oci)).toThrow(`--annotation ${type}: a build of one platform makes no image index to annotate`);
      expect(() => checkAnnotations(parseAnnotations([`${type}:a=1`]), [amd64, arm64], oci)).not.toThrow();
    }
    const pushed: OutputSpec[] = [{ type: "registry", names: [] }];
    expect(() => checkAnnotations(parseAnnotations(["index:a=1"]), [amd64, arm64], pushed)).not.toThrow();
    expect(() => checkAnnotations(parseAnnotations(["index-descriptor:a=1"]), [amd64, arm64], pushed)).toThrow("--annotation index-descriptor: annotates the index's entry in an OCI layout's index.json");
  });
});
