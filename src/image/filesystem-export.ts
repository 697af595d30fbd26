/**
 * `-o type=local,dest=DIR` and `-o type=tar,dest=FILE`: the image's file system itself, as
 * buildx writes it: every layer unpacked over the last (whiteouts delete, opaque directories
 * hide what is below), no image metadata. Each layer goes through the root-confined unpacker, so
 * a symlink an earlier layer planted (`etc -> /etc`) is followed inside DIR only.
 */
import { existsSync, lstatSync, mkdirSync, readdirSync, renameSync } from "node:fs";
import { dirname, join } from "node:path";
import type { LocalStore } from "../cache/store.ts";
import { UserError } from "../errors.ts";
import { removeTree, Root } from "../rootfs/root.ts";
import { extractInto } from "../snapshot/extract.ts";
import { writeLayerTar } from "../snapshot/pack.ts";
import type { StoredImage } from "./layout.ts";

/** Unpacks the image into `dest`: a new directory, or an empty one. */
export async function exportFilesystem(store: LocalStore, image: StoredImage, dest: string): Promise<void> {
  if (existsSync(dest)) {
    if (!lstatSync(dest).isDirectory()) throw new UserError(`--output type=local,dest=${dest}: not a directory`);
    if (readdirSync(dest).length > 0) throw new UserError(`--output type=local,dest=${dest}: the directory is not empty (nothing of the image is mixed with what is there)`);
  } else mkdirSync(dest, { recursive: true });
  const root = Root.open(dest);
  try {
    for (const diffId of image.config.rootfs.diff_ids) {
      await store.withLayerTar(diffId, (tar) => extractInto(tar, root, { whiteouts: "apply" }));
    }
  } finally {
    root.close();
  }
}

/** The image's file system as one tar file at `dest` (written whole, then renamed into place). */
export async function exportFilesystemTar(store: LocalStore, image: StoredImage, dest: string): Promise<void> {
  if (!existsSync(dirname(dest))) throw new UserError(`--output type=tar,dest=${dest}: ${dirname(dest)} does not exist`);
  const staging = store.tempDir("tar-export");
  try {
    const tree = join(staging, "rootfs");
    await exportFilesystem(store, image, tree);
    const partial = `${dest}.${process.pid}.partial`;
    writeLayerTar(tree, partial);
    renameSync(partial, dest);
  } finally {
    removeTree(staging);
  }
}
