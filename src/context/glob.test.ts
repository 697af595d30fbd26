import { describe, expect, test } from "bun:test";
import { BadPatternError, compileGlob, decodeRune, hasWildcards, splitWildcards } from "./glob.ts";

/**
 * [pattern, name, Go's answer]: `true`/`false` from path/filepath.Match, "bad" for ErrBadPattern.
 * Every row was checked against Go 1.19's filepath.Match (the Go that Debian's dockerd is built
 * with); names given as byte arrays are not valid UTF-8.
 */
const GO_MATCH_CASES: [string, string | number[], boolean | "bad"][] = [
  // stars and question marks never take a slash
  ["*", "abc", true],
  ["*", "a/b", false],
  ["a*", "a", true],
  ["*c", "abc", true],
  ["a*b*c", "axxbyyc", true],
  ["a*b*c", "axxbyy", false],
  ["a*/b", "abc/b", true],
  ["a*/b", "a/c/b", false],
  ["a*b", "a/b", false],
  ["*x", "xxx", true],
  ["a*b?c*x", "abxbbxdbxebxczzx", true],
  ["a*b?c*x", "abxbbxdbxebxczzy", false],
  ["?", "/", false],
  ["a?b", "a/b", false],
  ["?", "ü", true],
  ["??", "ü", false],
  ["a/*/c", "a/b/c", true],
  ["", "", true],
  ["", "a", false],
  // classes: ^ negates, ! is an ordinary character
  ["[!a].txt", "!.txt", true],
  ["[!a].txt", "a.txt", true],
  ["[!a].txt", "b.txt", false],
  ["[^a].txt", "b.txt", true],
  ["[^a].txt", "a.txt", false],
  ["[^a].txt", "!.txt", true],
  ["[^a]", "/", true],
  ["[a/]", "/", true],
  ["[a-c]x", "bx", true],
  ["[a-c]x", "dx", false],
  ["[^a-c]x", "dx", true],
  ["[c-a]", "b", false],
  ["[c-a]", "c", false],
  ["[a-cx-z]", "y", true],
  ["[ä-ü]", "ö", true],
  ["[ä-ü]", "o", false],
  ["[^ü]", "ü", false],
  ["[*]", "*", true],
  ["[*]", "a", false],
  ["[?]", "?", true],
  ["[[]", "[", true],
  ["[^]]", "a", "bad"],
  ["]", "]", true],
  ["a]b", "a]b", true],
  // escapes, inside and outside classes
  ["\\*", "*", true],
  ["\\*", "a", false],
  ["a\\b", "ab", true],
  ["a\\b", "a\\b", false],
  ["\\[a]", "[a]", true],
  ["[\\]]", "]", true],
  ["[\\-]", "-", true],
  ["[x\\-]", "-", true],
  ["[\\-x]", "x", true],
  ["[a\\-z]", "b", false],
  ["[\\^a]", "^", true],
  ["[\\\\]", "\\", true],
  ["[a-\\z]", "m", true],
  // ErrBadPattern, wherever it stands
  ["[", "a", "bad"],
  ["[a", "a", "bad"],
  ["[^", "a", "bad"],
  ["[]", "a", "bad"],
  ["[]a]", "]", "bad"],
  ["[^]a]", "b", "bad"],
  ["[-]", "-", "bad"],
  ["[-a]", "a", "bad"],
  ["[a-]", "a", "bad"],
  ["[x-]", "x", "bad"],
  ["[a-b-c]", "a", "bad"],
  ["\\", "a", "bad"],
  ["a\\", "a", "bad"],
  ["[\\", "a", "bad"],
  ["[a\\", "a", "bad"],
  ["a[", "x", "bad"],
  ["*x[", "abc", "bad"],
  ["a*b[", "ab", "bad"],
  ["[*", "*", "bad"],
  // bytes that are not UTF-8: one rune (U+FFFD) per bad byte, compared as bytes otherwise
  ["?", [0xff], true],
  ["??", [0xc3], false],
  ["a?b", [0x61, 0xe2, 0x82, 0x62], false],
  ["a??b", [0x61, 0xe2, 0x82, 0x62], true],
  ["[^a]", [0xff], true],
  ["[\uFFFD]", [0xff], true],
  ["*", [0x61, 0xff, 0x62], true],
];

describe("compileGlob follows Go's filepath.Match", () => {
  for (const [pattern, name, expected] of GO_MATCH_CASES) {
    test(`${JSON.stringify(pattern)} vs ${JSON.stringify(name)} → ${expected}`, () => {
      const bytes = typeof name === "string" ? name : Uint8Array.from(name);
      if (expected === "bad") {
        expect(() => compileGlob(pattern)).toThrow(BadPatternError);
      } else {
        expect(compileGlob(pattern).matches(bytes)).toBe(expected);
      }
    });
  }

  test("a malformed pattern is refused even where Go 1.19 gives up before reading that far", () => {
    // Go 1.19 answers false for "x*[" vs "y" (the first chunk fails, the rest is never parsed);
    // BuildKit drops the error either way and copies nothing. A typo is refused here as a whole.
    expect(() => compileGlob("x*[")).toThrow(BadPatternError);
  });

  test("a long run of stars against a long name stays linear per star", () => {
    const glob = compileGlob(`${"a*".repeat(60)}b`);
    expect(glob.matches("a".repeat(5000))).toBe(false);
  });
});

describe("which sources are patterns (BuildKit's containsWildcards)", () => {
  test("an escaped wildcard is a plain name", () => {
    expect(hasWildcards("a\\*b")).toBe(false);
    expect(hasWildcards("a\\[b]")).toBe(false);
    expect(hasWildcards("a\\\\*b")).toBe(true);
    expect(hasWildcards("a]b")).toBe(false);
    expect(hasWildcards("a[b")).toBe(true);
    expect(hasWildcards("?")).toBe(true);
  });

  test("the components before the first pattern are a plain path", () => {
    expect(splitWildcards("a\\b/c*/d\\e")).toEqual({ prefix: "a\\b", pattern: "c*/d\\e" });
    expect(splitWildcards("*.txt")).toEqual({ prefix: "", pattern: "*.txt" });
    expect(splitWildcards("a/b")).toEqual({ prefix: "a/b", pattern: "" });
  });
});

describe("decodeRune reads UTF-8 as Go does", () => {
  const cases: [number[], [number, number]][] = [
    [[0x41], [0x41, 1]],
    [[0xc3, 0xbc], [0xfc, 2]],
    [[0xe2, 0x82, 0xac], [0x20ac, 3]],
    [[0xf0, 0x9f, 0x98, 0x80], [0x1f600, 4]],
    [[0xc0, 0x80], [0xfffd, 1]], // overlong
    [[0xe0, 0x80, 0x80], [0xfffd, 1]], // overlong
    [[0xed, 0xa0, 0x80], [0xfffd, 1]], // surrogate
    [[0xf4, 0x90, 0x80, 0x80], [0xfffd, 1]], // past U+10FFFF
    [[0xf5, 0x80, 0x80, 0x80], [0xfffd, 1]],
    [[0xe2, 0x82], [0xfffd, 1]], // truncated
    [[0xe2, 0x41, 0x41], [0xfffd, 1]],
    [[0x80], [0xfffd, 1]],
  ];
  for (const [bytes, expected] of cases) {
    test(bytes.map((b) => b.toString(16)).join(" "), () => expect(decodeRune(Uint8Array.from(bytes), 0)).toEqual(expected));
  }
});
