/** Where `verify` reads an image from: a registry (by tag or digest) or an OCI layout directory. */
import { readRegularFile } from "../util/host-file.ts";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REF_NAME, type Descriptor, type Index } from "../image/layout.ts";
import { parseReference } from "../image/reference.ts";
import { RegistryClient, type RegistryOptions } from "../registry/client.ts";
import { sha256Hex } from "./statement.ts";
import { VerifyError, type Fetched, type ImageSource } from "./verify.ts";

export function registrySource(refText: string, options: RegistryOptions): ImageSource {
  const ref = parseReference(refText);
  const client = new RegistryClient(ref.registry, options);
  return {
    name: refText,
    identity: `${ref.registry}/${ref.repository}`,
    top: () => client.getManifest(ref.repository, ref.digest ?? ref.tag!),
    async manifest(reference) {
      try {
        return await client.getManifest(ref.repository, reference);
      } catch (error) {
        if (/not found in the registry/.test((error as Error).message)) return undefined;
        throw error;
      }
    },
    async blob(descriptor) {
      const dir = mkdtempSync(join(tmpdir(), "memobuild-verify-"));
      try {
        await client.getBlob(ref.repository, descriptor.digest, join(dir, "blob"), descriptor.size);
        return readFileSync(join(dir, "blob"));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    siblings: async () => [],
  };
}

/** Manifests, indexes, configs and attestations: JSON well under this. */
const MAX_LAYOUT_JSON = 16 * 1024 * 1024;

/** `oci:DIR[:NAME]`: the image NAME (its ref.name) in the layout, or its only image. */
export function layoutSource(spec: string): ImageSource {
  const rest = spec.slice("oci:".length);
  const colon = rest.indexOf(":");
  const dir = colon < 0 ? rest : rest.slice(0, colon);
  const name = colon < 0 ? undefined : rest.slice(colon + 1);
  if (!existsSync(join(dir, "index.json"))) throw new VerifyError(`${dir} is not an OCI layout (no index.json)`);
  // A layout is anyone's: its files are read as regular files only, never through a link, and bounded.
  const index = JSON.parse(readRegularFile(join(dir, "index.json"), { limit: MAX_LAYOUT_JSON, what: `${spec}: index.json` }).toString("utf8")) as Index;
  const read = (digest: string, what: string): Buffer => {
    const path = join(dir, "blobs", digest.replace(":", "/"));
    if (!/^sha256:[0-9a-f]{64}$/.test(digest) || !existsSync(path)) throw new VerifyError(`${spec}: ${what} ${digest} is missing from the layout`);
    const bytes = readRegularFile(path, { limit: MAX_LAYOUT_JSON, what: `${spec}: ${what} ${digest}` });
    if (`sha256:${sha256Hex(bytes)}` !== digest) throw new VerifyError(`${spec}: ${what} ${digest} does not match its digest (it was altered)`);
    return bytes;
  };
  const fetched = (d: Descriptor): Fetched => ({ digest: d.digest, mediaType: d.mediaType, bytes: read(d.digest, "manifest") });
  const images = index.manifests.filter((d) => d.platform?.os !== "unknown" && !/^sha256-[0-9a-f]{64}\.(sig|att)$/.test(d.annotations?.[REF_NAME] ?? ""));
  return {
    name: spec,
    async top() {
      const chosen = name === undefined ? images : images.filter((d) => d.annotations?.[REF_NAME] === name);
      if (new Set(chosen.map((d) => d.digest)).size !== 1) throw new VerifyError(`${spec}: ${chosen.length ? "several images: name one, oci:DIR:NAME" : "no such image in the layout"}`);
      return fetched(chosen[0]!);
    },
    async manifest(reference) {
      const entry = index.manifests.find((d) => d.annotations?.[REF_NAME] === reference || d.digest === reference);
      if (entry) return fetched(entry);
      // A manifest an image index lists (a platform's attestations), not index.json: by its digest, from the blobs.
      if (!/^sha256:[0-9a-f]{64}$/.test(reference) || !existsSync(join(dir, "blobs", reference.replace(":", "/")))) return undefined;
      const bytes = read(reference, "manifest");
      return { digest: reference, mediaType: (JSON.parse(bytes.toString("utf8")) as { mediaType?: string }).mediaType ?? "", bytes };
    },
    blob: async (descriptor) => read(descriptor.digest, "blob"),
    siblings: async () => index.manifests,
  };
}
