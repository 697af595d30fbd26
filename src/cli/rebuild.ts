/**
 * `verify --rebuild CONTEXT`: builds again from what the provenance records (the Dockerfile and
 * context, checked against their recorded digests first; build args, target, labels; the
 * recorded SOURCE_DATE_EPOCH) without the cache, and says whether the image digest is the same.
 */
import { isInside, readRegularFile } from "../util/host-file.ts";
import { MAX_DOCKERFILE_BYTES } from "../frontend/parser.ts";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import type { SlsaProvenance } from "../attest/provenance.ts";
import { sha256Hex, type Statement } from "../attest/statement.ts";
import { loadContext } from "../context/context.ts";
import { UserError } from "../errors.ts";
import { formatPlatform, hostPlatform } from "../frontend/platform.ts";

export class RebuildError extends UserError {}

interface Recorded {
  dockerfile?: { path?: string; digest?: { sha256?: string } };
  context?: { digest?: { blake3?: string } };
  target?: string;
  buildArgs?: Record<string, string>;
  labels?: Record<string, string>;
  sourceDateEpoch?: number;
  platform?: string;
}

/** This program, as a command line (the compiled binary, or bun running the entry point). */
const self = () => (basename(process.execPath) === "bun" ? [process.execPath, process.argv[1]!] : [process.execPath]);

/** The build command that repeats the recorded build into `dest`, after checking the inputs are the recorded ones. */
export async function rebuildCommand(provenance: Statement<SlsaProvenance>, contextDir: string, dest: string, extra: string[]): Promise<{ argv: string[]; env: Record<string, string> }> {
  const recorded = provenance.predicate.buildDefinition.externalParameters as Recorded;
  const context = resolve(contextDir);
  // The provenance names the Dockerfile: it must be inside the context given, and a regular file.
  const recordedPath = recorded.dockerfile?.path ?? "Dockerfile";
  const dockerfile = resolve(context, recordedPath);
  if (!isInside(dockerfile, context)) throw new RebuildError(`--rebuild: the provenance names the Dockerfile ${recordedPath}, outside the context ${contextDir}`);
  if (!existsSync(dockerfile)) throw new RebuildError(`--rebuild ${contextDir}: the recorded Dockerfile ${recordedPath} is not in it`);
  const dockerfileDigest = sha256Hex(readRegularFile(dockerfile, { limit: MAX_DOCKERFILE_BYTES, what: `Dockerfile ${recordedPath}` }));
  if (recorded.dockerfile?.digest?.sha256 !== dockerfileDigest) {
    throw new RebuildError(`--rebuild: ${dockerfile} is sha256:${dockerfileDigest}; the provenance records sha256:${recorded.dockerfile?.digest?.sha256}`);
  }
  const recordedContext = recorded.context?.digest?.blake3;
  if (recordedContext) {
    const actual = (await loadContext({ contextDir: context, dockerfile })).digest();
    if (actual !== recordedContext) throw new RebuildError(`--rebuild: the context ${contextDir} is blake3:${actual}; the provenance records blake3:${recordedContext}`);
  }
  const argv = [...self(), "build", context, "-f", dockerfile, "--no-cache", "--progress", "quiet", "-o", `type=oci,dest=${dest}`, ...extra];
  if (recorded.target) argv.push("--target", recorded.target);
  // An image for another platform is rebuilt for it (this machine's needs no flag, as when it was built).
  if (recorded.platform && recorded.platform !== formatPlatform(hostPlatform())) argv.push("--platform", recorded.platform);
  for (const [name, value] of Object.entries(recorded.buildArgs ?? {})) argv.push("--build-arg", `${name}=${value}`);
  for (const [name, value] of Object.entries(recorded.labels ?? {})) argv.push("--label", `${name}=${value}`);
  const env: Record<string, string> = {};
  if (recorded.sourceDateEpoch !== undefined) env.SOURCE_DATE_EPOCH = String(recorded.sourceDateEpoch);
  return { argv, env };
}

/** Rebuilds; the digest the rebuild made, to compare with the provenance's subject. */
export async function rebuild(provenance: Statement<SlsaProvenance>, contextDir: string, extra: string[]): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), "memobuild-rebuild-"));
  try {
    const { argv, env } = await rebuildCommand(provenance, contextDir, join(dir, "oci"), extra);
    // The rebuild's own errors go straight to the user; its stdout (the image ID) is not wanted.
    const code = await Bun.spawn(argv, { stdout: "ignore", stderr: "inherit", env: { ...process.env, ...env } }).exited;
    if (code !== 0) throw new RebuildError(`--rebuild: the build failed (exit code ${code})`);
    const index = JSON.parse(readFileSync(join(dir, "oci", "index.json"), "utf8")) as { manifests: { digest: string }[] };
    return index.manifests[0]!.digest;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
