/**
 * Side by side with BuildKit (Debian's dockerd 20.10, started here on a private socket): every
 * case in cases.ts is built by MemoBuild and by BuildKit from the same Dockerfile, context and
 * base image, and the two images are compared: the root filesystem entry by entry (type, mode,
 * owner, content digest or link target, xattrs, hard-link groups; times ignored), the config a
 * user relies on, and the number of layers and history entries. A difference is a MemoBuild bug
 * unless the case names the upstream issue that shows BuildKit is wrong.
 *
 * Heredoc cases need a newer Dockerfile frontend than dockerd 20.10 has; they compare with
 * fixtures/heredoc.json, recorded from BuildKit by record-heredocs.ts (see its header).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildBaseImage } from "../support/base-image.ts";
import { REPO_ROOT, runMemobuild } from "../support/binary.ts";
import { BuildKit } from "./buildkit.ts";
import { type ParityCase, cases, heredocCases, materialize } from "./cases.ts";
import { type ImageSummary, summarizeImage } from "./image.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-parity-"));
const cache = join(work, "cache");
let buildkit: BuildKit;
let agent: ReturnType<typeof Bun.spawn> | undefined;
const agentSocket = join(work, "ssh-agent.sock");
let count = 0;

beforeAll(async () => {
  buildkit = await BuildKit.start(join(work, "docker"));
  agent = Bun.spawn(["ssh-agent", "-D", "-a", agentSocket], { stdout: "ignore", stderr: "ignore" });
  buildBaseImage(work, join(work, "base-oci"));
  const base = runMemobuild(["build", join(REPO_ROOT, "examples/base"), "--cache-dir", cache, "-t", "memobuild/busybox:latest", "--output", `type=docker-archive,dest=${join(work, "base.tar")}`]);
  if (base.exitCode !== 0) throw new Error(base.stderr);
  buildkit.load(join(work, "base.tar"));
}, 180_000);

afterAll(async () => {
  agent?.kill();
  await buildkit?.stop();
  rmSync(work, { recursive: true, force: true });
});

/** MemoBuild's image of a case, or its error. */
function buildWithMemobuild(dir: string, flags: string[], dest: string): { summary?: ImageSummary; error?: string } {
  const result = runMemobuild(["build", dir, "--cache-dir", cache, ...flags, "--output", `type=oci,dest=${dest},compression=uncompressed`]);
  if (result.exitCode !== 0) return { error: result.stderr };
  return { summary: summarizeImage(dest, `${dest}-layers`) };
}

/** The case's flags, with SECRET_PATH standing for its context's secret.txt and SSH_SOCKET for the agent. */
function caseFlags(c: ParityCase, dir: string): string[] {
  return (c.flags ?? []).map((flag) => flag.replace("SECRET_PATH", join(dir, "secret.txt")).replace("SSH_SOCKET", agentSocket));
}

function runCase(c: ParityCase) {
  const n = ++count;
  const dir = materialize(c, join(work, `case-${n}`));
  const flags = caseFlags(c, dir);
  const ours = buildWithMemobuild(dir, flags, join(work, `ours-${n}`));
  const theirs = buildkit.build(dir, `parity-${n}`, flags, { hostNetwork: !c.defaultNetwork });
  if (c.bothFail) {
    expect({ memobuild: ours.error !== undefined, buildkit: theirs.error !== undefined }).toEqual({ memobuild: true, buildkit: true });
    return;
  }
  if (c.buildkitBug?.memobuildFails) {
    // BuildKit accepts what the reference says is an error; MemoBuild refuses it, by name.
    expect(theirs.error).toBeUndefined();
    expect(ours.error ?? "").toMatch(c.buildkitBug.memobuildFails);
    return;
  }
  if (ours.error !== undefined) throw new Error(`memobuild: ${ours.error}`);
  if (theirs.error !== undefined) throw new Error(`buildkit: ${theirs.error}`);
  const mine = ours.summary!;
  const reference = summarizeImage(theirs.archive!, join(work, `theirs-${n}`));
  const bug = c.buildkitBug;
  if (bug?.paths) {
    // The listed paths differ because of the named BuildKit bug; everything else must match.
    const outside = (lines: string[]) => lines.filter((l) => !bug.paths!.some((p) => l.startsWith(`${p} `)));
    const inside = (lines: string[]) => lines.filter((l) => bug.paths!.some((p) => l.startsWith(`${p} `)));
    expect(outside(mine.tree)).toEqual(outside(reference.tree));
    expect(inside(mine.tree)).not.toEqual(inside(reference.tree));
    if (bug.expected) expect(inside(mine.tree)).toEqual(bug.expected);
  } else {
    expect(mine.tree).toEqual(reference.tree);
  }
  expectSameMetadata(mine, reference);
}

/** The config and the layer and history counts, for every case. */
function expectSameMetadata(mine: ImageSummary, reference: ImageSummary) {
  expect(mine.config).toEqual(reference.config);
  expect({ layers: mine.layers, history: mine.history }).toEqual({ layers: reference.layers, history: reference.history });
}

for (const [group, list] of Object.entries(cases)) {
  describe(group, () => {
    for (const c of list) test(c.name, () => runCase(c), 120_000);
  });
}

describe("heredocs (recorded from BuildKit's docker/dockerfile:1.4.3 frontend)", () => {
  const fixtures = join(import.meta.dir, "fixtures/heredoc.json");
  const recorded: Record<string, ImageSummary> = existsSync(fixtures) ? JSON.parse(readFileSync(fixtures, "utf8")) : {};
  for (const c of heredocCases) {
    test(c.name, () => {
      const reference = recorded[c.name];
      if (!reference) throw new Error(`no recorded BuildKit result for "${c.name}": run bun test/parity/record-heredocs.ts`);
      const n = ++count;
      const dir = materialize(c, join(work, `case-${n}`));
      const ours = buildWithMemobuild(dir, caseFlags(c, dir), join(work, `ours-${n}`));
      if (ours.error !== undefined) throw new Error(`memobuild: ${ours.error}`);
      expect(ours.summary!.tree).toEqual(reference.tree);
      expectSameMetadata(ours.summary!, reference);
    }, 120_000);
  }
});
