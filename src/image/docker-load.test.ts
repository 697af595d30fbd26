/** The Docker Engine's answers to a load, from a stand-in engine on loopback: loaded, refused, or not an engine at all. */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkDockerEngine, dockerEndpoint, loadIntoDocker } from "./docker-load.ts";

const archive = join(mkdtempSync(join(tmpdir(), "memobuild-load-")), "image.tar");
writeFileSync(archive, "tar bytes");
let server: ReturnType<typeof Bun.serve> | undefined;
afterEach(() => server?.stop(true));
const engine = (answer: (request: Request) => Response) => {
  server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: answer });
  return `tcp://127.0.0.1:${server.port}`;
};

test("the engine's stream: what it loaded, or the error it gave", async () => {
  const lines = (...messages: object[]) => messages.map((m) => JSON.stringify(m)).join("\n") + "\n";
  const ok = engine(() => new Response(lines({ stream: "Loaded image: app:1\n" }, { stream: "Loaded image: team/app:2\n" })));
  expect(await loadIntoDocker(archive, ok)).toEqual(["Loaded image: app:1", "Loaded image: team/app:2"]);
  const refused = engine(() => new Response(lines({ errorDetail: { message: "no space left" }, error: "no space left" })));
  await expect(loadIntoDocker(archive, refused)).rejects.toThrow(`--load: the Docker Engine at ${refused} refused the image: no space left`);
  const status = engine(() => new Response("bad request body", { status: 400 }));
  await expect(loadIntoDocker(archive, status)).rejects.toThrow("answered HTTP 400: bad request body");
});

test("an answer longer than an engine gives is not read", async () => {
  const flood = engine(() => new Response("x".repeat(2 * 1024 * 1024)));
  await expect(loadIntoDocker(archive, flood)).rejects.toThrow("longer than 1048576 bytes");
});

test("DOCKER_HOST forms", () => {
  expect(dockerEndpoint("unix:///var/run/docker.sock")).toMatchObject({ unix: "/var/run/docker.sock" });
  expect(dockerEndpoint("tcp://10.0.0.1:2375")).toMatchObject({ url: "http://10.0.0.1:2375/images/load?quiet=1" });
  expect(() => dockerEndpoint("ssh://me@host")).toThrow("use unix:///path/to/docker.sock or tcp://HOST:PORT");
});

test("before a build: an engine that answers /_ping passes; none, or a socket path that is not there, is an error saying what to do", async () => {
  const pinged: string[] = [];
  const ok = engine((request) => (pinged.push(new URL(request.url).pathname), new Response("OK")));
  await checkDockerEngine(ok);
  expect(pinged).toEqual(["/_ping"]);
  const broken = engine(() => new Response("no", { status: 500 }));
  await expect(checkDockerEngine(broken)).rejects.toThrow(`--load: no Docker Engine at ${broken} (it answered HTTP 500 to /_ping): start one, set DOCKER_HOST, or write an archive with -o type=docker,dest=FILE`);
  server?.stop(true);
  await expect(checkDockerEngine(broken)).rejects.toThrow("(nothing answers there)");
  const missing = join(tmpdir(), `memobuild-no-docker-${process.pid}.sock`);
  await expect(checkDockerEngine(`unix://${missing}`)).rejects.toThrow(`--load: no Docker Engine at unix://${missing} (${missing} does not exist)`);
  await expect(checkDockerEngine(`unix://${archive}`)).rejects.toThrow(`(${archive} is not a socket)`);
});
