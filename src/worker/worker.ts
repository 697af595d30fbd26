/**
 * `memobuild worker`: takes builds from the server's queue and runs them here, up to `jobs` at
 * once. Each claim carries a Bloom filter of the step keys this worker's cache holds (so the
 * server can send a job where it will hit); each job runs under a lease kept with heartbeats.
 * A job whose submitter cancels, or whose lease went elsewhere, is killed at once (and its
 * container reaped); on SIGTERM the worker takes no more work and hands back what it runs.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { LocalStore } from "../cache/store.ts";
import { reapAbandoned } from "../executor/reap.ts";
import { HOST_GATEWAY } from "../executor/network.ts";
import { parseAddHost } from "../executor/sandbox.ts";
import { RemoteCache } from "../remote/client.ts";
import { parseJobDefinition, untrustedUlimitProblems, type JobDefinition } from "../remote/job-definition.ts";
import { privateScope } from "../remote/mount-manifest.ts";
import { JobsClient, JobsError, type ClaimSubmitter, type Claimed } from "../remote/jobs-client.ts";
import { removeTree } from "../rootfs/root.ts";
import { BloomFilter } from "../util/bloom.ts";
import { terminalText } from "../util/terminal-text.ts";
import { layOutImages, materializeContext, materializeNamedContexts, publishImage, type JobPlace } from "./job.ts";
import { serveAgents } from "./agent-socket.ts";

export interface WorkerOptions {
  server: string;
  token: string;
  name: string;
  jobs: number;
  cacheDir: string;
  signKey?: string;
  /** Keys whose step results and cache mount versions this worker's builds use (other workers'). */
  trust: string[];
  labels: Record<string, string>;
  /** Entitlements this worker grants the builds it runs (never the submitter's to give). */
  allow: string[];
  /** This program, which runs each build. */
  binary: string;
  tls?: { ca?: string; cert?: string; key?: string };
  log: (line: string) => void;
}

export class Worker {
  private readonly jobs: JobsClient;
  private readonly remote: RemoteCache;
  private stopping = false;
  /** Aborted by stop(): an idle worker's claim is a long poll of up to 10 s, which a stop does not wait out
   * (a job the server handed out in that instant goes to another worker when its lease runs out). */
  private readonly stopped = new AbortController();
  private readonly running = new Map<string, { lease: string; child?: ReturnType<typeof Bun.spawn> }>();

  constructor(private readonly options: WorkerOptions) {
    this.jobs = new JobsClient({ url: options.server, token: options.token, tls: options.tls });
    this.remote = new RemoteCache({ url: options.server, token: options.token, tls: options.tls, warn: (m) => options.log(`warning: ${m}`) });
  }

  /** Claims and runs jobs until `stop`. */
  async run(): Promise<void> {
    const slots: Promise<void>[] = [];
    for (let slot = 0; slot < this.options.jobs; slot++) slots.push(this.loop());
    await Promise.all(slots);
  }

  /** No more claims; running builds are killed and handed back to the queue for another worker. */
  async stop() {
    this.stopping = true;
    this.stopped.abort();
    for (const [id, job] of this.running) {
      job.child?.kill("SIGKILL");
      await this.jobs.release(id, job.lease).catch(() => {});
    }
  }

  private async loop() {
    while (!this.stopping) {
      let claimed: Claimed | undefined;
      try {
        claimed = await this.jobs.claim({ name: this.options.name, labels: this.options.labels, holds: this.holdings() }, 10_000, this.stopped.signal);
      } catch (error) {
        if (this.stopping) break;
        this.options.log(`cannot reach ${this.options.server}: ${(error as Error).message}; trying again`);
        await Bun.sleep(2000);
        continue;
      }
      if (claimed && !this.stopping) await this.runJob(claimed);
      else if (claimed) await this.jobs.release(claimed.id, claimed.lease).catch(() => {});
    }
  }

  /** The step keys this worker's cache holds. */
  private holdings(): string {
    const store = LocalStore.open(this.options.cacheDir);
    try {
      return BloomFilter.of(store.stepResults().map((s) => s.key)).encode();
    } finally {
      store.close();
    }
  }

  private async runJob(claimed: Claimed) {
    const { id, lease } = claimed;
    this.options.log(`job ${id}: started`);
    this.running.set(id, { lease });
    const work = this.workDir(id);
    const beat = setInterval(() => void this.heartbeat(id, lease), Math.max(200, Math.floor(claimed.leaseMs / 4)));
    try {
      const definition = parseJobDefinition(claimed.definition);
      const outcome = await this.build(id, definition, { jobs: this.jobs, remote: this.remote, cacheDir: this.options.cacheDir, work }, claimed.submitter);
      if (!this.running.has(id)) return; // cancelled or lost: someone else answers for it now
      await this.jobs.finish(id, lease, outcome);
      this.options.log(`job ${id}: ${"result" in outcome ? "done" : `failed: ${outcome.error.split("\n")[0]}`}`);
    } catch (error) {
      const message = terminalText((error as Error).message, { max: 4000 });
      this.options.log(`job ${id}: failed: ${message}`);
      if (this.running.has(id)) await this.jobs.finish(id, lease, { error: message }).catch(() => {});
    } finally {
      clearInterval(beat);
      this.running.delete(id);
      removeTree(work);
    }
  }

  private workDir(id: string): string {
    const store = LocalStore.open(this.options.cacheDir);
    try {
      return store.tempDir(`job-${id.slice(0, 8)}`);
    } finally {
      store.close();
    }
  }

  /** Keeps the lease; a cancelled or lost job is killed at once and its container reaped. */
  private async heartbeat(id: string, lease: string) {
    const job = this.running.get(id);
    if (!job) return;
    const state = await this.jobs.heartbeat(id, lease).catch(() => "ok" as const); // a missed beat is retried by the next
    if (state === "ok") return;
    this.options.log(`job ${id}: ${state === "cancelled" ? "cancelled by its submitter" : "lost its lease to another worker"}; stopping it`);
    job.child?.kill("SIGKILL");
    await job.child?.exited;
    reapAbandoned();
    if (state === "cancelled") await this.jobs.finish(id, lease, { error: "cancelled by its submitter" }).catch(() => {});
    this.running.delete(id);
  }

  /** Runs the build as this program's own `build`, its JSON progress forwarded to the server. */
  private async build(id: string, definition: JobDefinition, place: JobPlace, submitter: ClaimSubmitter | undefined): Promise<{ result: unknown } | { error: string }> {
    const granted = grantedEntitlements(definition, submitter, this.options);
    refuseUntrustedLimits(definition, submitter);
    const contextDir = await materializeContext(place, definition);
    const imageFlags = [...(await layOutImages(place, definition.images, definition.imageIndexes)), ...(await materializeNamedContexts(place, definition.contexts))];
    const dockerfile = join(place.work, "Dockerfile");
    await Bun.write(dockerfile, definition.dockerfile.text);
    const metadata = join(place.work, "metadata.json");
    // The build's secrets, asked of the submitter now, reach the build by its environment only
    // (never a file, the queue, a log or this worker's cache).
    const secretValues = definition.secrets.length ? await this.jobs.askSecrets(id, this.running.get(id)!.lease, definition.secrets) : {};
    const secretEnv = Object.fromEntries(Object.entries(secretValues).map(([, value], i) => [`JOB_SECRET_${i}`, value]));
    const secretFlags = Object.keys(secretValues).map((secretId, i) => `--secret=id=${secretId},env=JOB_SECRET_${i}`);
    // The submitter's ssh agents, as sockets of this job that relay to them while the build runs.
    const lease = this.running.get(id)!.lease;
    const agents = serveAgents(definition.ssh, (agent, message) => this.jobs.askAgent(id, lease, { agent, ...message }));
    try {
      const jobFlags = [...cacheMountFlags(submitter, definition.cacheMountScope), ...granted.map((a) => `--allow=${a}`), ...askedFlags(definition), ...imageFlags, ...secretFlags, ...agents.flags];
      // Its ADD fetches from this machine's network: never its loopback, unless granted as RUN's host network is.
      const loopback: Record<string, string> = granted.includes("network.host") ? {} : { MEMOBUILD_JOB_LOOPBACK: "refuse" };
      return await this.runBuild(id, place, definition, jobFlags, { dockerfile, metadata, secretEnv, contextDir, jobEnv: loopback });
    } finally {
      agents.stop();
    }
  }

  /** This program's `build` of the job, with the flags made for it. */
  private async runBuild(id: string, place: JobPlace, definition: JobDefinition, jobFlags: string[], files: { dockerfile: string; metadata: string; secretEnv: Record<string, string>; contextDir: string; jobEnv: Record<string, string> }): Promise<{ result: unknown } | { error: string }> {
    const { dockerfile, metadata, secretEnv, contextDir, jobEnv } = files;
    const args = [
      "build", contextDir, "-f", dockerfile, "--cache-dir", this.options.cacheDir, "--progress", "json", "--metadata-file", metadata,
      "--remote", this.options.server, "--remote-upload", "wait", "--remote-report", "off",
      ...(this.options.signKey ? ["--remote-sign-key", this.options.signKey] : []),
      ...this.options.trust.map((key) => `--remote-trust=${key}`),
      // The submitter's values are joined to their flag (--flag=VALUE), so none can pass for a flag of its own.
      ...Object.entries(definition.buildArgs).map(([k, v]) => `--build-arg=${k}=${v}`),
      ...(definition.target !== undefined ? [`--target=${definition.target}`] : []),
      ...(definition.noCache ? ["--no-cache"] : []),
      ...Object.entries(definition.labels).map(([k, v]) => `--label=${k}=${v}`),
      ...jobFlags,
    ];
    // The token by environment (not on a command line others can read); no settings of this
    // machine's user, and no project file: the working directory is the job's own.
    // The submitter's build (its hub id) for the results it uploads, with the lease that proves the job is this worker's.
    const reportedAs = definition.build ? { MEMOBUILD_JOB_BUILD: definition.build, MEMOBUILD_JOB_ID: id, MEMOBUILD_JOB_LEASE: this.running.get(id)!.lease } : {};
    const env = { ...cleanEnvironment(), ...secretEnv, ...reportedAs, ...jobEnv, MEMOBUILD_TOKEN: this.options.token, XDG_CONFIG_HOME: join(place.work, "config") };
    const child = Bun.spawn([this.options.binary, ...args], { cwd: place.work, env, stdout: "pipe", stderr: "pipe" });
    const job = this.running.get(id);
    if (job) job.child = child;
    const [stderr] = await Promise.all([lastBytesOf(child.stderr, 64 * 1024), this.forward(id, child.stdout)]);
    const code = await child.exited;
    if (code !== 0) return { error: buildFailure(stderr, code) };
    const meta = JSON.parse(readFileSync(metadata, "utf8")) as { "containerimage.digest": string; steps: unknown[] };
    const image = await publishImage(place, meta["containerimage.digest"]);
    return { result: { image, steps: meta.steps } };
  }

  /** The build's progress, one JSON event a line, to the server in batches. */
  private async forward(id: string, stdout: ReadableStream<Uint8Array>) {
    let pending: unknown[] = [];
    let buffer = "";
    const send = async () => {
      const job = this.running.get(id);
      if (!job || pending.length === 0) return;
      const batch = pending;
      pending = [];
      await this.jobs.events(id, job.lease, batch).catch(() => false);
    };
    const timer = setInterval(() => void send(), 200);
    try {
      const decoder = new TextDecoder();
      for await (const chunk of stdout) {
        buffer += decoder.decode(chunk, { stream: true });
        const lines = buffer.split("\n");
        buffer = lines.pop()!;
        for (const line of lines) {
          try {
            const event = JSON.parse(line) as { type?: string };
            if (event.type !== "result") pending.push(event);
          } catch {
            // not an event: the build prints only events on stdout
          }
        }
      }
    } finally {
      clearInterval(timer);
      await send();
    }
  }
}

/**
 * The job's cache mounts, fetched and published by this worker (it writes, as it writes step
 * results). A trusted submitter's job shares them with the team's builds (under its
 * --cache-mount-scope, if it gave one); any other's uses a scope of that submitter's own, on the server and in this worker's directories, so what its
 * RUN wrote is never seen by another submitter's job (nor published where others fetch).
 */
/**
 * What a job that failed reports: the last lines of its build's stderr, where the error is. The
 * build's "memobuild: " before its error goes: the client prints "memobuild: the build failed on
 * worker W: " before this, and the prefix twice on one line read as a fault of its own.
 */
export function buildFailure(stderr: string, code: number | null): string {
  const lines = stderr.trim().split("\n").slice(-20).map((line) => line.replace(/^memobuild: /, ""));
  return terminalText(lines.join("\n") || `the build exited with ${code}`, { max: 8000 });
}

export function cacheMountFlags(submitter: ClaimSubmitter | undefined, scopeName: string | undefined): string[] {
  // The submitter's --cache-mount-scope (checked when the definition was parsed) names a scope of the team's.
  if (submitter?.trusted) return ["--remote-cache-mounts=on", ...(scopeName !== undefined ? [`--cache-mount-scope=${scopeName}`] : [])];
  const id = submitter && /^[0-9a-z]{1,64}$/.test(submitter.id) ? submitter.id : "unknown";
  // The private scope also keys apart its RUNs that read a mount or secret (solver/ops/run.ts).
  return ["--remote-cache-mounts=on", `--cache-mount-scope=${privateScope(id)}`];
}

/**
 * The entitlements a job gets: those it asks for (the submitter's --allow, as a local build
 * needs them), if this worker was started with them (`memobuild worker --allow`) and the
 * submitter's token is trusted (read-write): a read-only token's job, a pull request's, never
 * gets one. `--add-host NAME:host-gateway` reaches this machine's loopback, so it needs
 * network.host as granted. A job asking for more than it may have fails before it runs, saying why.
 */
export function grantedEntitlements(definition: JobDefinition, submitter: ClaimSubmitter | undefined, worker: Pick<WorkerOptions, "allow" | "name">): string[] {
  const hostGateway = definition.sandbox.addHost.some(namesHostGateway);
  if (hostGateway && !definition.allow.includes("network.host")) throw new JobsError("--add-host NAME:host-gateway reaches the worker's loopback: the job must ask for --allow network.host");
  for (const entitlement of definition.allow) {
    if (!submitter?.trusted) throw new JobsError(`--allow ${entitlement}: a job of a read-only token is never granted an entitlement (submit it with a read-write token)`);
    if (!worker.allow.includes(entitlement)) throw new JobsError(`--allow ${entitlement}: worker ${worker.name} does not grant it (start it with memobuild worker --allow ${entitlement})`);
  }
  return definition.allow;
}

/**
 * An untrusted submitter's job sets only `--ulimit`s that bound its own RUNs (UNTRUSTED_ULIMITS):
 * the server refuses the others at submission, and this worker again, with the token's role now.
 */
export function refuseUntrustedLimits(definition: JobDefinition, submitter: ClaimSubmitter | undefined) {
  if (submitter?.trusted) return;
  const problems = untrustedUlimitProblems(definition.sandbox.ulimit);
  if (problems.length) throw new JobsError(problems.join("; "));
}

/**
 * Whether the build will read `spec` as NAME:host-gateway: asked of the build's own parser, as
 * any other spelling it takes (`gw:[host-gateway]`, brackets being for IPv6) opens the worker's
 * loopback just the same. One it cannot parse fails the build before any RUN.
 */
function namesHostGateway(spec: string): boolean {
  try {
    return parseAddHost(spec)[1] === HOST_GATEWAY;
  } catch {
    return false;
  }
}

/** The build's own flags the job carries (--network, --add-host, …), each value joined to its flag. */
export function askedFlags(definition: JobDefinition): string[] {
  const { sandbox } = definition;
  return [
    ...(definition.platform ? [`--platform=${definition.platform}`] : []),
    ...(definition.network ? [`--network=${definition.network}`] : []),
    ...sandbox.addHost.map((spec) => `--add-host=${spec}`),
    ...(sandbox.shmSize !== undefined ? [`--shm-size=${sandbox.shmSize}`] : []),
    ...sandbox.ulimit.map((spec) => `--ulimit=${spec}`),
    ...definition.noCacheFilter.map((stages) => `--no-cache-filter=${stages}`),
    ...(definition.pull ? ["--pull"] : []),
    ...Object.entries(definition.annotations).map(([key, value]) => `--annotation=manifest:${key}=${value}`),
  ];
}

/** The worker's environment without MemoBuild's own settings (the job's build sets what it needs). */
function cleanEnvironment(): Record<string, string> {
  return Object.fromEntries(Object.entries(process.env).filter(([k, v]) => v !== undefined && !k.startsWith("MEMOBUILD_") && !k.startsWith("SSH_AUTH_SOCK"))) as Record<string, string>;
}

/**
 * The last `max` bytes a stream carries, as text: the build's stderr ends with its error, and a
 * build that writes gigabytes there must not hold them in the worker's memory.
 */
async function lastBytesOf(stream: ReadableStream<Uint8Array>, max: number): Promise<string> {
  let kept = Buffer.alloc(0);
  for await (const chunk of stream) {
    kept = Buffer.concat([kept, chunk]);
    if (kept.length > max) kept = kept.subarray(kept.length - max);
  }
  return kept.toString("utf8");
}
