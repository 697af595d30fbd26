/**
 * What a shared cache mount saves the second machine. A fake package registry on loopback
 * serves N "packages" (each after --latency-ms, as a real registry answers); machine A builds a
 * RUN that downloads the ones its npm-like cache mount lacks, and publishes the mount. Machine B,
 * with an empty local cache and another Dockerfile that needs the same packages plus a few,
 * then builds with the shared mount (`--remote-cache-mounts read`) and without it (`off`), each
 * on a fresh machine, interleaved, --runs times. Prints B's wall time (median) for each.
 *
 *   sudo bun run bench/cache-mounts.ts [--packages 300] [--kb 32] [--latency-ms 20] [--runs 3]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { memobuildBinary } from "../test/support/binary.ts";
import { buildBaseImage, machineWithBase, writeProject } from "../test/support/base-image.ts";
import { startCacheServer } from "../test/support/server.ts";

const { values } = parseArgs({
  options: { packages: { type: "string", default: "300" }, kb: { type: "string", default: "32" }, "latency-ms": { type: "string", default: "20" }, runs: { type: "string", default: "3" } },
});
const packages = Number(values.packages);
const body = Buffer.alloc(Number(values.kb) * 1024, "x");
const latency = Number(values["latency-ms"]);
const work = mkdtempSync(join(tmpdir(), "memobuild-bench-mounts-"));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

let served = 0;
const registry = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch: async (request) => {
    served++;
    await Bun.sleep(latency);
    return new Response(Buffer.concat([Buffer.from(new URL(request.url).pathname), body]));
  },
});

const install = (count: number, tag: string) =>
  `FROM memobuild/busybox\nRUN --mount=type=cache,id=npm,target=/root/.npm,sharing=locked sh -c 'for i in $(seq 1 ${count}); do [ -f /root/.npm/p$i.tgz ] || wget -q -O /root/.npm/p$i.tgz http://127.0.0.1:${registry.port}/p$i.tgz; done; ls /root/.npm | wc -l > /${tag}'\n`;

let machines = 0;
async function build(baseOci: string, dockerfile: string, remote: string, mode: string): Promise<{ ms: number; downloads: number }> {
  const cache = machineWithBase(join(work, `machine-${++machines}`), baseOci);
  const project = writeProject(join(work, `project-${machines}`), { Dockerfile: dockerfile });
  const before = served;
  const started = performance.now();
  const child = Bun.spawn([memobuildBinary(), "build", project, "--cache-dir", cache, "--network", "host", "--allow", "network.host", "--remote", remote, "--remote-cache-mounts", mode, "--progress", "quiet"], { stdout: "ignore", stderr: "pipe" });
  const [stderr, code] = await Promise.all([new Response(child.stderr).text(), child.exited]);
  if (code !== 0) throw new Error(stderr);
  const ms = performance.now() - started;
  rmSync(cache, { recursive: true, force: true });
  return { ms, downloads: served - before };
}

try {
  const baseOci = join(work, "base-oci");
  buildBaseImage(work, baseOci);
  const server = await startCacheServer(join(work, "server"));
  try {
    const a = await build(baseOci, install(packages, "a"), server.url, "on");
    console.log(`machine A: ${packages} packages downloaded and published in ${Math.round(a.ms)} ms`);
    const times: Record<"read" | "off", number[]> = { read: [], off: [] };
    const downloads: Record<"read" | "off", number> = { read: 0, off: 0 };
    for (let run = 0; run < Number(values.runs); run++) {
      // Another Dockerfile each time (a new RUN, so it runs), needing A's packages and 10 more.
      for (const mode of ["read", "off"] as const) {
        const b = await build(baseOci, install(packages + 10, `b-${mode}-${run}`), server.url, mode);
        times[mode].push(b.ms);
        downloads[mode] = b.downloads;
      }
    }
    for (const mode of ["read", "off"] as const) {
      console.log(`machine B, ${mode === "read" ? "shared mount " : "local only   "}: median ${Math.round(median(times[mode]))} ms (${times[mode].map(Math.round).join(", ")}), ${downloads[mode]} packages downloaded`);
    }
  } finally {
    await server.stop();
  }
} finally {
  registry.stop(true);
  rmSync(work, { recursive: true, force: true });
}
