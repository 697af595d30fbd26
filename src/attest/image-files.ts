/**
 * The few files of an image's final file system that say what is installed in it, read from the
 * layers in order as a container would see them (whiteouts delete, opaque directories hide what
 * is below). Nothing is unpacked: the layers are read as tar streams and only wanted files kept.
 */
import type { LocalStore } from "../cache/store.ts";
import type { StoredImage } from "../image/layout.ts";
import { TarReader } from "../sys/tar.ts";

/** Package data bigger than this is not read (no real package database comes near it). */
const MAX_DATA_BYTES = 256 * 1024 * 1024;
const GO_MAGIC = Buffer.from("\xff Go buildinf:", "latin1");
const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);

/** Is `path` package data: a database, a package's manifest, or (maybe) a Go binary? */
export function wantedPath(path: string, mode: number): "data" | "executable" | undefined {
  if (/^(var\/lib\/dpkg\/status|var\/lib\/dpkg\/status\.d\/[^/]+|lib\/apk\/db\/installed|(var\/lib|usr\/lib\/sysimage)\/rpm\/rpmdb\.sqlite(-wal)?|etc\/os-release|usr\/lib\/os-release)$/.test(path)) return "data";
  if (/(^|\/)node_modules\/(@[^/]+\/)?[^/@][^/]*\/package\.json$/.test(path)) return "data";
  if (/(^|\/)[^/]+\.dist-info\/METADATA$/.test(path)) return "data";
  if (mode & 0o111) return "executable";
  return undefined;
}

/** The entry's content; for a candidate Go binary, undefined as soon as it is not ELF (the rest is skipped by next()). */
function read(reader: TarReader, onlyElf: boolean): Buffer | undefined {
  const chunks: Buffer[] = [];
  for (const chunk of reader.readContent()) {
    if (onlyElf && chunks.length === 0 && !Buffer.from(chunk.subarray(0, 4)).equals(ELF_MAGIC)) return undefined;
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}

/** Applies one layer's entries to `files`. */
export function applyLayer(tar: string, files: Map<string, Buffer>, ancestors: Set<string>) {
  const added = new Set<string>();
  const reader = new TarReader(tar);
  try {
    for (let entry = reader.next(); entry; entry = reader.next()) {
      const path = entry.name.replace(/^\.?\//, "");
      const slash = path.lastIndexOf("/");
      const dir = slash < 0 ? "" : path.slice(0, slash + 1);
      const base = path.slice(slash + 1);
      if (base === ".wh..wh..opq") {
        for (const known of files.keys()) if (known.startsWith(dir) && !added.has(known)) files.delete(known);
        continue;
      }
      if (base.startsWith(".wh.")) {
        const gone = dir + base.slice(4);
        for (const known of files.keys()) if (known === gone || known.startsWith(gone + "/")) files.delete(known);
        continue;
      }
      // A directory merges with the one below; anything else replaces what lower layers had there
      // (a file, or a directory's whole tree). `ancestors` spares a scan for paths holding nothing kept.
      if (entry.type !== "dir") {
        if (!added.has(path)) files.delete(path);
        if (ancestors.has(path)) for (const known of files.keys()) if (known.startsWith(path + "/") && !added.has(known)) files.delete(known);
      }
      if (entry.type !== "file" || entry.size > MAX_DATA_BYTES) continue;
      const wanted = wantedPath(path, entry.mode);
      if (!wanted) continue;
      const content = read(reader, wanted === "executable");
      // An executable is kept only when it is an ELF file carrying Go build information.
      if (!content || (wanted === "executable" && !content.includes(GO_MAGIC))) continue;
      files.set(path, content);
      added.add(path);
      for (let at = path.indexOf("/"); at > 0; at = path.indexOf("/", at + 1)) ancestors.add(path.slice(0, at));
    }
  } finally {
    reader.close();
  }
}

/** The image's package data, by path (no leading "/"). */
export async function packageFiles(store: LocalStore, image: StoredImage): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  const ancestors = new Set<string>();
  for (const diffId of image.config.rootfs.diff_ids) await store.withLayerTar(diffId, (tar) => applyLayer(tar, files, ancestors));
  return files;
}
