import { TarWriter, type TarEntry } from "../../src/sys/tar.ts";

/** A tar archive of the given entries, in order (a name may repeat): files get their content. */
export function tarBytes(entries: [Partial<TarEntry> & { name: string }, (string | Buffer)?][]): Buffer {
  const chunks: Uint8Array[] = [];
  const writer = new TarWriter((chunk) => chunks.push(chunk));
  for (const [entry, content = ""] of entries) {
    const bytes = typeof content === "string" ? Buffer.from(content, "latin1") : content;
    const full: TarEntry = { type: "file", mode: 0o644, uid: 0, gid: 0, mtime: 1, size: bytes.length, ...entry };
    writer.add(full);
    if (full.type === "file") {
      writer.content(bytes);
      writer.pad(bytes.length);
    }
  }
  writer.finish();
  return Buffer.concat(chunks);
}
