/**
 * A generated build context: `files` files totalling about `totalMB` megabytes, spread over
 * nested directories, with deterministic pseudo-random content (so runs are comparable).
 * A hundredth of the files are large; the rest are source-sized.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export function generateContext(root: string, files = 20_000, totalMB = 500): { files: number; bytes: number } {
  const large = Math.max(1, Math.floor(files / 200));
  const smallBytes = 4 * 1024;
  const largeBytes = Math.floor((totalMB * 1024 * 1024 - (files - large) * smallBytes) / large);
  const block = Buffer.alloc(1024 * 1024);
  let seed = 12345;
  for (let i = 0; i < block.length; i += 4) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    block.writeUInt32LE(seed, i);
  }
  let bytes = 0;
  for (let i = 0; i < files; i++) {
    const dir = join(root, `pkg${i % 50}`, `mod${Math.floor(i / 50) % 20}`);
    if (i < 1000) mkdirSync(dir, { recursive: true });
    const size = i % Math.floor(files / large) === 0 ? largeBytes : smallBytes;
    const content = Buffer.allocUnsafe(size);
    for (let offset = 0; offset < size; offset += block.length) block.copy(content, offset, (i * 7919) % 1024, Math.min(block.length, size - offset) + 0);
    content.writeUInt32LE(i, 0); // every file differs
    writeFileSync(join(dir, `file${i}.dat`), content);
    bytes += size;
  }
  return { files, bytes };
}
