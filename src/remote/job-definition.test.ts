/** A job definition comes from the submitter: what a worker passes on as flags (--cache-mount-scope, --build-context names, --ssh ids) is checked first. */
import { expect, test } from "bun:test";
import { parseBuildContexts } from "../cli/build-flags.ts";
import { parseJobDefinition, untrustedUlimitProblems } from "./job-definition.ts";

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

test("the submitter's build id is kept when it is one (it goes into the worker's environment), and refused otherwise", () => {
  expect(parseJobDefinition(definition({ build: "3f0c9a52-1b7e-4d5c-9a0e-2b8f6c1d7e4a" })).build).toBe("3f0c9a52-1b7e-4d5c-9a0e-2b8f6c1d7e4a");
  expect(parseJobDefinition(definition({})).build).toBeUndefined();
  for (const bad of ["short", "x".repeat(65), "a b c d e f", "../../etc", 7]) expect(() => parseJobDefinition(definition({ build: bad }))).toThrow("job definition: build: expected a build id");
});

test("named contexts and ssh ids: kept when well formed (absent in an older client's job: none), refused otherwise, naming the field", () => {
  const tree = { manifest: "c".repeat(64), digest: "d".repeat(64) };
  const parsed = parseJobDefinition(definition({ contexts: { docs: tree, "team/lib:1": tree }, ssh: ["default", "deploy"] }));
  expect(parsed.contexts).toEqual({ docs: tree, "team/lib:1": tree });
  expect(parsed.ssh).toEqual(["default", "deploy"]);
  expect(parseJobDefinition(definition({}))).toMatchObject({ contexts: {}, ssh: [] });
  // A name the worker puts in --build-context=NAME=DIR must not carry an "=" or look like a flag.
  expect(() => parseJobDefinition(definition({ contexts: { "a=b": tree } }))).toThrow("job definition: contexts.a=b: expected a context name");
  expect(() => parseJobDefinition(definition({ contexts: { "-x": tree } }))).toThrow("job definition: contexts.-x: expected a context name");
  expect(() => parseJobDefinition(definition({ contexts: { docs: { manifest: "x", digest: "d".repeat(64) } } }))).toThrow("job definition: contexts.docs: expected { manifest");
  expect(() => parseJobDefinition(definition({ ssh: ["default", "default"] }))).toThrow("job definition: ssh: expected ids given once each");
  expect(() => parseJobDefinition(definition({ ssh: ["a=b"] }))).toThrow("job definition: ssh: expected at most 64 ids");
});

test("a job cannot name a worker's private scope: it would share that submitter's files and results", () => {
  expect(() => parseJobDefinition(definition({ cacheMountScope: "job-private/0123456789ab" }))).toThrow("job definition: cacheMountScope: expected a scope not named job-private/…");
});

test("the build flags a job carries: kept when well formed (absent in an older client's job: the defaults), refused otherwise, naming the field", () => {
  const carried = { network: "none", allow: ["network.host"], sandbox: { addHost: ["db:10.1.2.3", "v6=[::1]"], shmSize: "8m", ulimit: ["nofile=777:777", "core=-1"] }, noCacheFilter: ["a,1"], pull: true, annotations: { "org.example.k": "a value = with spaces" } };
  expect(parseJobDefinition(definition(carried))).toMatchObject(carried);
  expect(parseJobDefinition(definition({}))).toMatchObject({ allow: [], sandbox: { addHost: [], ulimit: [] }, noCacheFilter: [], pull: false, annotations: {} });
  expect(parseJobDefinition(definition({ network: "default" })).network).toBeUndefined();
  const refused: [Record<string, unknown>, string][] = [
    [{ network: "bridge" }, "network: expected default, none or host"],
    [{ allow: ["device"] }, "allow: expected a list of network.host, security.insecure"],
    [{ sandbox: { addHost: ["db:1.2.3.4 --privileged"] } }, "sandbox.addHost: expected at most 64 values"],
    [{ sandbox: { shmSize: "8m --x" } }, "sandbox.shmSize: expected a size"],
    [{ sandbox: { ulimit: ["nofile=1 2"] } }, "sandbox.ulimit: expected at most 64 values"],
    [{ noCacheFilter: ["a b"] }, "noCacheFilter: expected at most 64 values"],
    [{ annotations: { "a=b": "c" } }, "annotations.a=b: expected a key without spaces or ="],
  ];
  for (const [extra, message] of refused) expect(() => parseJobDefinition(definition(extra))).toThrow(`job definition: ${message}`);
});

test("a definition that carries build flags is version 2, one that names a platform 3 (a worker from before them refuses it); 1 to 3 are taken, nothing else", () => {
  expect(parseJobDefinition(definition({ version: 2, pull: true })).version).toBe(2);
  expect(parseJobDefinition(definition({ version: 3, platform: "linux/arm64" })).version).toBe(3);
  expect(parseJobDefinition(definition({})).version).toBe(1);
  expect(() => parseJobDefinition(definition({ version: 4 }))).toThrow("job definition: version: expected 1, 2 or 3");
});

test("a job's platform is os/arch[/variant] (the worker passes it as --platform=VALUE), and an index of a base image is blobs", () => {
  expect(parseJobDefinition(definition({ version: 3, platform: "linux/arm/v7" })).platform).toBe("linux/arm/v7");
  expect(parseJobDefinition(definition({})).platform).toBeUndefined();
  for (const bad of ["linux", "linux/arm64 --push", "--allow=x/y", "linux/arm64/v8/x", 7]) expect(() => parseJobDefinition(definition({ version: 3, platform: bad }))).toThrow("job definition: platform: expected os/arch[/variant]");
  const blob = { blake3: "c".repeat(64), digest: `sha256:${"d".repeat(64)}`, size: 10 };
  const image = { manifest: blob, config: blob, layers: [blob] };
  expect(parseJobDefinition(definition({ version: 3, imageIndexes: { base: { index: blob, images: [image] } } })).imageIndexes).toEqual({ base: { index: blob, images: [image] } });
  expect(() => parseJobDefinition(definition({ version: 3, imageIndexes: { base: { index: blob, images: [{ manifest: blob }] } } }))).toThrow("job definition: imageIndexes.base.images[0]: expected { manifest, config, layers }");
});

test("a base image's reference (images, imageIndexes) cannot carry an '=': the worker puts it in --build-context=REF=oci-layout://DIR", () => {
  const blob = { blake3: "c".repeat(64), digest: `sha256:${"d".repeat(64)}`, size: 10 };
  const image = { manifest: blob, config: blob, layers: [blob] };
  // The attack: a read-only token's job names its base "x=https://internal/secret.git#main::";
  // the build splits the flag at its first "=", and reads a git context "x" that the worker
  // fetches with its own network and credentials (the "::" leaves the whole repository as the
  // context, dropping the layout path), which `COPY --from=x` puts in the submitter's image.
  const injected = "x=https://git.internal/secret.git#main::";
  expect(parseBuildContexts([`${injected}=oci-layout:///work/job/image-1`])[0]).toMatchObject({ name: "x", kind: "git" });
  expect(() => parseJobDefinition(definition({ images: { [injected]: image } }))).toThrow(`job definition: images.${injected}: expected a reference`);
  expect(() => parseJobDefinition(definition({ version: 3, imageIndexes: { [injected]: { index: blob, images: [image] } } }))).toThrow(`job definition: imageIndexes.${injected}: expected a reference`);
  for (const bad of ["a b", "a\nb", ""]) expect(() => parseJobDefinition(definition({ images: { [bad]: image } }))).toThrow("expected a reference");
  // What a Dockerfile's FROM names is kept.
  for (const ref of ["busybox", "registry.local:5000/team/app:1.2", "memobuild/busybox@sha256:" + "e".repeat(64), "[::1]:5000/x"]) {
    expect(Object.keys(parseJobDefinition(definition({ images: { [ref]: image } })).images)).toEqual([ref]);
  }
});

test("an untrusted submitter's --ulimit: each limit that bounds its own RUNs up to its cap, soft and hard; -1 is above every cap; anything else is one problem per spec", () => {
  const atCaps = ["nofile=1048576:1048576", "msgqueue=819200:819200", "sigpending=65536:65536", "core=-1:-1", "stack=8388608:-1", "cpu=0", "rss=-1", "locks=1", "data=-1", "fsize=1:2", "nproc=-1"];
  expect(untrustedUlimitProblems(atCaps)).toEqual([]);
  const overCaps = ["nofile=1048577", "nofile=1:1048577", "msgqueue=819201", "msgqueue=1:-1", "sigpending=65537", "sigpending=-1:-1", "nofile=-1:1"];
  // Not a limit this shape names: the worker's own parse would refuse it, or it is no limit the list allows.
  const malformed = ["memlock=1", "rtprio=0", "NOFILE=1", "nofile", "nofile=", "nofile=1:", "nofile=1x", " nofile=1", "nofile=1 ", "xnofile=1", "toString=1", "constructor=1", "nofile=1:2:3"];
  const problems = untrustedUlimitProblems([...overCaps, ...malformed]);
  expect(problems).toHaveLength(overCaps.length + malformed.length);
  [...overCaps, ...malformed].forEach((spec, i) => expect(problems[i]).toBe(`--ulimit ${spec}: a read-only token's build may set only limits that bound its own RUNs (core, cpu, data, fsize, locks, nproc, rss, stack, nofile up to 1048576, msgqueue up to 819200, sigpending up to 65536) (submit it with a read-write token)`));
});
