import type { Command } from "commander";
import { resolve } from "node:path";
import { withStore } from "../store.ts";
import { exportImage, exportImageIndex, parseOutputSpec } from "../../image/export.ts";
import { adoptImageLayers, importDockerArchive, importOciArchive, importOciLayout, imagePlatforms, isIndex, loadImage, storedIndex } from "../../image/layout.ts";
import { insecureRegistries } from "../../registry/client.ts";
import { familiarReference, normalizeReference } from "../../image/reference.ts";
import { namesOf, requireImage } from "../../image/lookup.ts";
import { STDOUT } from "../../image/output-spec.ts";
import { UsageError } from "../errors.ts";
import { collect } from "../collect.ts";

function normalized(text: string): string {
  try {
    return normalizeReference(text);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

export function registerImage(program: Command) {
  const image = program.command("image").summary("manage the local image store (base images and build results)");

  image
    .command("import")
    .summary("add an image from an OCI layout or a docker archive")
    .argument("<source>", "oci:DIR[:NAME] or oci-archive:FILE[:NAME] (NAME picks the image by its ref.name), or docker-archive:FILE")
    .option("-t, --tag <ref>", "name it in the store (repeatable; default: the name in the source)", collect)
    .option("--cache-dir <dir>", "cache directory (default: $MEMOBUILD_CACHE_DIR or ~/.cache/memobuild)")
    .action(async (source: string, flags: { tag: string[]; cacheDir?: string }) =>
      withStore(flags.cacheDir, async (store) => {
        let manifestDigest: string;
        let names: string[];
        const oci = /^(oci|oci-archive):([^:]+)(?::(.+))?$/.exec(source); // KIND:PATH[:NAME]
        if (oci) {
          const [, kind, path, refName] = oci;
          const imported = (kind === "oci" ? importOciLayout : importOciArchive)(store, resolve(path), refName);
          manifestDigest = imported.digest;
          // A layout's ref.name is often just a tag ("latest"), which names no image; a name with a
          // repository has a ":", "/" or "@" (a tag can hold none of them): `pp:2`, as MemoBuild writes it.
          names = imported.refName && /[:/@]/.test(imported.refName) ? [imported.refName] : [];
          if (!names.length && imported.refName && !flags.tag.length) throw new UsageError(`the image is named only by its tag "${imported.refName}": give a name with --tag NAME (it is ${imported.digest})`);
        } else if (source.startsWith("docker-archive:")) {
          const imported = importDockerArchive(store, resolve(source.slice("docker-archive:".length)));
          manifestDigest = imported.manifestDigest;
          names = imported.repoTags;
        } else {
          throw new UsageError(`unknown source "${source}": use oci:DIR[:NAME], oci-archive:FILE[:NAME] or docker-archive:FILE`);
        }
        const refs = (flags.tag.length ? flags.tag : names).map(normalized);
        if (refs.length === 0) throw new UsageError(`the image has no name: give one with --tag NAME (it is ${manifestDigest})`);
        // Unpack (and verify) the layers now, as docker import does, so builds start at once (every platform's).
        for (const platform of imagePlatforms(store, manifestDigest)) {
          const image = loadImage(store, manifestDigest, platform);
          await adoptImageLayers(store, image.manifest, image.config);
        }
        for (const ref of refs) {
          store.setImage(ref, manifestDigest);
          process.stdout.write(`${familiarReference(ref)} ${manifestDigest}\n`);
        }
      }),
    );

  image
    .command("pull")
    .summary("fetch an image from a registry into the local store")
    .argument("<image>", "image reference, e.g. registry.example.com:5000/team/app:1.0 or …@sha256:…")
    .option("--insecure-registry <host>", "use plain HTTP for this registry (repeatable; also $MEMOBUILD_INSECURE_REGISTRIES)", collect)
    .option("--cache-dir <dir>", "cache directory")
    .action(async (ref: string, flags: { insecureRegistry: string[]; cacheDir?: string }) =>
      withStore(flags.cacheDir, async (store) => {
        const { pullImage } = await import("../../registry/transfer.ts");
        const image = await pullImage(store, normalized(ref), { insecure: insecureRegistries(flags.insecureRegistry) }, (line) => process.stderr.write(`${line}\n`));
        process.stdout.write(`${familiarReference(normalized(ref))} ${image.manifestDigest}\n`);
      }),
    );

  image
    .command("push")
    .summary("send an image from the local store to a registry")
    .argument("<image>", "the image's name in the store (also where it goes), or its image ID")
    .argument("[destination]", "where it goes, when not its own name (needed for an image ID)")
    .option("--insecure-registry <host>", "use plain HTTP for this registry (repeatable; also $MEMOBUILD_INSECURE_REGISTRIES)", collect)
    .option("--cache-dir <dir>", "cache directory")
    .action(async (ref: string, destination: string | undefined, flags: { insecureRegistry: string[]; cacheDir?: string }) =>
      withStore(flags.cacheDir, async (store) => {
        const found = requireImage(store, ref);
        const target = destination !== undefined ? normalized(destination) : found.ref;
        if (target === undefined) throw new UsageError(`${ref} is an image ID, which names no repository: say where it goes (memobuild image push ${ref} REGISTRY/NAME:TAG)`);
        const { pushImage, pushImageIndex } = await import("../../registry/transfer.ts");
        const options = { insecure: insecureRegistries(flags.insecureRegistry) };
        const progress = (line: string) => void process.stderr.write(`${line}\n`);
        // A multi-platform image goes as it is: every platform's image, then the index, with its annotations.
        const indexed = isIndex(store, found.manifestDigest) ? storedIndex(store, found.manifestDigest) : undefined;
        const digest = indexed
          ? await pushImageIndex(store, indexed.images, target, options, progress, undefined, undefined, indexed.annotations)
          : await pushImage(store, loadImage(store, found.manifestDigest), target, options, progress);
        process.stdout.write(`${familiarReference(target)} ${digest}\n`);
      }),
    );

  image
    .command("export")
    .summary("write an image from the store as an OCI layout, OCI archive or Docker archive")
    .argument("<image>", "image name, or image ID (a unique prefix will do)")
    .requiredOption("--output <spec>", "type=oci,dest=DIR | type=oci-archive,dest=FILE | type=docker[-archive],dest=FILE (oci ones: compression=gzip|uncompressed; archives: name=REF, dest=- for stdout) | type=local,dest=DIR | type=tar,dest=FILE (the file system); DIR alone is type=local, - alone a tar on stdout")
    .option("--cache-dir <dir>", "cache directory")
    .action(async (ref: string, flags: { output: string; cacheDir?: string }) =>
      withStore(flags.cacheDir, async (store) => {
        const output = parseOutputSpec(flags.output, (path) => resolve(path));
        if (output.type === "registry" || output.type === "image" || output.type === "docker") throw new UsageError(`--output type=${output.type}: image export writes files (use memobuild image push to send an image to a registry)`);
        const found = requireImage(store, ref);
        const image = loadImage(store, found.manifestDigest);
        if (output.type === "local" || output.type === "tar") {
          // Loaded for these outputs only, as the registry transfer is for pull and push.
          const { exportFilesystem, exportFilesystemTar } = await import("../../image/filesystem-export.ts");
          return output.type === "local" ? exportFilesystem(store, image, output.dest) : exportFilesystemTar(store, image, output.dest);
        }
        // By ID, an archive carries the names the store gives the image (none: untagged).
        const names = output.names.length ? output.names.map(normalized) : found.ref ? [found.ref] : namesOf(store, found.manifestDigest);
        // An OCI layout holds an index as it is (every platform's image, its annotations), as import reads it back.
        const indexed = isIndex(store, found.manifestDigest) ? storedIndex(store, found.manifestDigest) : undefined;
        const digest =
          indexed && output.type !== "docker-archive"
            ? (await exportImageIndex(store, indexed.images, output, names, undefined, undefined, indexed.annotations)).indexDigest
            : (await exportImage(store, image, output, names)).manifestDigest;
        // With dest=- stdout holds the archive: the digest goes to stderr then.
        (output.dest === STDOUT ? process.stderr : process.stdout).write(`${digest}\n`);
      }),
    );

  image
    .command("ls")
    .summary("list the images in the local store")
    .option("--cache-dir <dir>", "cache directory")
    .action((flags: { cacheDir?: string }) =>
      withStore(flags.cacheDir, (store) => {
        const named = store.images();
        // Untagged builds are listed too, by ID, as `docker images` lists <none>; a platform's image
        // of a multi-platform image (an index, named or not) is part of that one.
        const membersOf = (digest: string) => {
          try {
            return store.readJson<{ manifests?: { digest: string }[] }>(digest).manifests?.map((m) => m.digest) ?? [];
          } catch {
            return []; // a damaged entry is listed as such below
          }
        };
        const byId = store.imagesById("");
        const members = new Set([...named, ...byId].flatMap((n) => membersOf(n.manifestDigest)));
        const untagged = byId.filter((r) => !named.some((n) => n.manifestDigest === r.manifestDigest) && !members.has(r.manifestDigest));
        const rows = [...named, ...untagged.map((r) => ({ ref: "<none>", manifestDigest: r.manifestDigest, created: r.created }))].map((record) => {
          let size = "?";
          let id = "?";
          try {
            // An index: its own digest is its ID; the size is of this machine's image in it.
            const img = loadImage(store, record.manifestDigest);
            const bytes = img.manifest.layers.reduce((sum, l) => sum + l.size, 0);
            size = `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
            id = (img.manifestDigest === record.manifestDigest ? img.manifest.config.digest : record.manifestDigest).slice(7, 19);
          } catch {
            size = "damaged";
          }
          return [familiarReference(record.ref), id, record.manifestDigest.slice(0, 19), size, record.created.slice(0, 19).replace("T", " ")];
        });
        // IMAGE ID is the config digest, as `docker images` and `build -q` show it.
        const header = ["REFERENCE", "IMAGE ID", "DIGEST", "SIZE", "ADDED"];
        const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
        for (const row of [header, ...rows]) process.stdout.write(row.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd() + "\n");
      }),
    );

  image
    .command("rm")
    .summary("remove image names (or, by image ID, an image and all its names) from the local store")
    .argument("<refs...>", "image names or image IDs (a unique prefix will do)")
    .option("--cache-dir <dir>", "cache directory")
    .action((refs: string[], flags: { cacheDir?: string }) =>
      withStore(flags.cacheDir, (store) => {
        for (const ref of refs) {
          const found = requireImage(store, ref);
          const names = found.ref ? [found.ref] : namesOf(store, found.manifestDigest);
          for (const name of names) {
            store.removeImage(name);
            process.stdout.write(`untagged ${familiarReference(name)}\n`);
          }
          // As `docker rmi`: by ID, or with its last name, the image goes (its blobs are gc's to collect).
          const id = found.id ?? store.readJson<{ config?: { digest: string } }>(found.manifestDigest).config?.digest ?? found.manifestDigest;
          if (namesOf(store, found.manifestDigest).length === 0 && store.removeImageId(id)) process.stdout.write(`deleted ${id}\n`);
        }
      }),
    );
}
