/** Package data through layers as a container sees it: whiteouts, opaque directories, replaced paths. */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TarWriter } from "../sys/tar.ts";
import { applyLayer, wantedPath } from "./image-files.ts";

const dir = mkdtempSync(join(tmpdir(), "memobuild-image-files-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

type Entry = { name: string; type?: "file" | "dir"; content?: string; mode?: number };

let layers = 0;
function layer(entries: Entry[]): string {
  const chunks: Uint8Array[] = [];
  const writer = new TarWriter((chunk) => chunks.push(Buffer.from(chunk)));
  for (const e of entries) {
    const body = Buffer.from(e.content ?? "");
    writer.add({ name: e.name, type: e.type ?? "file", mode: e.mode ?? 0o644, uid: 0, gid: 0, size: e.type === "dir" ? 0 : body.length, mtime: 0 });
    if (e.type !== "dir") (writer.content(body), writer.pad(body.length));
  }
  writer.finish();
  const file = join(dir, `layer-${layers++}.tar`);
  writeFileSync(file, Buffer.concat(chunks));
  return file;
}

function apply(...tars: string[]): string[] {
  const files = new Map<string, Buffer>();
  const ancestors = new Set<string>();
  for (const tar of tars) applyLayer(tar, files, ancestors);
  return [...files.keys()].sort();
}

const pkg = (path: string) => ({ name: path, content: '{"name":"x","version":"1.0.0"}' });

test("a whiteout removes a file and a directory's tree; an opaque directory hides what is below only", () => {
  const base = layer([pkg("app/node_modules/a/package.json"), pkg("app/node_modules/b/package.json"), pkg("srv/node_modules/c/package.json"), { name: "var/lib/dpkg/status", content: "Package: p\n" }]);
  const upper = layer([
    { name: "app/node_modules/.wh.a" },
    { name: "srv/node_modules", type: "dir" },
    { name: "srv/node_modules/.wh..wh..opq" },
    pkg("srv/node_modules/d/package.json"),
    { name: "var/lib/dpkg/.wh.status" },
  ]);
  expect(apply(base, upper)).toEqual(["app/node_modules/b/package.json", "srv/node_modules/d/package.json"]);
});

test("a file written over a directory replaces its tree; a directory entry over one merges", () => {
  const base = layer([pkg("app/node_modules/a/package.json"), pkg("opt/node_modules/b/package.json")]);
  const upper = layer([{ name: "app/node_modules", content: "now a file" }, { name: "opt", type: "dir" }]);
  expect(apply(base, upper)).toEqual(["opt/node_modules/b/package.json"]);
});

test("only package data and ELF executables carrying Go build information are kept", () => {
  expect(wantedPath("usr/lib/python3/site-packages/x-1.dist-info/METADATA", 0o644)).toBe("data");
  expect(wantedPath("app/node_modules/@scope/pkg/package.json", 0o644)).toBe("data");
  expect(wantedPath("app/node_modules/pkg/lib/package.json", 0o644)).toBeUndefined();
  expect(wantedPath("usr/lib/sysimage/rpm/rpmdb.sqlite", 0o644)).toBe("data");
  const script = layer([{ name: "usr/bin/tool", content: "#!/bin/sh\n", mode: 0o755 }, { name: "usr/bin/elf", content: "\x7fELF no go here", mode: 0o755 }]);
  expect(apply(script)).toEqual([]);
});
