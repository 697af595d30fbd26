import { expect, test } from "bun:test";
import { esc } from "./format.ts";

test("esc makes every character that can start markup or end an attribute a character reference", () => {
  expect(esc(`<img src=x onerror="a('b')">&amp;`)).toBe("&#60;img src=x onerror=&#34;a(&#39;b&#39;)&#34;&#62;&#38;amp;");
  // Every occurrence, not the first only.
  expect(esc(`""''<<>>&&`)).toBe("&#34;&#34;&#39;&#39;&#60;&#60;&#62;&#62;&#38;&#38;");
  expect(esc("plain text, no change")).toBe("plain text, no change");
});

test("esc of nothing is empty; other values are their text", () => {
  expect(esc(undefined)).toBe("");
  expect(esc(null)).toBe("");
  expect(esc(0)).toBe("0");
  expect(esc(false)).toBe("false");
});
