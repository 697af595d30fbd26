import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describeConformance } from "../../test/support/conformance.ts";
import { dumpNode, goQuote, parseDockerfile } from "./parser.ts";

describeConformance("BuildKit parser testfiles", "buildkit-parser", (root) => {
  const names = readdirSync(root).sort();
  test("all 33 testfiles are present", () => expect(names.length).toBe(33));
  for (const name of names) {
    test(name, () => {
      const source = readFileSync(join(root, name, "Dockerfile"), "utf8");
      const expected = readFileSync(join(root, name, "result"), "utf8");
      const result = parseDockerfile(source, `${name}/Dockerfile`);
      const dump = result.children.map((node) => dumpNode(node) + "\n").join("");
      expect(dump).toBe(expected);
    });
  }
});

describe("parser details", () => {
  test("goQuote matches Go's strconv.Quote", () => {
    expect(goQuote('a"b\\c\td\n')).toBe('"a\\"b\\\\c\\td\\n"');
    expect(goQuote("한국어")).toBe('"한국어"');
    expect(goQuote("\x01")).toBe('"\\x01"');
  });

  test("heredocs: plain, quoted, chomped, several on one line", () => {
    const source = [
      "FROM scratch",
      "RUN <<EOF",
      "echo $HOME",
      "EOF",
      "COPY <<-'A' <<\"B\" /dest/",
      "\t\tliteral $X",
      "\tA",
      "second",
      "B",
      "RUN echo done",
    ].join("\n");
    const { children } = parseDockerfile(source);
    expect(children.map((c) => c.value)).toEqual(["FROM", "RUN", "COPY", "RUN"]);
    expect(children[1].heredocs).toEqual([
      { name: "EOF", content: "echo $HOME\n", expand: true, chomp: false, fileDescriptor: 0 },
    ]);
    expect(children[1].endLine).toBe(4);
    expect(children[2].heredocs.map((h) => [h.name, h.content, h.expand, h.chomp])).toEqual([
      ["A", "literal $X\n", false, true],
      ["B", "second\n", false, false],
    ]);
    expect(children[3].startLine).toBe(10);
  });

  test("JSON-form RUN does not take heredocs", () => {
    const { children } = parseDockerfile('FROM a\nRUN ["cat", "<<EOF"]\nEOF\n'.replace("EOF\n", "EOF\n"));
    expect(children[1].heredocs).toEqual([]);
  });

  test("unterminated heredoc names its start line", () => {
    expect(() => parseDockerfile("FROM a\nRUN <<EOF\necho\n", "df")).toThrow(/^df:2:1: unterminated heredoc/);
  });

  test("escape directive switches the continuation token", () => {
    const { children, escapeToken } = parseDockerfile("# escape=`\nFROM a\nRUN dir c:\\ `\n  && echo\n");
    expect(escapeToken).toBe("`");
    expect(dumpNode(children[1])).toBe('(run "dir c:\\\\   && echo")');
  });

  test("directives: duplicates are errors, late ones are comments", () => {
    expect(() => parseDockerfile("# escape=`\n# escape=\\\nFROM a\n", "d")).toThrow(
      /^d:2:1: only one escape parser directive/,
    );
    expect(() => parseDockerfile("# escape=x\nFROM a\n", "d")).toThrow(/^d:1:1: invalid escape token 'x'/);
    const late = parseDockerfile("FROM a\n# escape=`\nRUN a \\\n b\n");
    expect(late.escapeToken).toBe("\\");
    const syntax = parseDockerfile("# syntax=docker/dockerfile:1\nFROM a\n");
    expect(syntax.directives).toEqual([{ name: "syntax", value: "docker/dockerfile:1", line: 1 }]);
  });

  test("CRLF line endings and a byte-order mark", () => {
    const { children } = parseDockerfile("\uFEFFFROM a\r\nRUN x \\\r\n  y\r\n");
    expect(children.map(dumpNode)).toEqual(['(from "a")', '(run "x   y")']);
  });

  test("empty file is an error", () => {
    expect(() => parseDockerfile("# only a comment\n", "empty")).toThrow(/^empty:1:1: file with no instructions/);
  });
});
