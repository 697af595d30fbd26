/**
 * Records BuildKit's images of the heredoc cases (cases.ts: heredocCases) into
 * fixtures/heredoc.json. Docker 20.10's built-in Dockerfile frontend has no heredocs, so this
 * needs a newer one, compiled offline from the moby/buildkit source:
 *
 *   git -C buildkit archive dockerfile/1.4.3 | tar -x -C /tmp/frontend-src
 *   cd /tmp/frontend-src && CGO_ENABLED=0 GOFLAGS=-mod=vendor go build \
 *     -o /tmp/dockerfile-frontend ./frontend/dockerfile/cmd/dockerfile-frontend
 *   bun test/parity/record-heredocs.ts /tmp/dockerfile-frontend
 *
 * (Debian's golang-go 1.19 builds it; the tag vendors its Go dependencies.) The binary is
 * wrapped in a FROM scratch image tagged docker/dockerfile:1.4, which dockerd then uses for
 * `# syntax=docker/dockerfile:1.4` without pulling. CI has no network to do this: it compares
 * MemoBuild with the recorded results.
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildBaseImage } from "../support/base-image.ts";
import { REPO_ROOT, runMemobuild } from "../support/binary.ts";
import { BuildKit } from "./buildkit.ts";
import { heredocCases, materialize } from "./cases.ts";
import { type ImageSummary, summarizeImage } from "./image.ts";

const frontend = process.argv[2];
if (!frontend) {
  console.error("usage: bun test/parity/record-heredocs.ts PATH-TO-dockerfile-frontend (see the header)");
  process.exit(2);
}
const work = mkdtempSync(join(tmpdir(), "memobuild-record-"));
const buildkit = await BuildKit.start(join(work, "docker"));
try {
  const image = join(work, "frontend");
  mkdirSync(join(image, "bin"), { recursive: true });
  copyFileSync(frontend, join(image, "bin/dockerfile-frontend"));
  writeFileSync(
    join(image, "Dockerfile"),
    'FROM scratch\nCOPY bin/dockerfile-frontend /bin/dockerfile-frontend\nLABEL moby.buildkit.frontend.network.none="true"\nLABEL moby.buildkit.frontend.caps="moby.buildkit.frontend.inputs,moby.buildkit.frontend.subrequests,moby.buildkit.frontend.contexts"\nENTRYPOINT ["/bin/dockerfile-frontend"]\n',
  );
  const tagged = buildkit.docker("build", "-q", "-t", "docker/dockerfile:1.4", image);
  if (tagged.exitCode !== 0) throw new Error(tagged.stderr);

  buildBaseImage(work, join(work, "base-oci"));
  const base = runMemobuild(["build", join(REPO_ROOT, "examples/base"), "--cache-dir", join(work, "cache"), "-t", "memobuild/busybox:latest", "--output", `type=docker-archive,dest=${join(work, "base.tar")}`]);
  if (base.exitCode !== 0) throw new Error(base.stderr);
  buildkit.load(join(work, "base.tar"));

  const recorded: Record<string, ImageSummary> = {};
  for (const [i, c] of heredocCases.entries()) {
    const dir = materialize(c, join(work, `case-${i}`));
    const result = buildkit.build(dir, `heredoc-${i}`, c.flags ?? []);
    if (result.error) throw new Error(`${c.name}: ${result.error}`);
    recorded[c.name] = summarizeImage(result.archive!, join(work, `layers-${i}`));
    console.log(`recorded: ${c.name}`);
  }
  writeFileSync(join(import.meta.dir, "fixtures/heredoc.json"), JSON.stringify(recorded, null, 1) + "\n");
} finally {
  await buildkit.stop();
  rmSync(work, { recursive: true, force: true });
}
