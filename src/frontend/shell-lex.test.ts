import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { describeConformance } from "../../test/support/conformance.ts";
import { envFromMap, expand, expandWord, expandWords } from "./shell-lex.ts";

/** BuildKit's envVarTest: `PLATFORM|input|expected`, run for every A (all) and U (unix) line. */
describeConformance("BuildKit envVarTest conformance", "buildkit-shell/envVarTest", (file) => {
  const env = envFromMap({ PWD: "/home", SHELL: "bash", KOREAN: "한국어", NULL: "" });
  const lines = readFileSync(file, "utf8").split("\n");
  const cases = lines
    .map((line, index) => ({ line, number: index + 1 }))
    .filter(({ line }) => !line.startsWith("#") && line.trim() !== "")
    .map(({ line, number }) => {
      const parts = line.split("|");
      if (parts.length !== 3) throw new Error(`envVarTest:${number}: expected 3 fields`);
      return { number, platform: parts[0].trim(), input: parts[1].trim(), expected: parts[2].trim() };
    })
    .filter((c) => c.platform === "A" || c.platform === "U");

  test("has the full suite", () => expect(cases.length).toBeGreaterThan(200));

  for (const c of cases) {
    test(`line ${c.number}: ${c.input}`, () => {
      if (c.expected === "error") {
        expect(() => expandWord(c.input, env)).toThrow();
      } else {
        expect(expandWord(c.input, env)).toBe(c.expected);
      }
    });
  }
});

/** BuildKit's wordsTest: `ENV k=v` lines extend the environment; `input | w1,w2`. */
describeConformance("BuildKit wordsTest conformance", "buildkit-shell/wordsTest", (file) => {
  const lines = readFileSync(file, "utf8").split("\n");
  const vars = new Map<string, string>();
  let count = 0;
  lines.forEach((line, index) => {
    if (line.startsWith("#") || line === "") return;
    if (line.startsWith("ENV ")) {
      const assignment = line.slice(3).replace(/^ +/, "");
      const eq = assignment.indexOf("=");
      const name = assignment.slice(0, eq);
      if (!vars.has(name)) vars.set(name, assignment.slice(eq + 1)); // first definition wins, as in BuildKit
      return;
    }
    const parts = line.split("|");
    if (parts.length !== 2) throw new Error(`wordsTest:${index + 1}: expected exactly one |`);
    const input = parts[0].trim();
    const expected = parts[1].replace(/^ +/, "").split(",");
    const env = envFromMap(new Map(vars));
    count++;
    test(`line ${index + 1}: ${input}`, () => {
      let result: string[];
      try {
        result = expandWords(input, env);
      } catch {
        result = ["error"];
      }
      expect(result).toEqual(expected);
    });
  });
  test("has the full suite", () => expect(count).toBeGreaterThanOrEqual(24));
});

describe("expansion details", () => {
  const env = envFromMap({ FILE: "archive.tar.gz", PATHS: "/a/b/c" });
  test("prefix and suffix trimming, shortest and longest", () => {
    expect(expandWord("${FILE#*.}", env)).toBe("tar.gz");
    expect(expandWord("${FILE##*.}", env)).toBe("gz");
    expect(expandWord("${FILE%.*}", env)).toBe("archive.tar");
    expect(expandWord("${FILE%%.*}", env)).toBe("archive");
  });
  test("substitution, first and all", () => {
    expect(expandWord("${PATHS/[b]/x}", env)).toBe("/a/b/c");
    expect(expandWord("${PATHS/?/:}", env)).toBe(":a/b/c");
    expect(expandWord("${FILE//a/_}", env)).toBe("_rchive.t_r.gz");
    expect(() => expandWord("${PATHS/\\//:}", env)).toThrow(/invalid escape/);
  });
  test("reports which variables were used", () => {
    const result = expand("$FILE ${MISSING:-x}", env);
    expect([...result.matched]).toEqual(["FILE"]);
    expect([...result.unmatched]).toEqual(["MISSING"]);
  });
  test("the backtick escape token", () => {
    expect(expandWord("a`$FILE", env, { escapeToken: "`" })).toBe("a$FILE");
    expect(expandWord("C:\\dir", env, { escapeToken: "`" })).toBe("C:\\dir");
  });
  test("errors name the input", () => {
    expect(() => expandWord("${FILE", env)).toThrow(/failed to process "\$\{FILE": syntax error: missing '}'/);
  });
});
