/**
 * The worker's end of `--ssh` for a remote build: a unix socket in the job's private directory,
 * given to the job's build as its agent (`--ssh ID=SOCKET`). Each connection a RUN makes gets an
 * id, its messages go one at a time to the submitter's agent (through the server: `relay`), and
 * each reply comes back on that connection. Nothing is stored; the socket goes with the job.
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Socket } from "bun";
import { AGENT_FAILURE, FrameReader, isOneFrame } from "../util/agent-frames.ts";

/** Sends one message (or, with no data, the connection's end) and gives the agent's reply. */
export type AgentRelayCall = (message: { conn: string; data?: Buffer }) => Promise<Buffer | undefined>;

interface Connection {
  id: string;
  reader: FrameReader;
  /** The connection's messages, relayed in order: each waits for the reply to the one before. */
  chain: Promise<void>;
  closed: boolean;
  /** Reply bytes the socket did not take yet (written on drain). */
  unsent: Buffer;
}

export function serveAgent(path: string, relay: AgentRelayCall): { stop(): void } {
  const server = Bun.listen<Connection>({
    unix: path,
    socket: {
      open(socket) {
        socket.data = { id: randomUUID(), reader: new FrameReader(), chain: Promise.resolve(), closed: false, unsent: Buffer.alloc(0) };
      },
      data(socket, bytes) {
        const connection = socket.data;
        let frames: Buffer[];
        try {
          frames = connection.reader.push(bytes);
        } catch {
          socket.end(); // not the agent protocol, or a message no agent takes
          return;
        }
        for (const frame of frames) connection.chain = connection.chain.then(() => relayOne(socket, relay, frame));
      },
      drain(socket) {
        write(socket, Buffer.alloc(0));
      },
      close(socket) {
        const connection = socket.data;
        connection.closed = true;
        // The submitter closes its own connection to the agent once the earlier messages are answered.
        connection.chain = connection.chain.then(() => void relay({ conn: connection.id }).catch(() => {}));
      },
    },
  });
  return { stop: () => server.stop(true) };
}

async function relayOne(socket: Socket<Connection>, relay: AgentRelayCall, frame: Buffer) {
  if (socket.data.closed) return;
  const reply = await relay({ conn: socket.data.id, data: frame }).catch(() => undefined);
  if (socket.data.closed) return;
  // A reply that is not one whole message would desynchronise the RUN's client: it gets a failure.
  write(socket, reply && isOneFrame(reply) ? reply : AGENT_FAILURE);
}

function write(socket: Socket<Connection>, bytes: Buffer) {
  const connection = socket.data;
  const all = connection.unsent.length ? Buffer.concat([connection.unsent, bytes]) : bytes;
  if (all.length === 0) return;
  const written = socket.write(all);
  connection.unsent = Buffer.from(all.subarray(Math.max(0, written)));
}

/**
 * A socket for each agent id of the job, each relayed by `relay`: the build's `--ssh` flags, and
 * how to close them all when the build ends. The sockets live in a private directory of their
 * own under the system's temporary directory: a socket's path must fit in 108 bytes, and the
 * job's directory inside a deep cache directory may not.
 */
export function serveAgents(ids: string[], relay: (agent: string, message: { conn: string; data?: Buffer }) => Promise<Buffer | undefined>): { flags: string[]; stop(): void } {
  if (ids.length === 0) return { flags: [], stop: () => {} };
  const dir = mkdtempSync(join(tmpdir(), "memobuild-agents-")); // mode 0700
  const served: { flag: string; server: { stop(): void } }[] = [];
  try {
    ids.forEach((id, i) => {
      const path = join(dir, `ssh-agent-${i}.sock`);
      served.push({ flag: `--ssh=${id}=${path}`, server: serveAgent(path, (message) => relay(id, message)) });
    });
  } catch (error) {
    for (const s of served) s.server.stop();
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const stop = () => {
    for (const s of served) s.server.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  return { flags: served.map((s) => s.flag), stop };
}
