/**
 * `--load`: the image into the Docker Engine at DOCKER_HOST (default the local socket), through
 * its API (`POST /images/load` with a docker archive), as `docker load` does — no docker CLI
 * needed. The engine's answer is a stream of JSON messages; an error in it is the load's error.
 */
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
