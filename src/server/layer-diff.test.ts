import { describe, expect, test } from "bun:test";
import { gzipSync } from "node:zlib";
import { TarWriter, type TarEntry } from "../sys/tar.ts";
import { describeDiff, diffLayers, layerTar, MAX_LISTED } from "./layer-diff.ts";

type File = Partial<TarEntry> & { name: string; data?: string };

function tar(files: File[]): Uint8Array {
  const chunks: Uint8Array[] = [];
  const writer = new TarWriter((chunk) => chunks.push(Buffer.from(chunk)));
  for (const file of files) {
    const data = Buffer.from(file.data ?? "");
    writer.add({ type: "file", mode: 0o644, uid: 0, gid: 0, mtime: 100, ...file, size: file.type && file.type !== "file" ? 0 : data.length });
    if (!file.type || file.type === "file") {
      writer.content(data);
      writer.pad(data.length);
    }
  }
  writer.finish();
  return Buffer.concat(chunks);
}

describe("which files differ between two layers of one step", () => {
  test("content, size, mode, owner, link, type, mtime only, added and removed are told apart", () => {
    const before = tar([
      { name: "d", data: "Mon Dec 7 10:00:00" },
      { name: "same", data: "x" },
      { name: "stamp", data: "y", mtime: 100 },
      { name: "bin/tool", data: "abc", mode: 0o644 },
      { name: "grow", data: "1" },
      { name: "owned", data: "o" },
      { name: "link", type: "symlink", linkname: "a" },
      { name: "thing", data: "t" },
      { name: "gone", data: "g" },
    ]);
    const after = tar([
      { name: "d", data: "Mon Dec 7 10:00:01" },
      { name: "same", data: "x" },
      { name: "stamp", data: "y", mtime: 200 },
      { name: "bin/tool", data: "abc", mode: 0o755 },
      { name: "grow", data: "12" },
      { name: "owned", data: "o", uid: 1000 },
      { name: "link", type: "symlink", linkname: "b" },
      { name: "thing", type: "dir" },
      { name: "new", data: "n" },
    ]);
    expect(diffLayers(before, after)).toEqual({
      files: [
        { path: "/bin/tool", how: ["mode"] },
        { path: "/d", how: ["content"] },
        { path: "/gone", how: ["removed"] },
        { path: "/grow", how: ["size", "content"] },
        { path: "/link", how: ["link"] },
        { path: "/new", how: ["added"] },
        { path: "/owned", how: ["owner"] },
        { path: "/thing", how: ["type"] },
        { path: "/stamp", how: ["mtime only"] },
      ],
      more: 0,
    });
    expect(diffLayers(before, before)).toEqual({ files: [], more: 0 });
  });

  test("lists at most MAX_LISTED files and counts the rest; gzip layers are read, zstd ones are not", () => {
    const many = (stamp: string) => tar(Array.from({ length: MAX_LISTED + 7 }, (_, i) => ({ name: `f${String(i).padStart(4, "0")}`, data: stamp })));
    const diff = diffLayers(many("a"), many("b"));
    expect(diff.files.length).toBe(MAX_LISTED);
    expect(diff.more).toBe(7);
    expect(describeDiff(diff)).toBe("/f0000 (content), /f0001 (content), /f0002 (content), /f0003 (content), /f0004 (content) and 102 more");
    const plain = tar([{ name: "d", data: "1" }]);
    expect(Buffer.from(layerTar(gzipSync(plain), "application/vnd.oci.image.layer.v1.tar+gzip") as Uint8Array)).toEqual(Buffer.from(plain));
    expect(layerTar(plain, "application/vnd.oci.image.layer.v1.tar+zstd")).toBe("zstd layers are not compared");
  });
});
