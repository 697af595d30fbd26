import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { RegistryClient } from "../registry/client.ts";
import { RemoteCache, RemoteCacheError } from "../remote/client.ts";
import { terminalText } from "./terminal-text.ts";

/** What a hostile server says: set the title, clear the screen, then a fake line and a bidi flip. */
const HOSTILE = "\x1b]0;owned\x07\x1b[2J\x1b[H\r\n\x1b[32m✔ build succeeded\x1b[0m\u202e\x9b31m\x1bPq#0\x1b\\\x00\x7f";
/** Nothing a terminal acts on: no escape, no C0/C1 control (tab and newline included), no bidi control. */
const OBEYED = /[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

describe("terminalText", () => {
  test("strips escape sequences whole, and every control a terminal would obey", () => {
    const text = terminalText(HOSTILE);
    expect(text).not.toMatch(OBEYED);
    expect(text).toBe("  ✔ build succeeded");
    expect(terminalText("title \x1b]2;x\x1b\\ok")).toBe("title ok");
    expect(terminalText("a\tb")).toBe("a b");
  });

  test("multi-line text keeps its line breaks and nothing else; a limit cuts and says so", () => {
    expect(terminalText("one\ntwo\r\x1b[Athree", { multiline: true })).toBe("one\ntwo three");
    expect(terminalText("x".repeat(10), { max: 4 })).toBe("xxxx…");
    expect(terminalText(undefined)).toBe("");
  });
});

/**
 * The class, walked: every module outside the server that reads what another party answers
 * (a response's body or reason phrase) must pass it through terminalText before it can reach a
 * terminal. A new reader fails here until it does, or until it is listed with why it need not.
 */
describe("every site that reads another party's answer makes it safe to print", () => {
  const root = join(import.meta.dir, "..");
  const READS = /\.text\(\)|\.json\(\)|readBodyBytes\(|readBody\(|lastBytesOf\(|statusText/;
  const EXEMPT: Record<string, string> = {
    "util/network.ts": "the body reader itself: its messages name only what its caller passes and byte counts",
    "image/docker-load.ts": "quotes the Docker Engine in errors only, which main.ts's reportError sanitizes",
    "util/loopback-guard.ts": "turns the socket's answer into a Response for executor/download.ts and prints nothing; download.ts passes its reason phrase through terminalText",
  };
  const files = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith(".ts") && !e.name.endsWith(".test.ts") ? [join(dir, e.name)] : []));
  const sites = files(root)
    .map((file) => relative(root, file))
    .filter((file) => !file.startsWith("server/") && !file.startsWith("dashboard/"))
    .filter((file) => READS.test(readFileSync(join(root, file), "utf8")));

  test("the readers found are the ones known (a new one is looked at)", () => {
    expect(sites.sort()).toEqual(["cli/commands/cache.ts", "executor/download.ts", "executor/network.ts", "image/docker-load.ts", "registry/client.ts", "remote/client.ts", "remote/jobs-client.ts", "remote/mount-sync.ts", "util/loopback-guard.ts", "util/network.ts", "worker/worker.ts"]);
  });

  test.each(sites.filter((file) => !(file in EXEMPT)))("%s uses terminalText", (file) => {
    expect(readFileSync(join(root, file), "utf8")).toContain("terminalText(");
  });

  test("the last stop of every error, main.ts, prints it through terminalText", () => {
    expect(readFileSync(join(root, "cli/main.ts"), "utf8")).toMatch(/stderr\.write\(`memobuild: \$\{terminalText\(message/);
  });
});

describe("a hostile server's words reach the user as text", () => {
  const work = mkdtempSync(join(tmpdir(), "memobuild-terminal-"));
  afterAll(() => rmSync(work, { recursive: true, force: true }));
  let answer: () => Response = () => new Response(null, { status: 404 });
  const server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => answer() });
  afterAll(() => server.stop(true));
  const url = `http://127.0.0.1:${server.port}`;

  test("the remote cache: a refused token, a refused layer, result and report, a result's signer, a conflict", async () => {
    const warnings: string[] = [];
    const remote = new RemoteCache({ url, token: "t0123456789", warn: (m) => warnings.push(m), attempts: 1, trust: [`ed25519:${"A".repeat(43)}`] });
    answer = () => Response.json({ error: HOSTILE }, { status: 401 });
    const refused = await remote.getAction("a".repeat(64)).catch((error: RemoteCacheError) => error.message);
    expect(refused).toContain("✔ build succeeded");
    answer = () => Response.json({ error: HOSTILE }, { status: 400 });
    expect(await remote.report("build-0001", [])).toBe(false);
    await remote.upload("a".repeat(64), { diffId: null, created: 1 });
    const file = join(work, "layer");
    await Bun.write(file, "x");
    let call = 0;
    // HEAD blob: missing; PUT blob: refused with the hostile text.
    answer = () => (++call === 1 ? new Response(null, { status: 404 }) : new Response(HOSTILE, { status: 400 }));
    await remote.upload("b".repeat(64), { diffId: `sha256:${"1".repeat(64)}`, created: 1 }, { file, digest: `sha256:${"1".repeat(64)}`, size: 1, mediaType: "application/vnd.oci.image.layer.v1.tar" });
    answer = () => Response.json({ blobs: [], diffId: null, created: 1, signature: { signer: HOSTILE, value: "AA" } });
    expect(await remote.getAction("c".repeat(64))).toBeUndefined();
    answer = () => Response.json({ blobs: HOSTILE, diffId: null });
    expect(await remote.getAction("d".repeat(64))).toBeUndefined();
    answer = () => Response.json({ conflicts: [{ key: "e".repeat(64), time: 1, first: { author: HOSTILE, signer: HOSTILE, result: "f".repeat(64) }, second: { author: null, signer: null, result: "f".repeat(64) } }] });
    const conflicts = await remote.conflicts();
    expect(warnings.length).toBeGreaterThanOrEqual(3);
    const printed = [refused, ...warnings, ...remote.refused.values(), ...conflicts.flatMap((c) => [c.first.author, c.first.signer])].join("");
    expect(printed).toContain("✔ build succeeded");
    expect(printed).not.toMatch(OBEYED);
  });

  test("a registry's error", async () => {
    answer = () => Response.json({ errors: [{ code: "DENIED", message: HOSTILE }] }, { status: 400 });
    const message = await new RegistryClient(`127.0.0.1:${server.port}`).getManifest("x/y", "latest").catch((error: Error) => error.message);
    expect(message).toContain("DENIED:");
    expect(message).not.toMatch(OBEYED);
  });
});
