import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalStore } from "../cache/store.ts";
import { findImage, isImageIdText, requireImage } from "./lookup.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-lookup-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A store with images whose IDs are the given (made-up) config digests; `names` tags some. */
function storeWith(ids: string[], names: Record<string, string> = {}) {
  const store = LocalStore.open(join(work, `s${Math.random().toString(36).slice(2)}`));
  const manifests = new Map<string, string>();
  for (const id of ids) {
    const manifest = store.putBlob(JSON.stringify({ schemaVersion: 2, config: { digest: id }, layers: [] })).digest;
    manifests.set(id, manifest);
    store.recordImageId(id, manifest);
  }
  for (const [name, id] of Object.entries(names)) store.setImage(name, manifests.get(id)!);
  return { store, manifests };
}

const idA = `sha256:abcd1${"0".repeat(59)}`;
const idB = `sha256:abcd2${"0".repeat(59)}`;
const idC = `sha256:${"c".repeat(64)}`;

test("an image ID in full, with or without sha256:, or a unique prefix finds the image", () => {
  const { store, manifests } = storeWith([idA, idB, idC]);
  try {
    for (const text of [idA, idA.slice(7), "sha256:abcd1", "abcd1", idA.slice(7, 19)]) {
      expect({ text, found: findImage(store, text) }).toEqual({ text, found: { id: idA, manifestDigest: manifests.get(idA)! } });
    }
    expect(findImage(store, "c")?.id).toBe(idC);
    expect(findImage(store, "sha256:0")).toBeUndefined();
  } finally {
    store.close();
  }
});

test("an ambiguous prefix is an error naming the candidates", () => {
  const { store } = storeWith([idA, idB]);
  try {
    expect(() => findImage(store, "abcd")).toThrow("image ID abcd is ambiguous: 2 images start with it (abcd10000000, abcd20000000); give more of it");
  } finally {
    store.close();
  }
});

test("a name wins over an ID prefix that reads the same, as in Docker; sha256: is never a name", () => {
  const { store, manifests } = storeWith([idA, idC], { "docker.io/library/abcd1:latest": idC });
  try {
    expect(findImage(store, "abcd1")).toEqual({ ref: "docker.io/library/abcd1:latest", manifestDigest: manifests.get(idC)! });
    expect(findImage(store, "sha256:abcd1")?.id).toBe(idA);
    expect(isImageIdText("sha256:abcd1")).toBe(true);
    expect(isImageIdText("abcd1")).toBe(false);
  } finally {
    store.close();
  }
});

test("an image whose manifest is gone (collected) is not found by its ID; names of an older cache are", () => {
  const { store, manifests } = storeWith([idA]);
  try {
    rmSync(store.blobPath(manifests.get(idA)!));
    expect(findImage(store, idA)).toBeUndefined();
    expect(() => requireImage(store, "abcd1")).toThrow("no image abcd1 in the local store (give a name or an image ID from `memobuild image ls`)");
    // A name recorded before IDs were (no image_ids row): found by its ID all the same.
    const older = store.putBlob(JSON.stringify({ schemaVersion: 2, config: { digest: idC }, layers: [] })).digest;
    store.setImage("docker.io/library/old:1", older);
    store.removeImageId(idC);
    expect(findImage(store, "cccc")).toEqual({ id: idC, manifestDigest: older });
  } finally {
    store.close();
  }
});
