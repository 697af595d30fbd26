/**
 * `--load`: the image into the Docker Engine at DOCKER_HOST (default the local socket), through
 * its API (`POST /images/load` with a docker archive), as `docker load` does — no docker CLI
 * needed. The engine's answer is a stream of JSON messages; an error in it is the load's error.
 */
import { statSync } from "node:fs";
import { UserError } from "../errors.ts";
import { readBodyBytes } from "../util/network.ts";

export class DockerLoadError extends UserError {}

/** Where the engine listens: a unix socket or a TCP address (DOCKER_HOST's two usual forms). */
export function dockerEndpoint(host = process.env.DOCKER_HOST || "unix:///var/run/docker.sock"): { url: string; unix?: string; shown: string } {
  if (host.startsWith("unix://")) return { url: "http://docker/images/load?quiet=1", unix: host.slice("unix://".length), shown: host };
  const tcp = /^tcp:\/\/([^/]+)\/?$/.exec(host);
  if (tcp) return { url: `http://${tcp[1]}/images/load?quiet=1`, shown: host };
  throw new DockerLoadError(`DOCKER_HOST=${host}: use unix:///path/to/docker.sock or tcp://HOST:PORT (TLS and ssh:// are not supported)`);
}

/**
 * Whether an engine answers at DOCKER_HOST (`GET /_ping`), asked before the build so that a
 * missing one costs no build: the error says where it looked and what to do instead.
 */
export async function checkDockerEngine(host?: string, timeoutMs = 5_000): Promise<void> {
  const endpoint = dockerEndpoint(host);
  const fail = (why: string): never => {
    throw new DockerLoadError(`--load: no Docker Engine at ${endpoint.shown} (${why}): start one, set DOCKER_HOST, or write an archive with -o type=docker,dest=FILE`);
  };
  if (endpoint.unix) {
    const stat = statSync(endpoint.unix, { throwIfNoEntry: false });
    if (!stat) fail(`${endpoint.unix} does not exist`);
    if (!stat!.isSocket()) fail(`${endpoint.unix} is not a socket`);
  }
  let response: Response | undefined;
  try {
    response = await fetch(endpoint.url.replace(/\/images\/load\?quiet=1$/, "/_ping"), { signal: AbortSignal.timeout(timeoutMs), ...(endpoint.unix ? { unix: endpoint.unix } : {}) } as RequestInit);
    await response.arrayBuffer();
  } catch (error) {
    fail((error as Error).name === "TimeoutError" ? `no answer in ${timeoutMs / 1000} s` : "nothing answers there");
  }
  if (!response!.ok) fail(`it answered HTTP ${response!.status} to /_ping`);
}

/** Streams `archive` to the engine; resolves to what it said it loaded ("Loaded image: app:1"). */
export async function loadIntoDocker(archive: string, host?: string, timeoutMs = 600_000): Promise<string[]> {
  const endpoint = dockerEndpoint(host);
  let response: Response;
  try {
    response = await fetch(endpoint.url, {
      method: "POST",
      body: Bun.file(archive),
      headers: { "content-type": "application/x-tar" },
      signal: AbortSignal.timeout(timeoutMs),
      ...(endpoint.unix ? { unix: endpoint.unix } : {}),
    } as RequestInit);
  } catch (error) {
    throw new DockerLoadError(`--load: no Docker Engine answers at ${endpoint.shown}: ${(error as Error).message}`);
  }
  // The answer is small (a line per image); more than 1 MiB is not an engine talking, and is not read.
  let text: string;
  try {
    text = (await readBodyBytes(response, 1024 * 1024, `the answer of the Docker Engine at ${endpoint.shown}`, (max) => `longer than ${max} bytes`)).toString("utf8");
  } catch (error) {
    throw new DockerLoadError(`--load: ${(error as Error).message}`);
  }
  if (!response.ok) throw new DockerLoadError(`--load: the Docker Engine at ${endpoint.shown} answered HTTP ${response.status}: ${text.trim().slice(0, 500)}`);
  const loaded: string[] = [];
  for (const line of text.split("\n").filter((l) => l.trim())) {
    let message: { stream?: string; error?: string; errorDetail?: { message?: string } };
    try {
      message = JSON.parse(line);
    } catch {
      continue; // not a message: nothing to learn from it
    }
    const error = message.errorDetail?.message ?? message.error;
    if (error) throw new DockerLoadError(`--load: the Docker Engine at ${endpoint.shown} refused the image: ${error}`);
    if (message.stream?.trim()) loaded.push(message.stream.trim());
  }
  return loaded;
}
