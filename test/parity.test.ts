/**
 * Side by side with BuildKit (Debian's dockerd 20.10, started here on a private socket): the
 * same Dockerfile and context built by both, and the final root filesystems compared entry by
 * entry (type, mode, owner, content digest or link target; times ignored). A difference is a
 * MemoBuild bug unless an upstream issue shows BuildKit is wrong.
 *
 * The cases need no base image: FROM scratch plus a context that holds the links.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runMemobuild } from "./support/binary.ts";
import { BuildKit, flattenLayers, imageLayers, treeLines } from "./support/buildkit.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-parity-"));
let buildkit: BuildKit;

beforeAll(async () => {
  buildkit = await BuildKit.start(join(work, "docker"));
}, 60_000);

afterAll(async () => {
  await buildkit?.stop();
  rmSync(work, { recursive: true, force: true });
});

interface Case {
  dockerfile: string;
  files?: Record<string, string>;
  links?: Record<string, string>;
}

let count = 0;
function materialize(c: Case): string {
  const dir = join(work, `case-${++count}`);
  mkdirSync(dir);
  writeFileSync(join(dir, "Dockerfile"), c.dockerfile);
  for (const [name, content] of Object.entries(c.files ?? {})) {
    mkdirSync(join(dir, name, ".."), { recursive: true });
    writeFileSync(join(dir, name), content);
  }
  for (const [name, target] of Object.entries(c.links ?? {})) {
    mkdirSync(join(dir, name, ".."), { recursive: true });
    symlinkSync(target, join(dir, name));
  }
  return dir;
}

/** Both builders' final trees, as sorted lines. */
function bothTrees(c: Case): { memobuild: string[]; buildkit: string[] } {
  const dir = materialize(c);
  const oci = join(work, `oci-${count}`);
  const ours = runMemobuild(["build", dir, "--cache-dir", join(work, "cache"), "--output", `type=oci,dest=${oci},compression=uncompressed`]);
  if (ours.exitCode !== 0) throw new Error(`memobuild: ${ours.stderr}`);
  const theirs = buildkit.build(dir, `parity-${count}`);
  return {
    memobuild: treeLines(flattenLayers(imageLayers(oci, join(work, `ours-${count}`)))),
    buildkit: treeLines(flattenLayers(imageLayers(theirs, join(work, `theirs-${count}`)))),
  };
}

const linkedBase = {
  files: { "base/real/keep": "keep\n", "base/real/f": "old\n", "base/opt/app/v1": "1\n", "a.txt": "a\n", "b.txt": "b\n", "conf/app.conf": "x=1\n" },
  links: { "base/linkdir": "/real", "base/linkfile": "/real/f", "base/current": "opt/app", "base/chain": "linkdir", "base/lib": "real" },
};

describe("COPY through symlinked destinations, side by side with BuildKit", () => {
  const cases: [string, string][] = [
    ["a file into a directory link (trailing slash)", "COPY a.txt /linkdir/"],
    ["a file onto a link to a file", "COPY b.txt /linkfile"],
    ["a file to a new name below a directory link", "COPY a.txt /linkdir/renamed.txt"],
    ["a directory's contents into a relative directory link", "COPY conf/ /current/conf/"],
    ["through a chain of links", "COPY a.txt /chain/"],
    ["several sources into a usr-merge style link", "COPY a.txt b.txt /lib/"],
  ];
  for (const [name, instruction] of cases) {
    test(name, () => {
      const trees = bothTrees({ dockerfile: `FROM scratch\nCOPY base/ /\n${instruction}\n`, ...linkedBase });
      expect(trees.memobuild).toEqual(trees.buildkit);
    }, 60_000);
  }
});
