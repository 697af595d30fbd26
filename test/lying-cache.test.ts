/**
 * Lying caches (issue 15): the real `memobuild serve` with its storage corrupted underneath,
 * and a local cache corrupted the same way. Every corruption is detected and named, the build
 * still gives the right image (the step runs here instead), and no corrupt byte reaches it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT, runMemobuild, runMemobuildAsync } from "./support/binary.ts";
import { startCacheServer, type CacheServer } from "./support/server.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-lying-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const TOKEN = "lying-cache-token";
const baseOci = join(work, "base-oci");
const project = join(work, "project");
const signingKey = join(work, "ci.key");
let publicKey = "";
/** The pristine server data after machine "ci" built and signed everything. */
const pristine = join(work, "pristine-data");

interface Step { id: string; key: string; status: string; remote_refused?: string }

function mustRun(args: string[]) {
  const result = runMemobuild(args);
  if (result.exitCode !== 0) throw new Error(`memobuild ${args.join(" ")} failed (${result.exitCode}):\n${result.stderr}`);
  return result;
}

let machines = 0;
/** A fresh machine: its own cache with the base image. */
function machine(): string {
  const cache = join(work, `machine-${++machines}`);
  mustRun(["image", "import", `oci:${baseOci}:memobuild/busybox:latest`, "--cache-dir", cache]);
  return cache;
}

async function build(cache: string, args: string[]) {
  const metadata = join(work, `meta-${++machines}.json`);
  const result = await runMemobuildAsync(["build", project, "--cache-dir", cache, "--metadata-file", metadata, "-t", "lying:test", "--progress", "plain", ...args]);
  const steps: Step[] = existsSync(metadata) ? JSON.parse(readFileSync(metadata, "utf8")).steps : [];
  return { ...result, steps };
}

const contentOf = (cache: string) => mustRun(["run", "lying:test", "--cache-dir", cache, "--", "cat", "/one", "/two", "/both"]).stdout;

/** Every blob in a local cache hashes to its name. */
function expectBlobsVerify(cache: string) {
  const dir = join(cache, "blobs/sha256");
  for (const name of readdirSync(dir)) expect(new Bun.CryptoHasher("sha256").update(readFileSync(join(dir, name))).digest("hex")).toBe(name);
}

/** The server's action for a step key, and where its layer blob lies. */
function storedAction(data: string, key: string): { body: string; blobFile: string } {
  const db = new Database(join(data, "cache.db"), { readonly: true });
  try {
    const row = db.query("SELECT body FROM actions WHERE key = ?").get(key) as { body: string };
    const hash = JSON.parse(row.body).layer.blake3 as string;
    return { body: row.body, blobFile: join(data, "blobs", hash.slice(0, 2), hash) };
  } finally {
    db.close();
  }
}

let keys: Record<string, string> = {};
const EXPECTED = "one\ntwo\none\ntwo\n";

beforeAll(async () => {
  const prepare = Bun.spawnSync(["bash", join(REPO_ROOT, "scripts/prepare-base-rootfs.sh")], { stderr: "pipe" });
  if (prepare.exitCode !== 0) throw new Error(prepare.stderr.toString());
  mustRun(["build", join(REPO_ROOT, "examples/base"), "--cache-dir", join(work, "base-cache"), "-t", "memobuild/busybox:latest", "--output", `type=oci,dest=${baseOci}`]);
  mkdirSync(project);
  writeFileSync(join(project, "Dockerfile"), "FROM memobuild/busybox\nRUN echo one > /one\nRUN echo two > /two\nRUN cat /one /two > /both\n");
  publicKey = mustRun(["key", "generate", "--out", signingKey]).stdout.trim();
  const server = await startCacheServer(pristine, ["--token", TOKEN]);
  try {
    const ci = await build(machine(), ["--remote", server.url, "--remote-token", TOKEN, "--remote-sign-key", signingKey, "--remote-upload", "wait"]);
    if (ci.exitCode !== 0) throw new Error(ci.stderr);
    keys = Object.fromEntries(ci.steps.map((s) => [s.id, s.key]));
  } finally {
    await server.stop();
  }
}, 120_000);

interface Action { diffId: string; layer: { blake3: string; size: number } }
/** Rewrites the stored action of `key` (given the action of step 0/2 to borrow from). */
function editAction(data: string, key: string, edit: (action: Action, other: Action) => Action) {
  const db = new Database(join(data, "cache.db"));
  try {
    const body = (k: string) => JSON.parse((db.query("SELECT body FROM actions WHERE key = ?").get(k) as { body: string }).body) as Action;
    db.query("UPDATE actions SET body = ? WHERE key = ?").run(JSON.stringify(edit(body(key), body(keys["0/2"]))), key);
  } finally {
    db.close();
  }
}

let copies = 0;
/** A server on a copy of the pristine data, corrupted by `corrupt` before it starts. */
async function lyingServer(corrupt: (data: string) => void): Promise<CacheServer> {
  const data = join(work, `data-${++copies}`);
  cpSync(pristine, data, { recursive: true });
  corrupt(data);
  return startCacheServer(data, ["--token", TOKEN]);
}

describe("a remote cache that lies", () => {
  const remote = (server: CacheServer) => ["--remote", server.url, "--remote-token", TOKEN];
  const corruptions: [string, (data: string) => void, RegExp][] = [
    [
      "a flipped byte in a stored layer",
      (data) => {
        const { blobFile } = storedAction(data, keys["0/1"]);
        const bytes = readFileSync(blobFile);
        bytes[bytes.length >> 1] ^= 0x01;
        writeFileSync(blobFile, bytes);
      },
      /remote result is corrupt: blob [0-9a-f]{64} from the remote cache hashes to [0-9a-f]{64}; nothing was kept/,
    ],
    [
      "a truncated layer",
      (data) => truncateSync(storedAction(data, keys["0/1"]).blobFile, 20),
      /remote result is corrupt: blob [0-9a-f]{64} from the remote cache hashes to [0-9a-f]{64}; nothing was kept/,
    ],
    [
      // The blob is intact (its BLAKE3 matches), but it is not the layer the action names. (An
      // action whose layer blob is not among its blobs is not even well-formed: refused sooner.)
      "an action naming another step's blob",
      (data) => editAction(data, keys["0/1"], (action, other) => ({ ...action, blobs: [other.layer.blake3], layer: { ...action.layer, blake3: other.layer.blake3, size: other.layer.size } })),
      /remote result is corrupt: layer sha256:[0-9a-f]{64} from the remote cache hashes to sha256:[0-9a-f]{64}/,
    ],
    [
      // Blob and digest agree, but the diff ID is another layer's: caught while unpacking.
      "an action claiming another step's diff ID",
      (data) => editAction(data, keys["0/1"], (action, other) => ({ ...action, diffId: other.diffId })),
      /remote result is corrupt: layer sha256:[0-9a-f]{64} does not match its diff ID sha256:[0-9a-f]{64}/,
    ],
  ];
  for (const [name, corrupt, reason] of corruptions) {
    test(`${name}: detected, named, the step runs here, the image is right`, async () => {
      const server = await lyingServer(corrupt);
      try {
        const cache = machine();
        const result = await build(cache, remote(server));
        expect(result.exitCode).toBe(0);
        const step = result.steps.find((s) => s.id === "0/1")!;
        expect(step.status).toBe("executed");
        expect(step.remote_refused).toMatch(reason);
        expect(result.stderr).toContain(`warning: step ${keys["0/1"].slice(0, 12)}: remote result is corrupt`);
        expect(result.steps.filter((s) => s.id !== "0/1" && s.id !== "0/0").map((s) => s.status)).toEqual(["cached-remote", "cached-remote"]);
        expect(contentOf(cache)).toBe(EXPECTED);
        expectBlobsVerify(cache);
      } finally {
        await server.stop();
      }
    }, 60_000);
  }

  test("an action's body swapped for another step's: a client that trusts a signer refuses it and runs the step", async () => {
    const server = await lyingServer((data) => {
      const other = storedAction(data, keys["0/2"]).body;
      const db = new Database(join(data, "cache.db"));
      db.query("UPDATE actions SET body = ? WHERE key = ?").run(other, keys["0/1"]);
      db.close();
    });
    try {
      const cache = machine();
      const result = await build(cache, [...remote(server), "--remote-trust", publicKey]);
      expect(result.exitCode).toBe(0);
      const step = result.steps.find((s) => s.id === "0/1")!;
      expect(step.status).toBe("executed");
      expect(step.remote_refused).toMatch(/^remote result has a bad signature/);
      expect(contentOf(cache)).toBe(EXPECTED);
    } finally {
      await server.stop();
    }
  }, 60_000);
});

describe("a local cache that lies", () => {
  /** A machine that built the project, then had one of its layer blobs damaged by `damage`. */
  async function damagedMachine(damage: (file: string) => void): Promise<{ cache: string; digest: string }> {
    const cache = machine();
    const built = await build(cache, []);
    if (built.exitCode !== 0) throw new Error(built.stderr);
    const db = new Database(join(cache, "memobuild.db"), { readonly: true });
    const { digest } = db.query("SELECT l.digest AS digest FROM steps s JOIN layers l ON l.diff_id = s.diff_id WHERE s.key = ?").get(keys["0/1"]) as { digest: string };
    db.close();
    damage(join(cache, "blobs/sha256", digest.slice(7)));
    return { cache, digest };
  }
  const damages: [string, (file: string) => void][] = [
    ["a flipped byte in a layer blob", (file) => {
      const bytes = readFileSync(file);
      bytes[bytes.length >> 1] ^= 0x01;
      writeFileSync(file, bytes);
    }],
    ["a truncated layer blob", (file) => truncateSync(file, 20)],
  ];
  test("a flipped byte in an image config: the build that reads it names the blob and stops", async () => {
    const cache = machine();
    const db = new Database(join(cache, "memobuild.db"), { readonly: true });
    const { manifest_digest: manifestDigest } = db.query("SELECT manifest_digest FROM images").get() as { manifest_digest: string };
    db.close();
    const manifest = JSON.parse(readFileSync(join(cache, "blobs/sha256", manifestDigest.slice(7)), "utf8"));
    const configFile = join(cache, "blobs/sha256", manifest.config.digest.slice(7));
    const bytes = readFileSync(configFile);
    bytes[bytes.length >> 1] ^= 0x01;
    writeFileSync(configFile, bytes);
    const result = await build(cache, []);
    expect(result.stderr).toContain(`blob ${manifest.config.digest} is corrupt in the cache (its content hashes to sha256:`);
    expect(result.stderr).not.toContain("internal error");
    expect(result.exitCode).toBe(1);
  }, 60_000);

  for (const [name, damage] of damages) {
    test(`${name}: an export names it and writes no image with it`, async () => {
      const { cache, digest } = await damagedMachine(damage);
      const out = join(work, `out-${++copies}`);
      const result = await build(cache, ["--output", `type=oci,dest=${out}`]);
      expect(result.stderr).toContain(`blob ${digest} is corrupt in the cache (its content hashes to sha256:`);
      expect(result.stderr).toContain("it was removed, and the steps that made it run again on the next build");
      expect(result.exitCode).toBe(1);
      expect(existsSync(join(out, "index.json"))).toBe(false);
      // The next build remakes the layer, and the image is whole.
      const again = await build(cache, ["--output", `type=oci,dest=${out}`]);
      expect(again.exitCode).toBe(0);
      expect(again.steps.find((s) => s.id === "0/1")!.status).toBe("executed");
      expect(contentOf(cache)).toBe(EXPECTED);
      expectBlobsVerify(cache);
    }, 60_000);
  }
});
