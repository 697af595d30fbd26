/**
 * The submitter's end of `--ssh` for a build on a worker: the agents stay here. Each message a
 * RUN on the worker sends its agent socket arrives as an ask (while the client follows its
 * build); it goes to the local agent on a connection of its own for that RUN's connection, and
 * the agent's reply goes back. Keys never leave the agent; an agent this build was not given
 * answers with a failure, as an agent that refuses.
 */
import type { Socket } from "bun";
import type { SshAgents } from "../executor/ssh.ts";
import type { AgentAsk } from "../remote/jobs-client.ts";
import { AGENT_FAILURE, FrameReader, isOneFrame } from "../util/agent-frames.ts";

interface Upstream {
  reader: FrameReader;
  /** Who waits for the next whole reply. */
  waiting?: (reply: Buffer | undefined) => void;
  /** The agent hung up: every later message gets a failure at once, never a wait. */
  closed?: true;
}

/** The relay on the server gives up on a reply after 30 s; so does this end. */
const REPLY_TIMEOUT_MS = 30_000;

/** One connection to a local agent: a message in, its reply out, one at a time. */
class AgentConnection {
  private socket: Promise<Socket<Upstream>>;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(path: string) {
    this.socket = Bun.connect<Upstream>({
      unix: path,
      socket: {
        open(socket) {
          socket.data = { reader: new FrameReader() };
        },
        data(socket, bytes) {
          let frames: Buffer[];
          try {
            frames = socket.data.reader.push(bytes);
          } catch {
            frames = [];
            socket.end();
          }
          for (const frame of frames) {
            const waiting = socket.data.waiting;
            socket.data.waiting = undefined;
            waiting?.(frame);
          }
        },
        close(socket) {
          hangUp(socket.data);
        },
        error(socket) {
          hangUp(socket.data);
        },
      },
    });
  }

  request(message: Buffer): Promise<Buffer> {
    const next = this.chain.then(async () => {
      const socket = await this.socket;
      if (socket.data.closed) return AGENT_FAILURE;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const reply = new Promise<Buffer | undefined>((resolve) => {
        socket.data.waiting = resolve;
        timer = setTimeout(() => {
          socket.end(); // a reply that comes later would answer the next message
          hangUp(socket.data);
        }, REPLY_TIMEOUT_MS);
      });
      socket.write(message);
      const answered = await reply;
      clearTimeout(timer);
      return answered ?? AGENT_FAILURE;
    });
    this.chain = next.catch(() => {});
    return next.catch(() => AGENT_FAILURE);
  }

  close() {
    void this.chain.then(async () => (await this.socket).end()).catch(() => {});
  }
}

function hangUp(upstream: Upstream | undefined) {
  if (!upstream) return;
  upstream.closed = true;
  const waiting = upstream.waiting;
  upstream.waiting = undefined;
  waiting?.(undefined);
}

export class RemoteAgents {
  private readonly connections = new Map<string, AgentConnection>();

  constructor(private readonly agents: SshAgents) {}

  /** The replies (base64, by ask id) to a batch of asks; connections answer in parallel, each in order. */
  async answer(asks: AgentAsk[]): Promise<Record<string, string>> {
    const replies = await Promise.all(asks.map(async (ask): Promise<[string, string]> => [ask.id, (await this.answerOne(ask)).toString("base64")]));
    return Object.fromEntries(replies);
  }

  private async answerOne(ask: AgentAsk): Promise<Buffer> {
    const key = `${ask.agent}\0${ask.conn}`;
    if (ask.close || ask.data === undefined) {
      this.connections.get(key)?.close();
      this.connections.delete(key);
      return Buffer.alloc(0);
    }
    const message = Buffer.from(ask.data, "base64");
    const socket = this.agents.socket(ask.agent);
    if (!socket || !isOneFrame(message)) return AGENT_FAILURE;
    let connection = this.connections.get(key);
    if (!connection) this.connections.set(key, (connection = new AgentConnection(socket)));
    return connection.request(message);
  }

  /** The build is over: every connection to the agents ends. */
  close() {
    for (const connection of this.connections.values()) connection.close();
    this.connections.clear();
  }
}
