import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { describeConformance } from "../../test/support/conformance.ts";
import { IgnoreMatcher, IgnorePatternError, parseIgnoreFile } from "./dockerignore.ts";

const toPatterns = (list: string[]) =>
  list.map((p) => (p.startsWith("!") ? { pattern: p.slice(1), exclusion: true } : { pattern: p, exclusion: false }));

describeConformance("moby/patternmatcher conformance", "dockerignore/cases.json", (file) => {
  const data = JSON.parse(readFileSync(file, "utf8")) as {
    cases: { patterns: string[]; path: string; excluded: boolean }[];
    ignorefile: { text: string; patterns: string[] };
  };
  test("has all 72 cases", () => expect(data.cases.length).toBe(72));
  data.cases.forEach((c, index) => {
    test(`#${index}: ${JSON.stringify(c.patterns)} ${c.excluded ? "excludes" : "keeps"} ${c.path}`, () => {
      expect(new IgnoreMatcher(toPatterns(c.patterns)).match(c.path).excluded).toBe(c.excluded);
    });
  });
  test("ignorefile: the file's text becomes the expected pattern list", () => {
    const parsed = parseIgnoreFile(data.ignorefile.text).map((p) => (p.exclusion ? "!" : "") + p.pattern);
    expect(parsed).toEqual(data.ignorefile.patterns);
  });
});

describe("matcher behaviour", () => {
  const matcher = (text: string) => new IgnoreMatcher(parseIgnoreFile(text, ".dockerignore"));

  test("reports the deciding pattern and its line", () => {
    const m = matcher("# comment\nnode_modules\n*.log\n!keep.log\n");
    expect(m.match("node_modules/x/y.js")).toMatchObject({ excluded: true, decidedBy: { pattern: "node_modules", source: { line: 2 } } });
    expect(m.match("keep.log")).toMatchObject({ excluded: false, decidedBy: { pattern: "keep.log", exclusion: true, source: { line: 4 } } });
    expect(m.match("src/a.log")).toEqual({ excluded: false, decidedBy: undefined }); // * does not cross /
  });

  test("a lone ! is an error naming the line", () => {
    expect(() => matcher("a\n!\n")).toThrow(new IgnorePatternError('.dockerignore:2: illegal exclusion pattern: "!"'));
  });

  test("a malformed character class is an error naming the line", () => {
    expect(() => matcher("ok\n\n[z-a]\n")).toThrow(/^\.dockerignore:3: invalid pattern "\[z-a\]"/);
  });

  test("whether an exception could match below an excluded directory", () => {
    const m = matcher("vendor\n!vendor/keep/**\n");
    expect(m.exceptionCouldMatchBelow("vendor")).toBe(true);
    expect(m.exceptionCouldMatchBelow("vendor/keep")).toBe(true);
    expect(m.exceptionCouldMatchBelow("vendor/drop")).toBe(false);
    expect(matcher("build\n!*.md\n").exceptionCouldMatchBelow("build")).toBe(false);
    expect(matcher("build\n!**/*.md\n").exceptionCouldMatchBelow("build")).toBe(true);
    expect(matcher("build\n!b*/x\n").exceptionCouldMatchBelow("build")).toBe(true);
  });
});
