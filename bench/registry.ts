/**
 * Pull and push throughput of a ~200 MB image over loopback (Debian's docker-registry on
 * 127.0.0.1), MemoBuild beside `skopeo copy` of the same image, in one run.
 *
 *   bun run bench/registry.ts [--mb 200]
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { memobuildBinary, REPO_ROOT } from "../test/support/binary.ts";

const { values } = parseArgs({ options: { mb: { type: "string", default: "200" } } });
const mb = Number(values.mb);
const work = mkdtempSync(join(tmpdir(), "memobuild-bench-registry-"));
const binary = memobuildBinary();
let registry: ReturnType<typeof Bun.spawn> | undefined;

function run(command: string[]): number {
  const start = performance.now();
  const result = Bun.spawnSync(command, { stdout: "pipe", stderr: "pipe" });
  if (result.exitCode !== 0) throw new Error(`${command.join(" ")}: ${result.stderr.toString().slice(-1500)}`);
  return performance.now() - start;
}

try {
  for (const tool of ["docker-registry", "skopeo"]) {
    if (!Bun.which(tool)) run(["bash", join(REPO_ROOT, "scripts/install-system-deps.sh"), tool]);
  }
  run(["bash", join(REPO_ROOT, "scripts/prepare-base-rootfs.sh")]);
  const port = 15900 + (process.pid % 90);
  const host = `127.0.0.1:${port}`;
  writeFileSync(join(work, "registry.yml"), `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${join(work, "storage")}\nhttp:\n  addr: ${host}\n`);
  registry = Bun.spawn(["docker-registry", "serve", join(work, "registry.yml")], { stdout: "ignore", stderr: "ignore" });
  for (let i = 0; i < 100 && !(await fetch(`http://${host}/v2/`).then(() => true, () => false)); i++) await Bun.sleep(50);

  // The image: busybox plus ~200 MB of incompressible data in a few layers.
  const cache = join(work, "cache");
  run([binary, "build", join(REPO_ROOT, "examples/base"), "--cache-dir", cache, "-t", "memobuild/busybox:latest"]);
  const project = join(work, "project");
  mkdirSync(project);
  const per = Math.ceil(mb / 4);
  writeFileSync(
    join(project, "Dockerfile"),
    ["FROM memobuild/busybox", ...[1, 2, 3, 4].map((i) => `RUN head -c ${per * 1024 * 1024} /dev/urandom > /data${i}`)].join("\n") + "\n",
  );
  const oci = join(work, "image-oci");
  run([binary, "build", project, "--cache-dir", cache, "-t", "bench/big:1", "--output", `type=oci,dest=${oci}`]);
  const size = Number(Bun.spawnSync(["du", "-sb", oci], { stdout: "pipe" }).stdout.toString().split("\t")[0]) / 1024 / 1024;

  const rate = (ms: number) => `${(size / (ms / 1000)).toFixed(0)} MB/s`;
  const line = (label: string, ms: number) => console.log(`  ${label.padEnd(42)} ${(ms / 1000).toFixed(2).padStart(6)} s   ${rate(ms)}`);
  console.log(`image: ${size.toFixed(0)} MB (gzip layers of random data), registry ${host}`);

  // Push: MemoBuild from its store; skopeo from the exported OCI layout. Fresh repositories.
  run([binary, "image", "import", `oci:${oci}:bench/big:1`, "-t", `${host}/mb/big:1`, "--cache-dir", cache]);
  const mbPush = run([binary, "image", "push", `${host}/mb/big:1`, "--cache-dir", cache]);
  const skPush = run(["skopeo", "copy", "--dest-tls-verify=false", `oci:${oci}:bench/big:1`, `docker://${host}/sk/big:1`]);
  console.log("push");
  line("memobuild image push", mbPush);
  line("skopeo copy oci: -> docker://", skPush);
  console.log(`  ratio (memobuild / skopeo): ${(mbPush / skPush).toFixed(2)}x`);

  // Pull: MemoBuild into an empty store (verified and unpacked, ready to build on);
  // skopeo into an OCI layout (verified, not unpacked).
  const mbPull = run([binary, "image", "pull", `${host}/sk/big:1`, "--cache-dir", join(work, "pull-cache")]);
  const skPull = run(["skopeo", "copy", "--src-tls-verify=false", `docker://${host}/sk/big:1`, `oci:${join(work, "skopeo-pull")}:big`]);
  console.log("pull");
  line("memobuild image pull (verified + unpacked)", mbPull);
  line("skopeo copy docker:// -> oci:", skPull);
  console.log(`  ratio (memobuild / skopeo): ${(mbPull / skPull).toFixed(2)}x`);
} finally {
  if (registry) {
    registry.kill("SIGTERM");
    await registry.exited;
  }
  rmSync(work, { recursive: true, force: true });
}
