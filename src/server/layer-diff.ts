/**
 * Which files differ between two layers of one step, and how: what tells a team why a step is
 * not reproducible (`/d: content`, `/usr/lib/x.pyc: mtime only`). The cache server holds both
 * layers (the result it kept, and the one a rebuild just uploaded), so it compares them itself.
 */
import { gunzipSync } from "node:zlib";
import { TarReader, type TarEntry } from "../sys/tar.ts";

export type FileChange = "added" | "removed" | "type" | "size" | "mode" | "owner" | "link" | "content" | "mtime only";

export interface FileDifference {
  /** The path in the image, from /. */
  path: string;
  how: FileChange[];
}

export interface LayerDiff {
  files: FileDifference[];
  /** Differences past the ones listed. */
  more: number;
  /** Why the layers could not be compared (too large, compressed in a way not read here). */
  note?: string;
}

/** Files listed per comparison; a layer larger than this is not read into memory. */
export const MAX_LISTED = 100;
export const MAX_COMPARED_BYTES = 64 * 1024 * 1024;

interface FileFacts {
  entry: TarEntry;
  content?: string;
}

function facts(tar: Uint8Array): Map<string, FileFacts> {
  const files = new Map<string, FileFacts>();
  const reader = new TarReader(tar);
  for (let entry = reader.next(); entry; entry = reader.next()) {
    let content: string | undefined;
    if (entry.type === "file") {
      const hasher = new Bun.CryptoHasher("sha256");
      for (const chunk of reader.readContent()) hasher.update(chunk);
      content = hasher.digest("hex");
    }
    files.set(`/${entry.name.replace(/^\.?\/+/, "")}`, { entry, content });
  }
  return files;
}

/** How one path changed between the two layers (empty: it did not). */
function changes(first: FileFacts, second: FileFacts): FileChange[] {
  const a = first.entry;
  const b = second.entry;
  if (a.type !== b.type) return ["type"];
  const how: FileChange[] = [];
  if (a.size !== b.size && a.type === "file") how.push("size");
  if (a.mode !== b.mode) how.push("mode");
  if (a.uid !== b.uid || a.gid !== b.gid) how.push("owner");
  if ((a.linkname ?? "") !== (b.linkname ?? "")) how.push("link");
  if (first.content !== second.content) how.push("content");
  if (how.length === 0 && a.mtime !== b.mtime) how.push("mtime only");
  return how;
}

/** The uncompressed tar of a layer blob, or why it cannot be had. */
export function layerTar(blob: Uint8Array, mediaType: string): Uint8Array | string {
  if (/\+zstd$/.test(mediaType)) return "zstd layers are not compared";
  if (/gzip$/.test(mediaType)) return gunzipSync(blob, { maxOutputLength: MAX_COMPARED_BYTES });
  return blob;
}

export function diffLayers(first: Uint8Array, second: Uint8Array): LayerDiff {
  const before = facts(first);
  const after = facts(second);
  const differences: FileDifference[] = [];
  for (const [path, was] of before) {
    const now = after.get(path);
    const how = now ? changes(was, now) : (["removed"] as FileChange[]);
    if (how.length) differences.push({ path, how });
  }
  for (const path of after.keys()) if (!before.has(path)) differences.push({ path, how: ["added"] });
  // What changed in content or metadata first; files whose only change is their date (a
  // directory a RUN touched) after, as they rarely say why a step is not reproducible.
  const datesOnly = (d: FileDifference) => (d.how[0] === "mtime only" ? 1 : 0);
  differences.sort((x, y) => datesOnly(x) - datesOnly(y) || (x.path < y.path ? -1 : x.path > y.path ? 1 : 0));
  return { files: differences.slice(0, MAX_LISTED), more: Math.max(0, differences.length - MAX_LISTED) };
}

/** "/d (content), /e (mtime only)" — for a warning line and a log. */
export function describeDiff(diff: LayerDiff): string {
  if (diff.note) return diff.note;
  if (!diff.files.length) return "no file differs (the layers differ in how they were packed)";
  const listed = diff.files.slice(0, 5).map((f) => `${f.path} (${f.how.join(", ")})`);
  const rest = diff.files.length - listed.length + diff.more;
  return listed.join(", ") + (rest ? ` and ${rest} more` : "");
}
