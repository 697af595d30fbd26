import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hashFile } from "./blake3.ts";
import { FileHashError, HashPool, hashFiles } from "./parallel.ts";

const dir = mkdtempSync(join(tmpdir(), "memobuild-parallel-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// Enough files to take the parallel path (2,000+), of varied sizes.
const files = Array.from({ length: 2500 }, (_, i) => {
  const path = join(dir, `f${i}`);
  writeFileSync(path, Buffer.alloc((i * 37) % 9000, i % 251));
  return { path, size: (i * 37) % 9000 };
});

test("parallel hashing gives the same digests as hashing one by one, in order", async () => {
  const results = await hashFiles(files, 3);
  expect(results).toHaveLength(files.length);
  results.forEach((result, i) => {
    const expected = hashFile(files[i].path);
    expect(result.size).toBe(expected.size);
    expect(result.digest.equals(expected.digest)).toBe(true);
  });
});

test("a file that cannot be read is reported with its index, from any thread", async () => {
  for (const missing of [0, 1, 1234, 2499]) {
    const list = files.map((f, i) => (i === missing ? { path: join(dir, "gone"), size: f.size } : f));
    const error = await hashFiles(list, 3).catch((e) => e);
    expect(error).toBeInstanceOf(FileHashError);
    expect(error).toMatchObject({ index: missing, code: "ENOENT" });
  }
});

test("a pool fed one file at a time hands batches to workers as it goes; digests come back in the order added, errors with their index", async () => {
  const pool = new HashPool(2);
  // Past PARALLEL_MIN_FILES the worker starts and takes batches from the end of the queue.
  files.forEach((file) => pool.add(file));
  const results = await pool.finish();
  results.forEach((result, i) => expect(result.digest.equals(hashFile(files[i].path).digest)).toBe(true));

  const failing = new HashPool(2);
  files.forEach((file, i) => failing.add(i === files.length - 1 ? { path: join(dir, "gone"), size: 1 } : file));
  expect(await failing.finish().catch((e) => e)).toMatchObject({ index: files.length - 1, code: "ENOENT" });
});
