/**
 * SSH agent forwarding for `RUN --mount=type=ssh`, as BuildKit does it: `--ssh ID[=SOCKET|KEY[,KEY]]`
 * names an agent (the caller's $SSH_AUTH_SOCK when no value is given, a socket, or key files
 * loaded into a private ssh-agent), and each RUN gets its own socket, owned and moded as the
 * mount says, that relays to that agent. Keys never enter the build: the container can ask the
 * agent to sign, nothing more, and the socket is gone from the layer after the run.
 */
import { chmodSync, chownSync, existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Socket } from "bun";
import { UserError } from "../errors.ts";

export class SshError extends UserError {}

export interface SshSpec {
  id: string;
  /** A socket, or key files; empty: $SSH_AUTH_SOCK. */
  paths: string[];
}

/** `default`, `default=/path/agent.sock`, `github=~/.ssh/id_ed25519,~/.ssh/other`. */
export function parseSshSpec(spec: string): SshSpec {
  const eq = spec.indexOf("=");
  const id = (eq < 0 ? spec : spec.slice(0, eq)).trim();
  if (!/^[A-Za-z0-9_.-]+$/.test(id)) throw new SshError(`--ssh ${spec}: the ID must be letters, digits, "_", "." or "-"`);
  const paths = eq < 0 ? [] : spec.slice(eq + 1).split(",").filter((p) => p !== "");
  return { id, paths };
}

/** The agents a build may forward, by ID: sockets given, or ssh-agents started for key files. */
export class SshAgents {
  private constructor(
    private readonly sockets: Map<string, string>,
    private readonly started: { process: ReturnType<typeof Bun.spawn>; dir: string }[],
  ) {}

  static none(): SshAgents {
    return new SshAgents(new Map(), []);
  }

  static async start(specs: SshSpec[], env: Record<string, string | undefined> = process.env): Promise<SshAgents> {
    const agents = new SshAgents(new Map(), []);
    try {
      for (const spec of specs) {
        if (agents.sockets.has(spec.id)) throw new SshError(`--ssh ${spec.id} is given twice`);
        agents.sockets.set(spec.id, await agents.socketFor(spec, env));
      }
      return agents;
    } catch (error) {
      agents.stop();
      throw error;
    }
  }

  /** The agent socket for `id`, if the build was given one. */
  socket(id: string): string | undefined {
    return this.sockets.get(id);
  }

  stop() {
    for (const agent of this.started.splice(0)) {
      agent.process.kill("SIGKILL");
      rmSync(agent.dir, { recursive: true, force: true });
    }
  }

  private async socketFor(spec: SshSpec, env: Record<string, string | undefined>): Promise<string> {
    if (spec.paths.length === 0) {
      const socket = env.SSH_AUTH_SOCK;
      if (!socket) throw new SshError(`--ssh ${spec.id}: SSH_AUTH_SOCK is not set (start an agent, or give --ssh ${spec.id}=SOCKET|KEY)`);
      return checkedSocket(spec.id, socket);
    }
    if (spec.paths.length === 1 && existsSync(spec.paths[0]) && statSync(spec.paths[0]).isSocket()) return spec.paths[0];
    return this.agentWithKeys(spec);
  }

  /** Starts a private ssh-agent (OpenSSH's) holding the key files; it lives as long as the build. */
  private async agentWithKeys(spec: SshSpec): Promise<string> {
    for (const key of spec.paths) if (!existsSync(key)) throw new SshError(`--ssh ${spec.id}: ${key} is neither a socket nor a key file`);
    if (!Bun.which("ssh-agent") || !Bun.which("ssh-add")) throw new SshError(`--ssh ${spec.id}=KEY needs ssh-agent and ssh-add (Debian: apt-get install openssh-client)`);
    const dir = mkdtempSync(join(tmpdir(), "memobuild-ssh-"));
    const socket = join(dir, "agent.sock");
    const agent = Bun.spawn(["ssh-agent", "-D", "-a", socket], { stdout: "ignore", stderr: "pipe" });
    this.started.push({ process: agent, dir });
    for (let i = 0; i < 100 && !existsSync(socket); i++) await Bun.sleep(20);
    if (!existsSync(socket)) throw new SshError(`--ssh ${spec.id}: ssh-agent did not start`);
    // A key with a passphrase cannot be asked for here: ssh-add must fail, not prompt or hang.
    const add = Bun.spawnSync(["ssh-add", "-q", ...spec.paths], {
      env: { SSH_AUTH_SOCK: socket, SSH_ASKPASS_REQUIRE: "never", PATH: process.env.PATH },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      timeout: 10_000,
    });
    if (add.exitCode !== 0) throw new SshError(`--ssh ${spec.id}: ssh-add could not load ${spec.paths.join(", ")}: ${add.stderr.toString().trim()}`);
    return socket;
  }
}

function checkedSocket(id: string, path: string): string {
  if (!existsSync(path) || !statSync(path).isSocket()) throw new SshError(`--ssh ${id}: ${path} is not a socket`);
  return path;
}

interface Relay {
  peer?: Socket<Relay>;
  /** Bytes waiting for the peer to connect or drain. */
  pending: Uint8Array[];
}

function send(socket: Socket<Relay> | undefined, relay: Relay, bytes: Uint8Array) {
  if (!socket || relay.pending.length) {
    relay.pending.push(bytes);
    if (socket) flush(socket, relay);
    return;
  }
  const written = socket.write(bytes);
  if (written < bytes.length) relay.pending.push(bytes.subarray(written));
}

function flush(socket: Socket<Relay>, relay: Relay) {
  while (relay.pending.length) {
    const chunk = relay.pending[0];
    const written = socket.write(chunk);
    if (written < chunk.length) {
      relay.pending[0] = chunk.subarray(written);
      return;
    }
    relay.pending.shift();
  }
}

/**
 * A socket at `path` (owned by `uid:gid`, with `mode`) whose every connection is relayed to the
 * agent at `agentSocket`. Returns how to stop it.
 */
export function relayAgent(agentSocket: string, path: string, owner: { uid: number; gid: number; mode: number }): { stop(): void } {
  const server = Bun.listen<Relay>({
    unix: path,
    socket: {
      open(client) {
        client.data = { pending: [] };
        // What the agent sends goes to the client; the upstream's own relay holds what waits for the client.
        Bun.connect<Relay>({
          unix: agentSocket,
          socket: {
            open(upstream) {
              upstream.data = { peer: client, pending: [] };
              client.data.peer = upstream;
              flush(upstream, client.data);
            },
            data(upstream, bytes) {
              send(client, upstream.data, bytes);
            },
            drain(upstream) {
              flush(upstream, client.data);
            },
            close() {
              client.end();
            },
            error() {
              client.end();
            },
          },
        }).catch(() => client.end());
      },
      data(client, bytes) {
        send(client.data.peer, client.data, bytes);
      },
      drain(client) {
        if (client.data.peer) flush(client, client.data.peer.data);
      },
      close(client) {
        client.data.peer?.end();
      },
    },
  });
  chownSync(path, owner.uid, owner.gid);
  chmodSync(path, owner.mode);
  return { stop: () => server.stop(true) };
}
