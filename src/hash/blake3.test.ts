import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describeConformance } from "../../test/support/conformance.ts";
import { Blake3Hasher, blake3Hex, hashFile } from "./blake3.ts";

interface Vector {
  input_len: number;
  hash: string;
  keyed_hash: string;
  derive_key: string;
}

/** The vectors' input: bytes 0, 1, …, 250, 0, 1, … */
const input = (length: number) => Uint8Array.from({ length }, (_, i) => i % 251);

const work = mkdtempSync(join(tmpdir(), "memobuild-b3-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

// The library has no extended output, so each vector's first 32 bytes (64 hex) are compared.
describeConformance("BLAKE3 official test vectors", "blake3/test_vectors.json", (file) => {
  const vectors = JSON.parse(readFileSync(file, "utf8")) as { key: string; context_string: string; cases: Vector[] };
  test("all 35 vectors are present", () => expect(vectors.cases.length).toBe(35));
  for (const v of vectors.cases) {
    test(`input length ${v.input_len}`, () => {
      const data = input(v.input_len);
      expect(blake3Hex(data)).toBe(v.hash.slice(0, 64));
      const keyed = Blake3Hasher.newKeyed(Buffer.from(vectors.key, "ascii"));
      expect(keyed.update(data).digest("hex")).toBe(v.keyed_hash.slice(0, 64));
      const derived = Blake3Hasher.newDeriveKey(vectors.context_string);
      expect(derived.update(data).digest("hex")).toBe(v.derive_key.slice(0, 64));
      // Streaming in uneven pieces gives the same hash.
      const streaming = new Blake3Hasher();
      for (let offset = 0; offset < data.length; offset += 1000) streaming.update(data.subarray(offset, offset + 1000));
      expect(streaming.digest("hex")).toBe(v.hash.slice(0, 64));
      // And so does hashing the bytes from a file.
      const file = join(work, `v${v.input_len}`);
      writeFileSync(file, data);
      expect(hashFile(file).digest.toString("hex")).toBe(v.hash.slice(0, 64));
    });
  }
});

test("large files stream in chunks and hash like the whole buffer", () => {
  const data = Buffer.alloc(9 * 1024 * 1024 + 123);
  for (let i = 0; i < data.length; i += 4096) data[i] = i % 251;
  const file = join(work, "large");
  writeFileSync(file, data);
  expect(hashFile(file)).toEqual({ digest: Buffer.from(blake3Hex(data), "hex"), size: data.length });
});

test("with the size a caller's stat found, a file is read up to that size (it is not stated again); grown past it, to its end once large", () => {
  const file = join(work, "sized");
  const data = Buffer.from("0123456789abcdef");
  writeFileSync(file, data);
  // Grown after the caller's stat: the content that stat described is what is hashed.
  expect(hashFile(file, 10)).toEqual({ digest: Buffer.from(blake3Hex(data.subarray(0, 10)), "hex"), size: 10 });
  // Shrunk: what is there.
  expect(hashFile(file, 100)).toEqual({ digest: Buffer.from(blake3Hex(data), "hex"), size: data.length });
  expect(hashFile(file, 0)).toEqual({ digest: Buffer.from(blake3Hex(Buffer.alloc(0)), "hex"), size: 0 });
  const large = Buffer.alloc(5 * 1024 * 1024, 7);
  writeFileSync(file, large);
  expect(hashFile(file, 4 * 1024 * 1024 + 1)).toEqual({ digest: Buffer.from(blake3Hex(large), "hex"), size: large.length });
});
