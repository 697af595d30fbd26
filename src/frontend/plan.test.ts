import { describe, expect, test } from "bun:test";
import { planDockerfile, type Plan } from "./plan.ts";
import type { Instruction } from "./instructions.ts";

const platform = { os: "linux", architecture: "amd64" };
const planOf = (text: string, buildArgs: Record<string, string> = {}) =>
  planDockerfile(text, { file: "Dockerfile", buildArgs, platform });
const texts = (plan: Plan, stage = plan.stages.length - 1) => plan.stages[stage].steps.map((s) => s.text);
const instruction = <K extends Instruction["kind"]>(plan: Plan, id: string, kind: K) => {
  const step = plan.stages.flatMap((s) => s.steps).find((s) => s.id === id)!;
  expect(step.instruction.kind).toBe(kind);
  return step.instruction as Instruction & { kind: K };
};

describe("ARG scoping", () => {
  const dockerfile = [
    "ARG IMAGE=busybox",
    "ARG TAG=1.36",
    "FROM ${IMAGE}:${TAG} AS base", // meta args reach FROM
    "RUN echo $TAG", // ...but not the stage
    "ARG TAG", // until it is redeclared
    "WORKDIR /w/$TAG",
    "ARG LOCAL=local-$TAG",
    "FROM base AS child", // child stages inherit the parent's ARGs and ENV
    "WORKDIR /c/$LOCAL",
    "FROM busybox AS other", // an unrelated stage does not
    "WORKDIR /o/${LOCAL:-none}",
  ].join("\n");

  test("defaults", () => {
    const plan = planOf(dockerfile);
    expect(plan.stages[0].base).toEqual({ kind: "image", ref: "busybox:1.36" });
    expect(plan.stages[0].steps[1].runEnv).toEqual([]);
    expect(instruction(plan, "base/3", "WORKDIR").path).toBe("/w/1.36");
    expect(instruction(plan, "child/1", "WORKDIR").path).toBe("/c/local-1.36");
    expect(instruction(plan, "other/1", "WORKDIR").path).toBe("/o/none");
  });

  test("--build-arg overrides meta and stage ARGs", () => {
    const plan = planOf(dockerfile, { TAG: "1.35", LOCAL: "x", NOPE: "1" });
    expect(plan.stages[0].base).toEqual({ kind: "image", ref: "busybox:1.35" });
    expect(instruction(plan, "base/3", "WORKDIR").path).toBe("/w/1.35");
    expect(instruction(plan, "child/1", "WORKDIR").path).toBe("/c/x");
    expect(plan.unusedBuildArgs).toEqual(["NOPE"]);
  });

  test("a meta ARG without default takes only the build arg", () => {
    const text = "ARG V\nFROM img:${V:-latest}\n";
    expect(planOf(text).stages[0].base).toEqual({ kind: "image", ref: "img:latest" });
    expect(planOf(text, { V: "2" }).stages[0].base).toEqual({ kind: "image", ref: "img:2" });
  });

  test("ENV and ARG: later assignment wins for expansion; RUN sees both", () => {
    const plan = planOf("FROM a\nARG A=1\nENV B=$A A=env\nRUN x\nWORKDIR /$A/$B\n");
    expect(instruction(plan, "0/2", "ENV").pairs).toEqual([["B", "1"], ["A", "env"]]);
    expect(plan.stages[0].steps[3].runEnv).toEqual([["A", "env"], ["B", "1"]]);
    expect(instruction(plan, "0/4", "WORKDIR").path).toBe("/env/1");
  });

  test("usedArgs: only steps that read an ARG depend on it", () => {
    const plan = planOf("FROM a\nARG V=1\nCOPY a /a\nCOPY b /b-$V\nRUN make\nENV X=1\n");
    const used = Object.fromEntries(plan.stages[0].steps.map((s) => [s.id, s.usedArgs]));
    expect(used["0/2"]).toEqual([]);
    expect(used["0/3"]).toEqual(["V"]);
    expect(used["0/4"]).toEqual(["V"]); // RUN gets every ARG in scope as environment
    expect(used["0/5"]).toEqual([]);
  });

  test("automatic platform args in FROM, and in a stage once declared", () => {
    const plan = planOf("FROM --platform=$BUILDPLATFORM a\nRUN echo $TARGETARCH\nARG TARGETARCH\nWORKDIR /$TARGETARCH\n");
    expect(instruction(plan, "0/0", "FROM").platform).toBe("linux/amd64");
    expect(instruction(plan, "0/3", "WORKDIR").path).toBe("/amd64");
  });

  test("ENV old and new forms, quotes and escapes", () => {
    const plan = planOf('FROM a\nENV A 1 2 3\nENV B="x y" C=z\\ w D=\'$A\'\n');
    expect(instruction(plan, "0/1", "ENV").pairs).toEqual([["A", "1 2 3"]]);
    expect(instruction(plan, "0/2", "ENV").pairs).toEqual([["B", "x y"], ["C", "z w"], ["D", "$A"]]);
  });
});

describe("instructions", () => {
  test("heredocs: COPY expands unquoted bodies, RUN keeps them for the shell", () => {
    const plan = planOf(
      ["FROM a", "ARG NAME=world", "COPY <<EOF <<'RAW' /etc/", "hello $NAME \"quoted\"", "EOF", "literal $NAME", "RAW", "RUN <<SH", "echo $NAME", "SH"].join("\n"),
    );
    const copy = instruction(plan, "0/2", "COPY");
    expect(copy.inline).toEqual([
      { name: "EOF", content: 'hello world "quoted"\n' },
      { name: "RAW", content: "literal $NAME\n" },
    ]);
    expect(copy.dest).toBe("/etc/");
    expect(texts(plan)[2]).toBe('COPY <<EOF <<RAW /etc/\nhello world "quoted"\nEOF\nliteral $NAME\nRAW');
    const run = instruction(plan, "0/3", "RUN");
    expect(run.heredocs).toEqual([{ name: "SH", content: "echo $NAME\n" }]);
    expect(run.command).toEqual({ form: "shell", text: "<<SH" });
  });

  test("escape directive: backtick escapes and Windows-style paths", () => {
    const plan = planOf("# escape=`\nFROM a\nENV P=C:\\dir `\n  Q=`$P\nWORKDIR $P\n");
    expect(instruction(plan, "0/1", "ENV").pairs).toEqual([["P", "C:\\dir"], ["Q", "$P"]]);
    expect(instruction(plan, "0/2", "WORKDIR").path).toBe("C:\\dir");
  });

  test("exec and shell forms", () => {
    const plan = planOf('FROM a\nCMD ["a", "b"]\nENTRYPOINT run --fast\nSHELL ["/bin/bash", "-c"]\n');
    expect(instruction(plan, "0/1", "CMD").command).toEqual({ form: "exec", args: ["a", "b"] });
    expect(instruction(plan, "0/2", "ENTRYPOINT").command).toEqual({ form: "shell", text: "run --fast" });
    expect(instruction(plan, "0/3", "SHELL").shell).toEqual(["/bin/bash", "-c"]);
  });

  test("COPY and ADD flags", () => {
    const plan = planOf(
      "FROM a AS s\nFROM a\nARG U=app\nCOPY --from=s --chown=$U:$U --chmod=0755 --link --parents --exclude=*.md --exclude=tmp a b /dst/\n" +
        "ADD --checksum=sha256:abc123 --keep-git-dir https://x/y.tar /y\n",
    );
    const copy = instruction(plan, "1/2", "COPY");
    expect(copy).toMatchObject({ from: "s", chown: "app:app", chmod: "0755", link: true, parents: true, excludes: ["*.md", "tmp"], sources: ["a", "b"], dest: "/dst/" });
    expect(plan.stages[1].steps[2].reads).toEqual([0]);
    const add = instruction(plan, "1/3", "ADD");
    expect(add).toMatchObject({ checksum: "sha256:abc123", keepGitDir: true, sources: ["https://x/y.tar"] });
  });

  test("--chmod takes any octal number up to 7777, as BuildKit's ParseUint base 8", () => {
    for (const mode of ["0", "7", "644", "0755", "00000644", "7777"]) {
      expect(instruction(planOf(`FROM a\nCOPY --chmod=${mode} a /a\n`), "0/1", "COPY").chmod).toBe(mode);
    }
    for (const mode of ["8", "u+x", "", "-1", "17777", "0x1ff", "7".repeat(40)]) {
      expect(() => planOf(`FROM a\nCOPY --chmod=${mode} a /a\n`)).toThrow(/invalid --chmod value .*octal mode from 0 to 7777/);
    }
  });

  test("RUN mounts", () => {
    const plan = planOf(
      "FROM a AS deps\nFROM a\nRUN --mount=type=cache,target=/c,sharing=locked --mount=type=bind,from=deps,source=/x,target=/x --mount=type=secret,id=tok --mount=type=tmpfs,target=/t,size=1m make\n",
    );
    const run = instruction(plan, "1/1", "RUN");
    expect(run.mounts).toEqual([
      { type: "cache", target: "/c", id: "/c", sharing: "locked", source: undefined, from: undefined, readonly: false, mode: 0o755, uid: 0, gid: 0 },
      { type: "bind", target: "/x", source: "/x", from: "deps", readonly: true },
      { type: "secret", id: "tok", target: "/run/secrets/tok", env: undefined, required: false, mode: 0o400, uid: 0, gid: 0 },
      { type: "tmpfs", target: "/t", sizeBytes: 1024 * 1024 },
    ]);
    expect(plan.stages[1].steps[1].reads).toEqual([0]);
    expect(plan.stages[1].steps[1].text).toBe(
      "RUN --mount=type=cache,target=/c,sharing=locked --mount=type=bind,target=/x,source=/x,from=deps --mount=type=secret,id=tok --mount=type=tmpfs,target=/t,sizeBytes=1048576 make",
    );
  });

  test("HEALTHCHECK forms", () => {
    const plan = planOf('FROM a\nHEALTHCHECK NONE\nHEALTHCHECK --interval=1m30s --retries=3 CMD curl -f http://x/\nHEALTHCHECK CMD ["check", "-q"]\n');
    expect(instruction(plan, "0/1", "HEALTHCHECK").healthcheck).toEqual({ type: "NONE" });
    expect(instruction(plan, "0/2", "HEALTHCHECK").healthcheck).toMatchObject({ type: "CMD", test: ["CMD-SHELL", "curl -f http://x/"], intervalMs: 90_000, retries: 3 });
    expect(instruction(plan, "0/3", "HEALTHCHECK").healthcheck).toMatchObject({ test: ["CMD", "check", "-q"] });
  });

  test("metadata instructions", () => {
    const plan = planOf("FROM a\nARG P=8080\nEXPOSE $P 53/UDP 9000-9002\nVOLUME [\"/data\", \"/logs\"]\nUSER app:app\nSTOPSIGNAL SIGQUIT\nLABEL a=b \"c d\"=e\nMAINTAINER me\n");
    expect(instruction(plan, "0/2", "EXPOSE").ports).toEqual(["8080/tcp", "53/udp", "9000/tcp", "9001/tcp", "9002/tcp"]);
    expect(instruction(plan, "0/3", "VOLUME").paths).toEqual(["/data", "/logs"]);
    expect(instruction(plan, "0/4", "USER").user).toBe("app:app");
    expect(instruction(plan, "0/5", "STOPSIGNAL").signal).toBe("SIGQUIT");
    expect(instruction(plan, "0/6", "LABEL").pairs).toEqual([["a", "b"], ["c d", "e"]]);
  });

  test("ONBUILD triggers run first in a stage built FROM the stage that declares them", () => {
    const plan = planOf("FROM a AS base\nONBUILD COPY . /app\nONBUILD RUN make\nFROM base\nRUN test\n");
    expect(instruction(plan, "base/1", "ONBUILD").parsed.kind).toBe("COPY");
    expect(texts(plan, 1)).toEqual(["FROM base", "COPY . /app", "RUN make", "RUN test"]);
    expect(plan.stages[1].steps[1].trigger).toMatchObject({ line: 4 });
  });

  test("ONBUILD triggers of a base image come from the image store", () => {
    const plan = planDockerfile("FROM img\nRUN echo $GOPATH\nWORKDIR $GOPATH\n", {
      platform,
      images: (ref) => (ref === "img" ? { env: ["GOPATH=/go"], onbuild: ["ENV FROM_IMAGE=1"] } : undefined),
    });
    expect(texts(plan)).toEqual(["FROM img", "ENV FROM_IMAGE=1", "RUN echo $GOPATH", "WORKDIR /go"]);
  });

  test("unnamed stages are referred to by index", () => {
    const plan = planOf("FROM a\nRUN x\nFROM b\nCOPY --from=0 /x /x\n");
    expect(plan.stages.map((s) => s.id)).toEqual(["0", "1"]);
    expect(plan.stages[1].steps[1].reads).toEqual([0]);
  });

  test("COPY --from an image is not a stage dependency", () => {
    const plan = planOf("FROM a\nCOPY --from=busybox:1.36 /bin/busybox /bin/\n");
    expect(plan.stages[0].steps[1].reads).toEqual([]);
  });
});
