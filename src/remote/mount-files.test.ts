import { afterAll, expect, test } from "bun:test";
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { blake3Hex } from "../hash/blake3.ts";
import { apply, listFiles, manifestFiles, plan } from "./mount-files.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-mount-files-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const file = (path: string, content: string, mode = 0o644) => ({ path, mode, blake3: blake3Hex(content), size: content.length });

test("links a RUN planted are never listed, read or written through; what is in a file's way goes", () => {
  const outside = join(work, "outside");
  mkdirSync(outside);
  writeFileSync(join(outside, "victim"), "host file");
  const mount = join(work, "mount");
  mkdirSync(join(mount, "keep"), { recursive: true });
  writeFileSync(join(mount, "keep", "same"), "same");
  writeFileSync(join(mount, "stale"), "old");
  symlinkSync(join(outside, "victim"), join(mount, "p1.tgz")); // a link where a file goes
  symlinkSync(outside, join(mount, "sub")); // a link where a directory goes
  writeFileSync(join(mount, "dir-here"), "a file where a directory goes");

  const local = listFiles(mount);
  expect([...local.keys()].sort()).toEqual(["dir-here", "keep/same", "stale"]);

  const target = [file("dir-here/x", "X"), file("keep/same", "same", 0o600), file("p1.tgz", "package"), file("sub/victim", "planted?")];
  const changes = plan(local, target);
  expect(changes.write.map((f) => f.path)).toEqual(["dir-here/x", "p1.tgz", "sub/victim"]);
  expect(changes.chmod.map((f) => f.path)).toEqual(["keep/same"]);
  expect(changes.remove.sort()).toEqual(["dir-here", "stale"]);

  const staging = join(work, "staging");
  mkdirSync(staging);
  for (const [content] of [["X"], ["package"], ["planted?"]]) writeFileSync(join(staging, blake3Hex(content)), content);
  apply(mount, changes, (hash) => join(staging, hash));

  expect(readFileSync(join(outside, "victim"), "utf8")).toBe("host file");
  expect(readdirSync(outside)).toEqual(["victim"]);
  expect(lstatSync(join(mount, "p1.tgz")).isFile()).toBe(true);
  expect(lstatSync(join(mount, "sub")).isDirectory()).toBe(true);
  expect(manifestFiles(listFiles(mount))).toEqual(target);
});

test("a file unchanged since it was listed is not read again", () => {
  const mount = join(work, "cached");
  mkdirSync(mount);
  writeFileSync(join(mount, "a"), "content");
  const first = listFiles(mount);
  // A wrong hash kept for the same size and mtime is believed: proof that the file was not read.
  const known = new Map([["a", { ...first.get("a")!, blake3: "0".repeat(64) }]]);
  expect(listFiles(mount, known).get("a")!.blake3).toBe("0".repeat(64));
  writeFileSync(join(mount, "a"), "changed");
  expect(listFiles(mount, known).get("a")!.blake3).toBe(blake3Hex("changed"));
});
