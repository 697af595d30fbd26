/**
 * Packs a snapshot directory (overlayfs upper-dir format) into a layer: a tar with OCI
 * whiteouts (0/0 character devices become `.wh.NAME`, opaque directories get `.wh..wh..opq`),
 * entries sorted by name, hardlinks kept, its diff ID (sha256) computed while writing; and
 * gzip for exports, hashed while writing.
 */
import { closeSync, constants, lstatSync, openSync, readdirSync, readlinkSync, readSync, type Dirent } from "node:fs";
import { fsPath } from "../context/paths.ts";
import { TarWriter, type TarEntry } from "../sys/tar.ts";
import { getXattr, OVERLAY_OPAQUE } from "../sys/libc.ts";
import { writeAll } from "../util/write-all.ts";

export interface PackOptions {
  /** Clamp every timestamp to this (SOURCE_DATE_EPOCH), in seconds. */
  clampMtime?: number;
}

const byName = (a: Dirent, b: Dirent) => {
  const x = a.name as unknown as string;
  const y = b.name as unknown as string;
  return x < y ? -1 : x > y ? 1 : 0;
};

/**
 * Writes the tar of `directory` to `tarPath` (a file in a directory of our own), or to an open
 * descriptor (a file made by writeFileAtomic, which the caller closes); returns its diff ID and size.
 */
export function writeLayerTar(directory: string, tarPath: string | number, options: PackOptions = {}): { diffId: string; size: number; entries: number } {
  const root = Buffer.from(directory);
  const at = (relative: string) => fsPath(root, relative, directory);
  const fd = typeof tarPath === "number" ? tarPath : openSync(tarPath, "w", 0o600);
  const hasher = new Bun.CryptoHasher("sha256");
  let size = 0;
  let entries = 0;
  const output = gatheredWrites((chunk) => {
    hasher.update(chunk);
    writeAll(fd, chunk);
  });
  const writer = new TarWriter((chunk) => {
    output.write(chunk);
    size += chunk.length;
  });
  const clamp = (mtime: number) => (options.clampMtime !== undefined ? Math.min(mtime, options.clampMtime) : mtime);
  const firstNameOfInode = new Map<string, string>();

  const walk = (dir: string) => {
    const children = (readdirSync(at(dir), { encoding: "latin1", withFileTypes: true }) as Dirent[]).sort(byName);
    for (const child of children) {
      const name = child.name as unknown as string;
      const path = dir === "" ? name : `${dir}/${name}`;
      const stat = lstatSync(at(path));
      const base: TarEntry = { name: path, type: "file", mode: stat.mode & 0o7777, uid: stat.uid, gid: stat.gid, size: 0, mtime: clamp(Math.floor(stat.mtimeMs / 1000)) };
      entries++;
      if (stat.isCharacterDevice() && stat.rdev === 0) {
        // A whiteout's time means nothing and cannot survive extraction (mknod stamps "now"):
        // a fixed 0 keeps repacked and reproduced layers identical.
        writer.add({ ...base, name: `${dir === "" ? "" : dir + "/"}.wh.${name}`, mode: 0o644, uid: 0, gid: 0, mtime: 0 });
        continue;
      }
      if (stat.isDirectory()) {
        writer.add({ ...base, type: "dir" });
        if (getXattr(at(path), OVERLAY_OPAQUE)?.toString() === "y") {
          writer.add({ ...base, name: `${path}/.wh..wh..opq`, type: "file", mode: 0o644, uid: 0, gid: 0 });
        }
        walk(path);
        continue;
      }
      if (stat.isSymbolicLink()) {
        writer.add({ ...base, type: "symlink", linkname: readlinkSync(at(path), { encoding: "latin1" }) as string });
        continue;
      }
      if (stat.isFile()) {
        if (stat.nlink > 1) {
          const inode = `${stat.dev}:${stat.ino}`;
          const first = firstNameOfInode.get(inode);
          if (first !== undefined) {
            writer.add({ ...base, type: "hardlink", linkname: first });
            continue;
          }
          firstNameOfInode.set(inode, path);
        }
        writer.add({ ...base, size: stat.size });
        // O_NOFOLLOW: an entry lstat()ed as a file and swapped for a link since is refused, not followed.
        const file = openSync(at(path), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
        try {
          // Read straight into the gathered output (no copy); the writer is told only the size.
          let offset = 0;
          while (offset < stat.size) {
            const room = output.room(stat.size - offset);
            const n = readSync(file, room, 0, room.length, offset);
            if (n === 0) throw new Error(`${path} shrank while it was being packed`);
            output.commit(n);
            size += n;
            offset += n;
          }
        } finally {
          closeSync(file);
        }
        writer.pad(stat.size);
        continue;
      }
      if (stat.isCharacterDevice() || stat.isBlockDevice()) {
        const major = Math.floor(stat.rdev / 256) & 0xfff;
        const minor = (stat.rdev & 0xff) | ((stat.rdev >> 12) & ~0xff);
        writer.add({ ...base, type: stat.isCharacterDevice() ? "char" : "block", devmajor: major, devminor: minor });
        continue;
      }
      if (stat.isFIFO()) {
        writer.add({ ...base, type: "fifo" });
        continue;
      }
      entries--; // sockets do not go into layers
    }
  };

  try {
    walk("");
    writer.finish();
    output.flush();
  } finally {
    if (typeof tarPath !== "number") closeSync(fd);
  }
  return { diffId: `sha256:${hasher.digest("hex")}`, size, entries };
}

/**
 * The tar's bytes gathered in one 1 MiB buffer before they reach `sink` (hashed and written):
 * a tar of small files was two or three write(2) calls per entry (header, content, padding),
 * ~11,000 for the 5,000-file COPY of the benchmark; files' contents are read into it directly.
 */
function gatheredWrites(sink: (chunk: Uint8Array) => void) {
  const gathered = Buffer.allocUnsafe(1024 * 1024);
  let used = 0;
  const flush = () => {
    if (used > 0) sink(gathered.subarray(0, used));
    used = 0;
  };
  return {
    /** Appends `chunk` (headers and padding from the tar writer: small). */
    write(chunk: Uint8Array) {
      if (used + chunk.length > gathered.length) flush();
      if (chunk.length >= gathered.length) return sink(chunk);
      gathered.set(chunk, used);
      used += chunk.length;
    },
    /** Free space for up to `wanted` bytes (at least one), to be filled and then `commit`ted. */
    room(wanted: number): Buffer {
      if (used === gathered.length) flush();
      return gathered.subarray(used, used + Math.min(wanted, gathered.length - used));
    },
    commit(n: number) {
      used += n;
    },
    flush,
  };
}

/** gzip `tarPath` into `blobPath`, hashing the output. Deterministic for the same input. */
export async function gzipLayer(tarPath: string, blobPath: string): Promise<{ digest: string; size: number }> {
  return compressLayer(tarPath, blobPath, "gzip");
}

/** A layer tar compressed with gzip (level 0-9, default 6) or zstd (1-22, default 3), hashed as it is written. */
export async function compressLayer(tarPath: string, blobPath: string, kind: "gzip" | "zstd", level?: number): Promise<{ digest: string; size: number }> {
  const { createReadStream, createWriteStream } = await import("node:fs");
  const { pipeline } = await import("node:stream/promises");
  const { Transform } = await import("node:stream");
  const zlib = await import("node:zlib");
  const hasher = new Bun.CryptoHasher("sha256");
  let size = 0;
  const hash = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hasher.update(chunk);
      size += chunk.length;
      done(null, chunk);
    },
  });
  const compressor =
    kind === "gzip" ? zlib.createGzip({ level: level ?? 6 }) : zlib.createZstdCompress({ params: { [zlib.constants.ZSTD_c_compressionLevel]: level ?? 3 } });
  await pipeline(createReadStream(tarPath), compressor, hash, createWriteStream(blobPath, { mode: 0o600 }));
  return { digest: `sha256:${hasher.digest("hex")}`, size };
}
