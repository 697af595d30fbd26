import { expect, test } from "bun:test";
import { blake3Hex } from "../hash/blake3.ts";
import { BloomFilter } from "./bloom.ts";

const keys = (n: number, salt: string) => Array.from({ length: n }, (_, i) => blake3Hex(`${salt}${i}`));

test("holds every key added; few others; survives its text form", () => {
  const held = keys(2000, "held");
  const filter = BloomFilter.decode(BloomFilter.of(held).encode());
  expect(held.every((k) => filter.has(k))).toBe(true);
  const falsePositives = keys(2000, "other").filter((k) => filter.has(k)).length;
  expect(falsePositives).toBeLessThan(40);
});

test("anything that is not a filter reads as an empty one", () => {
  for (const junk of [undefined, 42, "", "not base64!", Buffer.alloc(10).toString("base64")]) expect(BloomFilter.decode(junk).has(keys(1, "x")[0])).toBe(false);
  expect(BloomFilter.of(["not-a-key"]).has("not-a-key")).toBe(false);
});
