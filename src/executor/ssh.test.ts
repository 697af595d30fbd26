/**
 * SSH agent forwarding: a real OpenSSH agent holding a key made here, reached through the
 * relay socket a RUN gets. `ssh-add -l` through the relay lists the key (so signing requests
 * reach the agent), the relay socket has the owner and mode asked for, and bad specs are named.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseSshSpec, relayAgent, SshAgents } from "./ssh.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-ssh-test-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function makeKey(name: string): { key: string; fingerprint: string } {
  const key = join(work, name);
  const made = Bun.spawnSync(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", key], { stderr: "pipe" });
  if (made.exitCode !== 0) throw new Error(made.stderr.toString());
  const fingerprint = Bun.spawnSync(["ssh-keygen", "-l", "-f", key]).stdout.toString().split(" ")[1];
  return { key, fingerprint };
}

async function listKeys(socket: string): Promise<string> {
  const child = Bun.spawn(["ssh-add", "-l"], { env: { SSH_AUTH_SOCK: socket, PATH: process.env.PATH }, stdout: "pipe", stderr: "pipe" });
  const [out] = await Promise.all([new Response(child.stdout).text(), child.exited]);
  return out;
}

describe("--ssh specs", () => {
  test("ID alone, ID=SOCKET, ID=KEY,KEY", () => {
    expect(parseSshSpec("default")).toEqual({ id: "default", paths: [] });
    expect(parseSshSpec("gh=/a/key,/b/key")).toEqual({ id: "gh", paths: ["/a/key", "/b/key"] });
    expect(() => parseSshSpec("bad id=/x")).toThrow("the ID must be");
  });

  test("without SSH_AUTH_SOCK, `default` says what to do", async () => {
    await expect(SshAgents.start([{ id: "default", paths: [] }], {})).rejects.toThrow("SSH_AUTH_SOCK is not set");
  });

  test("a key with a passphrase is refused at once, naming ssh-add and the key (no prompt, no hang)", async () => {
    const key = join(work, "locked");
    expect(Bun.spawnSync(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret-passphrase", "-f", key]).exitCode).toBe(0);
    await expect(SshAgents.start([{ id: "locked", paths: [key] }])).rejects.toThrow(`--ssh locked: ssh-add could not load ${key}`);
  });

  test("a path that is neither a socket nor a key", async () => {
    await expect(SshAgents.start([{ id: "x", paths: [join(work, "missing")] }])).rejects.toThrow("neither a socket nor a key file");
  });
});

describe("forwarding", () => {
  test("keys are served through a relay socket with the mount's owner and mode", async () => {
    const { key, fingerprint } = makeKey("one");
    const agents = await SshAgents.start([{ id: "default", paths: [key] }]);
    try {
      const agent = agents.socket("default")!;
      expect(await listKeys(agent)).toContain(fingerprint);
      const relayPath = join(work, "relay.sock");
      const relay = relayAgent(agent, relayPath, { uid: 1000, gid: 1001, mode: 0o640 });
      try {
        const stat = statSync(relayPath);
        expect([stat.isSocket(), stat.uid, stat.gid, stat.mode & 0o777]).toEqual([true, 1000, 1001, 0o640]);
        // Several clients one after another, each a full agent conversation.
        for (let i = 0; i < 3; i++) expect(await listKeys(relayPath)).toContain(fingerprint);
      } finally {
        relay.stop();
      }
    } finally {
      agents.stop();
    }
  });

  test("an existing agent socket is forwarded as it is, and stop() ends only agents it started", async () => {
    const { key, fingerprint } = makeKey("two");
    const started = await SshAgents.start([{ id: "default", paths: [key] }]);
    const socket = started.socket("default")!;
    try {
      const forwarded = await SshAgents.start([{ id: "default", paths: [] }], { SSH_AUTH_SOCK: socket });
      expect(forwarded.socket("default")).toBe(socket);
      forwarded.stop();
      expect(await listKeys(socket)).toContain(fingerprint);
    } finally {
      started.stop();
    }
  });
});
