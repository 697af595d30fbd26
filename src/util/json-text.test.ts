import { describe, expect, test } from "bun:test";
import { errorOffset, parseJsonText } from "./json-text.ts";

describe("parseJsonText", () => {
  test("parses JSON; a mistake names the place and never the text", () => {
    expect(parseJsonText('{"a": [1, 2.5e3, true, null, "x\\u00e9"]}', "f")).toEqual({ a: [1, 2500, true, null, "xé"] });
    const token = "ghp_0123456789abcdefSECRET";
    expect(() => parseJsonText(token, "memobuild.json")).toThrow("memobuild.json: not valid JSON (line 1, column 1); its content is not shown");
    let message = "";
    try {
      parseJsonText(`{\n  "context": ".",\n  "x": ${token}\n}`, "memobuild.json");
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toBe("memobuild.json: not valid JSON (line 3, column 8); its content is not shown");
    expect(message).not.toContain("ghp_");
  });

  test("the offset is where the text stops being JSON", () => {
    const cases: [string, number][] = [
      ["", 0],
      ['{"a": 1', 7],
      ['{"a": 1,}', 8],
      ['{"a": 1}x', 8],
      ["[1 2]", 3],
      ['"ab\ncd"', 3],
      ['"\\q"', 2],
      ["[01]", 2],
      ["-", 0],
      ["tru", 3],
      ["nul!", 3],
      ['{"a" 1}', 5],
      ["[".repeat(3000), 2000],
    ];
    for (const [text, offset] of cases) expect([text.slice(0, 12), errorOffset(text)]).toEqual([text.slice(0, 12), offset]);
    expect(errorOffset('{"valid": [true]}')).toBe(17);
  });
});
