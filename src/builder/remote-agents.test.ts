/**
 * Both ends of `--ssh` for a build on a worker, joined without the server between them: the
 * worker's socket (worker/agent-socket.ts) relays each message to the submitter's end, which
 * passes it to a real OpenSSH agent. `ssh-add -l` through the worker's socket lists the key.
 */
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SshAgents } from "../executor/ssh.ts";
import { serveAgent } from "../worker/agent-socket.ts";
import { RemoteAgents } from "./remote-agents.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-remote-agents-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function makeKey(name: string): { key: string; fingerprint: string } {
  const key = join(work, name);
  expect(Bun.spawnSync(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", key]).exitCode).toBe(0);
  return { key, fingerprint: Bun.spawnSync(["ssh-keygen", "-l", "-f", key]).stdout.toString().split(" ")[1] };
}

async function listKeys(socket: string): Promise<{ out: string; code: number }> {
  const child = Bun.spawn(["ssh-add", "-l"], { env: { SSH_AUTH_SOCK: socket, PATH: process.env.PATH }, stdout: "pipe", stderr: "pipe" });
  const [out, code] = await Promise.all([new Response(child.stdout).text(), child.exited]);
  return { out, code };
}

/** The worker's socket for agent `id`, relayed straight to `remote` (as the server would, ask by ask). */
function joined(remote: RemoteAgents, id: string, path: string) {
  let n = 0;
  return serveAgent(path, async ({ conn, data }) => {
    const ask = { id: `ask-${++n}`, agent: id, conn, ...(data ? { data: data.toString("base64") } : { close: true as const }) };
    const replies = await remote.answer([ask]);
    return Buffer.from(replies[ask.id], "base64");
  });
}

test("ssh-add -l through the worker's socket lists the submitter's key, connection after connection", async () => {
  const { key, fingerprint } = makeKey("remote");
  const agents = await SshAgents.start([{ id: "default", paths: [key] }]);
  const remote = new RemoteAgents(agents);
  const socket = join(work, "worker.sock");
  const served = joined(remote, "default", socket);
  try {
    for (let i = 0; i < 3; i++) expect(await listKeys(socket)).toEqual({ out: expect.stringContaining(fingerprint), code: 0 });
  } finally {
    served.stop();
    remote.close();
    agents.stop();
  }
});

test("an agent the build was not given, or one that went away, answers with a failure at once (no hang)", async () => {
  const { key } = makeKey("gone");
  const agents = await SshAgents.start([{ id: "default", paths: [key] }]);
  const remote = new RemoteAgents(agents);
  const unknown = joined(remote, "other", join(work, "other.sock"));
  const known = joined(remote, "default", join(work, "known.sock"));
  try {
    expect((await listKeys(join(work, "other.sock"))).code).not.toBe(0);
    agents.stop(); // the submitter's agent dies
    for (let i = 0; i < 50 && existsSync(agents.socket("default")!); i++) await Bun.sleep(20);
    expect((await listKeys(join(work, "known.sock"))).code).not.toBe(0);
  } finally {
    unknown.stop();
    known.stop();
    remote.close();
  }
});

test("an agent that hangs up in the middle of a connection: the next message on it fails at once", async () => {
  // An agent that answers one message and hangs up.
  const agentPath = join(work, "rude-agent.sock");
  const rude = Bun.listen({ unix: agentPath, socket: { data: (socket) => void (socket.write(Buffer.from([0, 0, 0, 1, 12])), socket.end()) } });
  const agents = await SshAgents.start([{ id: "default", paths: [agentPath] }]);
  const remote = new RemoteAgents(agents);
  const path = join(work, "rude-worker.sock");
  const served = joined(remote, "default", path);
  try {
    const replies: Buffer[] = [];
    let wake = () => {};
    const client = await Bun.connect({ unix: path, socket: { data: (_socket, bytes) => void (replies.push(Buffer.from(bytes)), wake()) } });
    const next = () => new Promise<Buffer>((resolve) => (wake = () => resolve(replies.shift()!)));
    const request = Buffer.from([0, 0, 0, 1, 11]); // SSH_AGENTC_REQUEST_IDENTITIES
    client.write(request);
    expect(await next()).toEqual(Buffer.from([0, 0, 0, 1, 12]));
    await Bun.sleep(50); // the agent has hung up by now
    client.write(request);
    expect(await next()).toEqual(Buffer.from([0, 0, 0, 1, 5])); // SSH_AGENT_FAILURE
    client.end();
  } finally {
    served.stop();
    remote.close();
    rude.stop(true);
  }
});
