/**
 * A StepRequest is plain data: every kind the builds below produce (RUN with each mount type,
 * COPY from the context, a stage and a named context, ADD of an archive and a URL, WORKDIR)
 * goes through JSON and back before the real executor runs it, and the image is the same as a
 * build that handed the requests over directly. This is what lets a step run on another machine.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalStore } from "../src/cache/store.ts";
import { LocalExecutor } from "../src/executor/executor.ts";
import type { Executor, ExecutorResources, StepRequest } from "../src/executor/request.ts";
import { silentProgress } from "../src/solver/progress.ts";
import { build } from "../src/solver/solver.ts";
import { buildBaseImage, machineWithBase, writeProject } from "./support/base-image.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-requests-"));
const baseOci = join(work, "base-oci");
const server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("downloaded\n", { headers: { "last-modified": "Tue, 01 Jan 2019 00:00:00 GMT" } }) });
afterAll(() => {
  server.stop(true);
  rmSync(work, { recursive: true, force: true });
});
beforeAll(() => buildBaseImage(work, baseOci), 120_000);

const dockerfile = `FROM memobuild/busybox AS tools
RUN echo tool > /tool
FROM memobuild/busybox
WORKDIR /app
COPY a.txt ./
COPY --from=tools /tool /tool
COPY --from=docs guide.md /docs/
ADD archive.tar /unpacked/
ADD http://127.0.0.1:${server.port}/file /downloaded
RUN --mount=type=bind,source=a.txt,target=/m/a --mount=from=tools,target=/t --mount=type=cache,target=/c --mount=type=tmpfs,target=/scratch --mount=type=secret,id=token cat /m/a /t/tool > /out && wc -c < /run/secrets/token >> /out
`;

/** Builds the project in `cache`; `through` wraps the real executor. */
async function buildWith(cache: string, project: string, through: (local: Executor) => Executor) {
  const store = LocalStore.open(cache);
  try {
    const result = await build({
      contextDir: project,
      dockerfileText: dockerfile,
      dockerfilePath: "Dockerfile",
      buildArgs: { SOURCE_DATE_EPOCH: "1700000000" },
      noCache: false,
      store,
      secrets: new Map([["token", Buffer.from("s3cr3t")]]),
      network: "none",
      progress: silentProgress,
      namedContexts: new Map([["docs", { kind: "local", dir: join(project, "docs") }]]),
      executor: (resources: ExecutorResources) => through(new LocalExecutor(resources)),
    });
    return result.image!.manifestDigest;
  } finally {
    store.close();
  }
}

test("every kind of request survives JSON, and the image is the same", async () => {
  const project = writeProject(join(work, "project"), { "a.txt": "a\n", "docs/guide.md": "guide\n", "in/x": "x\n" });
  Bun.spawnSync(["tar", "-cf", join(project, "archive.tar"), "-C", join(project, "in"), "x"]);
  writeFileSync(join(project, ".dockerignore"), "in\n");

  const direct = await buildWith(machineWithBase(join(work, "direct"), baseOci), project, (local) => local);
  const kinds = new Set<string>();
  const serialized = await buildWith(machineWithBase(join(work, "serialized"), baseOci), project, (local) => ({
    execute: (request: StepRequest, io) => {
      const text = JSON.stringify(request);
      const copy = JSON.parse(text) as StepRequest;
      expect(copy).toEqual(request); // nothing was lost: no Map, function, descriptor or class in it
      expect(text).not.toContain("s3cr3t"); // secrets are named by id, never carried
      kinds.add(request.instruction.kind);
      return local.execute(copy, io);
    },
  }));
  expect([...kinds].sort()).toEqual(["ADD", "COPY", "RUN", "WORKDIR"]);
  expect(serialized).toBe(direct);
}, 120_000);
