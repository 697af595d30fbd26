import { expect, test } from "bun:test";
import { parseOutputSpec, writesToStdout } from "./output-spec.ts";
import { checkOutputs } from "../cli/build-flags.ts";

const parse = (spec: string) => parseOutputSpec(spec, (path) => `/abs/${path}`);

test("buildx's shorthands: -o DIR is type=local, -o - a tar of the file system on stdout", () => {
  expect(parse("out")).toEqual({ type: "local", dest: "/abs/out" });
  expect(parse("-")).toEqual({ type: "tar", dest: "-" });
  expect(parse("type=local,dest=-")).toEqual({ type: "tar", dest: "-" });
});

test("dest=- is stdout for tar, oci and docker; type=docker without dest is a load", () => {
  expect(parse("type=tar,dest=-")).toEqual({ type: "tar", dest: "-" });
  expect(parse("type=oci,dest=-")).toEqual({ type: "oci", dest: "-", compression: "gzip", names: [] });
  expect(parse("type=docker,dest=-")).toEqual({ type: "docker-archive", dest: "-", names: [] });
  expect(parse("type=docker,dest=img.tar,name=app:1")).toEqual({ type: "docker-archive", dest: "/abs/img.tar", names: ["app:1"] });
  expect(parse("type=docker")).toEqual({ type: "docker", names: [] });
  expect(writesToStdout(parse("type=oci,dest=-"))).toBe(true);
  expect(writesToStdout(parse("type=oci,dest=x"))).toBe(false);
});

test("type=image names the image, and pushes it with push=true; type=registry takes name= too", () => {
  expect(parse("type=image,name=reg:5000/app:1")).toEqual({ type: "image", names: ["reg:5000/app:1"] });
  expect(parse("type=image,name=reg:5000/app:1,push=true")).toEqual({ type: "registry", names: ["reg:5000/app:1"], compression: "gzip" });
  expect(parse("type=registry,compression=zstd,compression-level=9,force-compression=true")).toEqual({ type: "registry", names: [], compression: "zstd", level: 9, force: true });
  expect(parse('type=image,"name=a:1,b:2",push=false')).toEqual({ type: "image", names: ["a:1", "b:2"] });
  expect(parse("type=registry")).toEqual({ type: "registry", names: [], compression: "gzip" });
});

test("unknown types and keys are errors that list what is supported", () => {
  expect(() => parse("type=s3,dest=x")).toThrow("--output type=s3 is not supported: use oci, oci-archive, docker, docker-archive, image, registry, local, tar (and the shorthands -o DIR for type=local, -o - for a tar of the file system on stdout)");
  expect(() => parse("type=oci,dest=x,oci-mediatypes=true")).toThrow('type=oci takes no "oci-mediatypes" (it takes dest, compression, compression-level, force-compression, name)');
  expect(() => parse("type=tar,dest=x,compression=gzip")).toThrow('type=tar takes no "compression" (it takes dest)');
  expect(() => parse("type=image,name=a,push=maybe")).toThrow("push must be true or false");
  expect(() => parse("type=oci")).toThrow("dest=PATH is required (dest=- writes to stdout)");
  expect(() => parse("type=oci,dest=a,dest=b")).toThrow('"dest" is given twice');
});

test("stdout takes one output, and nothing else printing there, and never a terminal", () => {
  const tar = parse("-");
  expect(() => checkOutputs([tar, parse("type=oci,dest=-")], [], "plain", false)).toThrow("only one output can write to stdout");
  expect(() => checkOutputs([tar], [], "quiet", false)).toThrow("where --progress quiet (or -q) prints too");
  expect(() => checkOutputs([tar], [], "json", false)).toThrow("where --progress json (or -q) prints too");
  expect(() => checkOutputs([tar], [], "plain", true)).toThrow("would write a tar to the terminal");
  expect(() => checkOutputs([tar], [], "plain", false)).not.toThrow();
  expect(() => checkOutputs([parse("type=registry")], [], "plain", false)).toThrow("push the -t names: give at least one (or name=REF)");
  expect(() => checkOutputs([parse("type=registry,name=r/a:1")], [], "plain", false)).not.toThrow();
});
