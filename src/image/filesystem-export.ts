/**
 * `-o type=local,dest=DIR` and `-o type=tar,dest=FILE`: the image's file system itself, as
 * buildx writes it: every layer unpacked over the last (whiteouts delete, opaque directories
 * hide what is below), no image metadata. Each layer goes through the root-confined unpacker, so
 * a symlink an earlier layer planted (`etc -> /etc`) is followed inside DIR only.
 */
import { existsSync, lstatSync, mkdirSync, readdirSync, readlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import type { LocalStore } from "../cache/store.ts";
import { UserError } from "../errors.ts";
import { removeTree, Root } from "../rootfs/root.ts";
import { extractInto } from "../snapshot/extract.ts";
import { writeLayerTar } from "../snapshot/pack.ts";
import { writeFileAtomic } from "../util/host-file.ts";
import type { StoredImage } from "./layout.ts";
import { STDOUT } from "./output-spec.ts";

/** Unpacks the image into `dest`: a new directory, or an empty one. */
export async function exportFilesystem(store: LocalStore, image: StoredImage, dest: string): Promise<void> {
  prepareDirectory(dest);
  const root = Root.open(dest);
  try {
    for (const diffId of image.config.rootfs.diff_ids) {
      await store.withLayerTar(diffId, (tar) => extractInto(tar, root, { whiteouts: "apply" }));
    }
  } finally {
    root.close();
  }
}

/**
 * Checks that `dest` is an empty directory, or makes it; every refusal says what is in the way.
 * A symbolic link is refused, also one to an empty directory: the repository being built can
 * commit one at the name the user gives (`out -> /etc/sudoers.d`).
 */
function prepareDirectory(dest: string) {
  const problem = (reason: string) => new UserError(`--output type=local,dest=${dest}: ${reason}`);
  const stat = lstatSync(dest, { throwIfNoEntry: false });
  if (!stat) {
    try {
      mkdirSync(dest, { recursive: true });
    } catch (error) {
      throw problem(`cannot make the directory: ${(error as Error).message}`);
    }
    return;
  }
  if (stat.isSymbolicLink()) throw problem(`a symbolic link (to ${readlinkSync(dest)}), not followed: name the directory itself`);
  if (!stat.isDirectory()) throw problem("not a directory");
  if (readdirSync(dest).length > 0) throw problem("the directory is not empty (nothing of the image is mixed with what is there)");
}

/** A platform's directory in the file system outputs of a multi-platform image, as buildx names it: linux_arm64, linux_arm_v7. */
export const platformDirectory = (image: StoredImage) => [image.config.os, image.config.architecture, image.config.variant].filter(Boolean).join("_");

/** A multi-platform image's file systems, each in its platform's directory of `dest` (type=local). */
export async function exportPlatforms(store: LocalStore, images: StoredImage[], dest: string): Promise<void> {
  prepareDirectory(dest);
  for (const image of images) await exportFilesystem(store, image, join(dest, platformDirectory(image)));
}

/**
 * The image's file system as one tar file at `dest` (written whole beside it, then renamed into
 * place), or on stdout; several images (a multi-platform one) each under its platform's directory.
 */
export async function exportFilesystemTar(store: LocalStore, image: StoredImage | StoredImage[], dest: string): Promise<void> {
  if (dest !== STDOUT && !existsSync(dirname(dest))) throw new UserError(`--output type=tar,dest=${dest}: ${dirname(dest)} does not exist`);
  const staging = store.tempDir("tar-export");
  try {
    const tree = join(staging, "rootfs");
    if (Array.isArray(image)) await exportPlatforms(store, image, tree);
    else await exportFilesystem(store, image, tree);
    if (dest === STDOUT) writeLayerTar(tree, 1);
    else writeFileAtomic(dest, (fd) => void writeLayerTar(tree, fd));
  } finally {
    removeTree(staging);
  }
}
