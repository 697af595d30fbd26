/** The build checks: each rule on a Dockerfile that breaks it and on one that does not, and the check directive. */
import { describe, expect, test } from "bun:test";
import { lintDockerfile, RULES } from "./lint.ts";
import { parseDockerfile } from "./parser.ts";
import { plan } from "./plan.ts";

const check = (text: string) => {
  const parsed = parseDockerfile(text, "Dockerfile");
  // A base image with a known (empty) ENV, so undefined variables can be told.
  return lintDockerfile(parsed, plan(parsed, { images: () => ({ env: ["PATH=/bin"], onbuild: [] }) })).map((f) => `${f.line} ${f.rule}: ${f.message}`);
};

describe("each rule, broken and kept", () => {
  const cases: [string, string, string, string[]][] = [
    ["StageNameCasing", "FROM base AS Build\n", "FROM base AS build\n", ["1 StageNameCasing: Stage name 'Build' should be lowercase"]],
    ["FromAsCasing", "FROM base as build\n", "from base as build\n", ["1 FromAsCasing: 'as' and 'FROM' keywords' casing do not match"]],
    ["ConsistentInstructionCasing", "FROM base\nRUN a\nrun b\n", "from base\nrun a\nrun b\n", ["3 ConsistentInstructionCasing: Command 'run' should match the case of the command majority (uppercase)"]],
    ["ReservedStageName", "FROM base AS context\n", "FROM base AS ctx\n", ["1 ReservedStageName: 'context' is reserved and should not be used as a stage name"]],
    ["JSONArgsRecommended", "FROM base\nENTRYPOINT run me\n", 'FROM base\nENTRYPOINT ["run", "me"]\n', ["2 JSONArgsRecommended: JSON arguments recommended for ENTRYPOINT to prevent unintended behavior related to OS signals"]],
    ["MaintainerDeprecated", "FROM base\nMAINTAINER me\n", "FROM base\nLABEL org.opencontainers.image.authors=me\n", ["2 MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label"]],
    ["UndefinedVar", "FROM base\nENV P=$PAHT:/x\n", "FROM base\nENV P=$PATH:/x\n", ["2 UndefinedVar: Usage of undefined variable '$PAHT' (did you mean $PATH?)"]],
    ["UndefinedArgInFrom", "FROM base:$V\n", "ARG V=1\nFROM base:$V\n", ["1 UndefinedArgInFrom: FROM argument 'V' is not declared"]],
    ["SecretsUsedInArgOrEnv", "FROM base\nARG GITHUB_TOKEN\n", "FROM base\nARG TOKEN_FILE\n", ['2 SecretsUsedInArgOrEnv: Do not use ARG or ENV instructions for sensitive data (ARG "GITHUB_TOKEN")']],
    ["WorkdirRelativePath", "FROM base\nWORKDIR app\n", "FROM base\nWORKDIR /srv\nWORKDIR app\n", ["2 WorkdirRelativePath: Relative workdir 'app' can have unexpected results if the base image changes"]],
    ["MultipleInstructionsDisallowed", 'FROM base\nCMD ["a"]\nCMD ["b"]\n', 'FROM base\nCMD ["a"]\nFROM base\nCMD ["b"]\n', ["2 MultipleInstructionsDisallowed: Multiple CMD instructions should not be used in the same stage because only the last one will be used"]],
    ["LegacyKeyValueFormat", "FROM base\nENV A b\n", "FROM base\nENV A=b\n", ['2 LegacyKeyValueFormat: "ENV key=value" should be used instead of legacy "ENV key value" format']],
    ["NoEmptyContinuation", "FROM base\nRUN a \\\n\n  b\n", "FROM base\nRUN a \\\n  b\n", ["2 NoEmptyContinuation: Empty continuation line"]],
  ];
  for (const [rule, broken, kept, found] of cases) {
    test(rule, () => {
      expect(check(broken)).toEqual(found);
      expect(check(kept)).toEqual([]);
    });
  }

  test("every rule is tried here (a new rule gets a case)", () => {
    expect(new Set(cases.map((c) => c[0]))).toEqual(new Set(RULES));
  });

  test("variables in shell-form RUN, CMD and ENTRYPOINT are the shell's: never undefined", () => {
    expect(check('FROM base\nRUN echo $HOME $NOPE\nCMD ["sh", "-c", "echo $NOPE"]\n')).toEqual([]);
  });
});

describe("the check directive", () => {
  test("skip= turns rules off, skip=all every rule", () => {
    expect(check("# check=skip=JSONArgsRecommended,StageNameCasing\nFROM base AS Build\nCMD run\n")).toEqual([]);
    expect(check("# check=skip=all\nFROM base as Build\nCMD run\nMAINTAINER me\n")).toEqual([]);
  });
});
