/**
 * What the fuzz harness feeds: every parser that reads untrusted bytes. Each target turns one
 * input into "accepted" or a clean rejection (an error a user would see, with its message); any
 * other throw — a TypeError, a RangeError, a stack overflow — is a crash.
 */
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { UserError } from "../../src/errors.ts";
import { DockerfileError } from "../../src/frontend/errors.ts";
import { planDockerfile } from "../../src/frontend/plan.ts";
import { ExpansionError, expandWords } from "../../src/frontend/shell-lex.ts";
import { IgnoreMatcher, IgnorePatternError, parseIgnoreFile } from "../../src/context/dockerignore.ts";
import { archiveKindOf } from "../../src/executor/archive.ts";
import { TarReader } from "../../src/sys/tar.ts";
import { conformanceRoot } from "../support/conformance.ts";
import { tarBytes } from "../support/tar.ts";
import { parseImageConfig, parseImageIndex, parseImageManifest } from "../../src/image/validate.ts";
import { parseDockerArchiveManifest } from "../../src/image/layout.ts";
import { parseChallenge, tokenRealm } from "../../src/registry/client.ts";
import { extractLayer } from "../../src/snapshot/extract.ts";

export interface Target {
  name: string;
  /** Valid (or nearly valid) inputs that mutation starts from. */
  seeds(): Buffer[];
  /** Runs one input; returns a short outcome ("accepted" or the rejection's message). */
  run(input: Buffer): string;
}

/** Errors a parser may throw at bad input: each is reported to the user as it is. */
const isCleanRejection = (error: unknown) =>
  error instanceof UserError || error instanceof DockerfileError || error instanceof ExpansionError || error instanceof IgnorePatternError;

function outcome(fn: () => void): string {
  try {
    fn();
    return "accepted";
  } catch (error) {
    if (isCleanRejection(error)) return (error as Error).message;
    throw error;
  }
}

/** Where targets that need files write them: a tmpfs when there is one. */
const scratch = join(existsSync("/dev/shm") ? "/dev/shm" : "/tmp", `memobuild-fuzz-${process.pid}`);
export const removeScratch = () => rmSync(scratch, { recursive: true, force: true });
function scratchFile(name: string, bytes: Buffer): string {
  mkdirSync(scratch, { recursive: true });
  const path = join(scratch, name);
  writeFileSync(path, bytes);
  return path;
}

const TAR_SEEDS = () => [
  tarBytes([[{ name: "etc", type: "dir", mode: 0o755 }], [{ name: "etc/passwd" }, "root:x:0:0::/root:/bin/sh\n"]]),
  tarBytes([[{ name: "bin/sh", type: "symlink", linkname: "/bin/busybox" }], [{ name: "bin/ls", type: "hardlink", linkname: "bin/sh" }]]),
  tarBytes([[{ name: `${"long/".repeat(30)}name`, uid: 99_999_999, xattrs: { "user.k": "v" } }, "x"]]),
  tarBytes([[{ name: "d/.wh.gone" }], [{ name: "d/.wh..wh..opq" }], [{ name: "dev/null", type: "char", devmajor: 1, devminor: 3 }], [{ name: "p", type: "fifo" }]]),
];

const tarReader: Target = {
  name: "tar",
  seeds: TAR_SEEDS,
  run(input) {
    const path = scratchFile("input.tar", input);
    return outcome(() => {
      const reader = new TarReader(path);
      try {
        for (let entry = reader.next(); entry; entry = reader.next()) for (const _ of reader.readContent(64 * 1024));
      } finally {
        reader.close();
      }
    });
  },
};

/** Unpacking, with the root-confined file system: nothing may appear outside the destination. */
const tarExtract: Target = {
  name: "tar-extract",
  seeds: TAR_SEEDS,
  run(input) {
    const path = scratchFile("layer.tar", input);
    const box = join(scratch, "box");
    const destination = join(box, "root");
    rmSync(box, { recursive: true, force: true });
    mkdirSync(destination, { recursive: true });
    try {
      return outcome(() => extractLayer(path, destination));
    } finally {
      const outside = readdirSync(box);
      rmSync(box, { recursive: true, force: true });
      if (outside.length !== 1) throw new Error(`extraction wrote outside its root: ${outside.join(", ")}`);
    }
  },
};

const compressionFront: Target = {
  name: "archive-front",
  seeds() {
    const tar = TAR_SEEDS()[0];
    const seeds = [tar, Buffer.from(Bun.gzipSync(new Uint8Array(tar))), Buffer.from(Bun.gzipSync(new Uint8Array(Buffer.from("not a tar"))))];
    for (const tool of ["bzip2", "xz"]) {
      const result = Bun.spawnSync([tool, "-c"], { stdin: tar, stdout: "pipe" });
      if (result.exitCode === 0) seeds.push(Buffer.from(result.stdout));
    }
    return seeds;
  },
  run(input) {
    const path = scratchFile("archive", input);
    const fd = openSync(path, "r");
    try {
      let kind: string | undefined;
      const result = outcome(() => void (kind = archiveKindOf(fd)));
      return result === "accepted" ? `kind ${kind}` : result;
    } finally {
      closeSync(fd);
    }
  },
};

const DIGEST = `sha256:${"ab".repeat(32)}`;
const imageJson: Target = {
  name: "image-json",
  seeds: () =>
    [
      { schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: DIGEST, size: 123 }, layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: DIGEST, size: 456 }] },
      { schemaVersion: 2, manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", digest: DIGEST, size: 7, platform: { os: "linux", architecture: "amd64" } }] },
      { architecture: "amd64", os: "linux", config: { Env: ["PATH=/bin"], Cmd: ["sh"] }, rootfs: { type: "layers", diff_ids: [DIGEST, DIGEST] } },
      [{ Config: "c.json", RepoTags: ["a:b"], Layers: ["l/layer.tar"] }],
    ].map((value) => Buffer.from(JSON.stringify(value, null, 1))),
  run(input) {
    return [
      outcome(() => void parseImageIndex(input, "index")),
      outcome(() => void parseImageManifest(input, "manifest")),
      outcome(() => void parseImageConfig(input, "config", 2)),
      outcome(() => void parseDockerArchiveManifest(input, "manifest.json")),
    ].join(" | ");
  },
};

/** The conformance data's files, when it is there: extra seeds only, so the harness runs without it. */
function conformanceFiles(subdir: string, name: (file: string) => boolean): Buffer[] {
  const dir = join(conformanceRoot(), subdir);
  if (!existsSync(dir)) return [];
  const files: Buffer[] = [];
  const visit = (path: string) => {
    for (const entry of readdirSync(path)) {
      const full = join(path, entry);
      if (statSync(full).isDirectory()) visit(full);
      else if (name(entry)) files.push(readFileSync(full));
    }
  };
  visit(dir);
  return files;
}

const DOCKERFILE_SEEDS = [
  "# syntax=docker/dockerfile:1\nARG BASE=alpine\nFROM ${BASE} AS build\nWORKDIR /src\nCOPY --chown=1:1 --chmod=644 a* b/ ./\nRUN --mount=type=cache,target=/c --mount=type=secret,id=s <<EOF\necho hi\nEOF\nFROM scratch\nCOPY --from=build /src /\nENV A=1 B=\"two words\"\nEXPOSE 80/tcp 9000-9002\nHEALTHCHECK --interval=5s CMD [\"true\"]\nONBUILD RUN x\nENTRYPOINT [\"/a\"]\n",
  "FROM busybox\nSHELL [\"/bin/sh\", \"-c\"]\nUSER 1000:1000\nVOLUME [\"/v\"]\nLABEL a=b \\\n  c=d\nSTOPSIGNAL SIGTERM\nADD --checksum=sha256:" + "0".repeat(64) + " https://example.com/x /x\nCMD echo ${HOME:-none} ${X:+y}\n",
  "# escape=`\nFROM scratch\nCOPY a `\n  b /\n",
];

const dockerfile: Target = {
  name: "dockerfile",
  seeds: () => [...DOCKERFILE_SEEDS.map((s) => Buffer.from(s)), ...conformanceFiles("buildkit-parser", (f) => f === "Dockerfile")],
  run(input) {
    return outcome(() => void planDockerfile(input.toString("utf8"), { buildArgs: { A: "1" } }));
  },
};

const shellWords: Target = {
  name: "shell-words",
  seeds: () => [
    ...["hello${hi}bye", "a\"${space}\"b '${x}' \\$y", "${a:-${b:+c}} ${#} $1", "${X/a/b} ${X%%c}"].map((s) => Buffer.from(s)),
    ...conformanceFiles("buildkit-shell", () => true).flatMap((file) => file.toString("utf8").split("\n").filter((l) => l.includes("|")).slice(0, 50).map((l) => Buffer.from(l.split("|")[0]))),
  ],
  run(input) {
    const env = (name: string) => (name === "hi" ? "hi" : name === "space" ? "a  b" : undefined);
    return outcome(() => void expandWords(input.toString("utf8"), env));
  },
};

const dockerignore: Target = {
  name: "dockerignore",
  seeds: () => [
    ...["node_modules\n**/*.log\n!keep.log\n/build/\n# comment\n", "*\n!src\n!src/**/*.ts\nsrc/**/test\n", "[a-c]?x\\*\n**\n!**/\n"].map((s) => Buffer.from(s)),
    ...conformanceFiles("dockerignore", (f) => f.endsWith(".json")).flatMap((file) =>
      (JSON.parse(file.toString("utf8")) as { cases?: { patterns: string[] }[] }).cases?.slice(0, 200).map((c) => Buffer.from(c.patterns.join("\n"))) ?? [],
    ),
  ],
  run(input) {
    const text = input.toString("utf8");
    return outcome(() => {
      const matcher = new IgnoreMatcher(parseIgnoreFile(text));
      for (const path of ["a", "src/a.ts", "node_modules/x/y", "build", "keep.log", text.split("\n")[0].replace(/^!/, "")]) matcher.match(path);
    });
  },
};

const authChallenge: Target = {
  name: "auth-challenge",
  seeds: () =>
    [
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"',
      'Basic realm="registry"',
      'Bearer realm="http://127.0.0.1:5000/token",error="insufficient_scope"',
    ].map((s) => Buffer.from(s)),
  run(input) {
    return outcome(() => {
      const challenge = parseChallenge(input.toString("latin1"));
      if (challenge.scheme === "bearer" && challenge.params.realm) tokenRealm(challenge, "repository:x:pull", input.length % 2 === 0, "fuzz.example");
    });
  },
};

export const TARGETS: Target[] = [tarReader, tarExtract, compressionFront, imageJson, dockerfile, shellWords, dockerignore, authChallenge];
