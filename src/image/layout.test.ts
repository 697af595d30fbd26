/** Importing OCI layouts and archives that lie: each is refused, named, and nothing is stored. */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalStore } from "../cache/store.ts";
import { importDockerArchive, importOciArchive, importOciLayout, MEDIA, storeImage, storedIndex } from "./layout.ts";
import { tarBytes } from "../../test/support/tar.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-layout-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const sha256 = (bytes: string | Buffer) => `sha256:${new Bun.CryptoHasher("sha256").update(bytes).digest("hex")}`;
let count = 0;

/** An OCI layout whose index, manifest and config are the given texts (blobs under their digests). */
function layout(parts: { index?: (manifest: string) => string; manifest?: (config: string) => string; config?: string }): string {
  const dir = join(work, `layout-${++count}`);
  mkdirSync(join(dir, "blobs/sha256"), { recursive: true });
  const put = (text: string) => {
    writeFileSync(join(dir, "blobs", sha256(text).replace(":", "/")), text);
    return sha256(text);
  };
  const config = parts.config ?? JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] } });
  const configDigest = put(config);
  const manifest = (parts.manifest ?? ((c) => JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.manifest, config: { mediaType: MEDIA.config, digest: c, size: config.length }, layers: [] })))(configDigest);
  const manifestDigest = put(manifest);
  writeFileSync(join(dir, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(join(dir, "index.json"), (parts.index ?? ((m) => JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: MEDIA.manifest, digest: m, size: manifest.length }] })))(manifestDigest));
  return dir;
}

function withStore<T>(fn: (store: LocalStore) => T): T {
  const store = LocalStore.open(join(work, `store-${++count}`));
  try {
    return fn(store);
  } finally {
    store.close();
  }
}

const storedBlobs = (store: LocalStore) => readdirSync(join(store.dir, "blobs/sha256"));
const layers = (n: number) => Array.from({ length: n }, (_, i) => ({ mediaType: MEDIA.layerTar, digest: sha256(String(i)), size: 1 }));
const manifestWith = (fields: object) => (c: string) => JSON.stringify({ schemaVersion: 2, config: { mediaType: MEDIA.config, digest: c, size: 2 }, layers: [], ...fields });

describe("importing an OCI layout that lies", () => {
  const cases: [string, Parameters<typeof layout>[0], RegExp][] = [
    ["an index that is not JSON", { index: () => "{ not json" }, /index\.json is not JSON$/],
    ["an index without a manifests list", { index: () => "{}" }, /index\.json has no manifests list$/],
    ["an index naming a digest that is not sha256", { index: () => JSON.stringify({ manifests: [{ digest: "sha256:../../x", size: 1 }] }) }, /manifest 1 has digest "sha256:\.\.\/\.\.\/x", not a sha256 digest$/],
    ["a manifest that is not JSON", { manifest: () => "nope" }, /manifest sha256:[0-9a-f]{64}: the manifest is not JSON$/],
    ["10,000 layers", { manifest: manifestWith({ layers: layers(10_000) }) }, /10000 layers is over the limit \(the limit is MEMOBUILD_MAX_LAYERS=500\)$/],
    ["a layer size that is not a whole number", { manifest: manifestWith({ layers: [{ digest: sha256("x"), size: -1 }] }) }, /layer 1 \(sha256:[0-9a-f]{64}\) has an invalid size -1$/],
    ["a config that is not JSON", { config: "{ nope" }, /config sha256:[0-9a-f]{64} is not JSON$/],
    ["a diff ID that is a path", { config: JSON.stringify({ rootfs: { diff_ids: ["sha256:../.."] } }) }, /diff ID "sha256:\.\.\/\.\." is not a sha256 digest$/],
    ["fewer diff IDs than layers", { manifest: manifestWith({ layers: layers(1) }) }, /config sha256:[0-9a-f]{64} lists 0 layers, the manifest 1$/],
  ];
  for (const [name, parts, message] of cases) {
    test(`${name}: refused, named, nothing stored`, () => {
      const dir = layout(parts);
      withStore((store) => {
        expect(() => importOciLayout(store, dir)).toThrow(message);
        expect(storedBlobs(store)).toEqual([]);
      });
    });
  }

  test("a manifest blob whose bytes do not match its digest", () => {
    const dir = layout({});
    const index = JSON.parse(readFileSync(join(dir, "index.json"), "utf8"));
    writeFileSync(join(dir, "blobs", index.manifests[0].digest.replace(":", "/")), "{}");
    withStore((store) => expect(() => importOciLayout(store, dir)).toThrow(/manifest: blob sha256:[0-9a-f]{64} in the layout is corrupt \(hashes to sha256:44136fa/));
  });

  test("an honest layout imports", () => {
    withStore((store) => expect(importOciLayout(store, layout({})).images.map((image) => image.manifest.layers)).toEqual([[]]));
  });
});

describe("importing archives that lie", () => {
  /** A tar of the given members, in order (a name may repeat). */
  function archive(...members: [string, string][]): string {
    const file = join(work, `archive-${++count}.tar`);
    writeFileSync(file, tarBytes(members.map(([name, text]) => [{ name }, text])));
    return file;
  }

  test("a docker archive whose manifest.json has the wrong shape", () => {
    for (const text of ["[]", '[{"Config": 1, "Layers": []}]', '[{"Config": "c", "Layers": [3]}]', "{"]) {
      const file = archive(["manifest.json", text]);
      withStore((store) => expect(() => importDockerArchive(store, file)).toThrow(/manifest\.json(: expected \[\{"Config": NAME| is not JSON)/));
    }
  });

  test("a docker archive with 10,000 layers", () => {
    const file = archive(["manifest.json", JSON.stringify([{ Config: "c.json", Layers: Array.from({ length: 10_000 }, (_, i) => `${i}/layer.tar`) }])]);
    withStore((store) => expect(() => importDockerArchive(store, file)).toThrow("manifest.json: 10000 layers is over the limit"));
  });

  test("an OCI archive that holds a member twice", () => {
    const file = archive(["index.json", "{}"], ["index.json", "{}"]);
    withStore((store) => expect(() => importOciArchive(store, file)).toThrow('member "index.json" appears twice'));
  });
});

describe("a layout's files are read as bounded regular files, never through a link", () => {
  const replaceWith = (path: string, make: "zero-link" | "fifo" | "host-link") => {
    rmSync(path);
    if (make === "fifo") expect(Bun.spawnSync(["mkfifo", path]).exitCode).toBe(0);
    else symlinkSync(make === "zero-link" ? "/dev/zero" : "/etc/passwd", path);
  };
  const blobPath = (dir: string, digest: string) => join(dir, "blobs", digest.replace(":", "/"));
  const indexDigests = (dir: string) => {
    const index = JSON.parse(readFileSync(join(dir, "index.json"), "utf8"));
    const manifest = JSON.parse(readFileSync(blobPath(dir, index.manifests[0].digest), "utf8"));
    return { manifest: index.manifests[0].digest as string, config: manifest.config.digest as string };
  };

  for (const make of ["zero-link", "fifo", "host-link"] as const) {
    test(`index.json as a ${make}: refused at once, nothing stored`, () => {
      const dir = layout({});
      replaceWith(join(dir, "index.json"), make);
      withStore((store) => {
        const what = make === "fifo" ? "is a FIFO, not a regular file" : "is a symbolic link (or below one): a layout's files are read without following links";
        expect(() => importOciLayout(store, dir)).toThrow(`${join(dir, "index.json")} ${what}`);
        expect(storedBlobs(store)).toEqual([]);
      });
    });
  }

  test("a manifest or config blob linked to /dev/zero, or a FIFO, is refused", () => {
    for (const which of ["manifest", "config"] as const) {
      for (const make of ["zero-link", "fifo"] as const) {
        const dir = layout({});
        const digest = indexDigests(dir)[which];
        replaceWith(blobPath(dir, digest), make);
        withStore((store) => expect(() => importOciLayout(store, dir)).toThrow(`${dir}: ${which} ${digest} ${make === "fifo" ? "is a FIFO" : "is a symbolic link"}`));
      }
    }
  });

  test("index.json over the manifest limit is refused, naming the variable that raises it", () => {
    const dir = layout({ index: (m) => JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: MEDIA.manifest, digest: m, size: 1 }], pad: "x".repeat(2000) }) });
    process.env.MEMOBUILD_MAX_MANIFEST_SIZE = "1000";
    try {
      withStore((store) => expect(() => importOciLayout(store, dir)).toThrow(`${join(dir, "index.json")} is larger than 1000 bytes (the limit is MEMOBUILD_MAX_MANIFEST_SIZE=1000)`));
    } finally {
      delete process.env.MEMOBUILD_MAX_MANIFEST_SIZE;
    }
  });

  test("a layer blob is read no further than the size its descriptor declares", () => {
    const layer = "layer bytes";
    const dir = layout({ manifest: manifestWith({ layers: [{ mediaType: MEDIA.layerTar, digest: sha256(layer), size: layer.length - 1 }] }), config: JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [sha256(layer)] } }) });
    writeFileSync(blobPath(dir, sha256(layer)), layer);
    withStore((store) => {
      expect(() => importOciLayout(store, dir)).toThrow(`${dir}: blob ${sha256(layer)} is larger than the ${layer.length - 1} bytes its descriptor declares`);
      expect(storedBlobs(store)).not.toContain(sha256(layer).slice(7));
    });
  });
});

describe("storedIndex", () => {
  test("two entries for the same platform: each is its own image, with its own annotations", () => {
    withStore((store) => {
      // Two images of one platform (say an image and its debug variant), told apart only by digest.
      const config = (cmd: string) => ({ architecture: "amd64", os: "linux", config: { Cmd: [cmd] }, rootfs: { type: "layers", diff_ids: [] } }) as never;
      const first = storeImage(store, config("first"), []);
      const second = storeImage(store, config("second"), []);
      const entry = (image: { manifestDigest: string }, flavour: string) => ({ mediaType: MEDIA.manifest, digest: image.manifestDigest, size: store.blobSize(image.manifestDigest), platform: { os: "linux", architecture: "amd64" }, annotations: { flavour } });
      const index = store.putBlob(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.index, manifests: [entry(first, "first"), entry(second, "second")] }));
      const stored = storedIndex(store, index.digest);
      expect(stored.images.map((image) => image.manifestDigest)).toEqual([first.manifestDigest, second.manifestDigest]);
      expect(stored.images.map((image) => (image.config.config as { Cmd: string[] }).Cmd[0])).toEqual(["first", "second"]);
      expect(stored.annotations.manifests).toEqual([{ flavour: "first" }, { flavour: "second" }]);
    });
  });
});
