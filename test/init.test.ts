/** `memobuild init` as a user meets it: in a real terminal (tmux), with --yes, and with no terminal. */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { memobuildBinary, runMemobuild } from "./support/binary.ts";
import { startCacheServer, type CacheServer } from "./support/server.ts";
import { openTerminal } from "./support/tmux.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-init-"));
const servers: CacheServer[] = [];
afterAll(async () => {
  for (const server of servers) await server.stop();
});

/** A project with two Dockerfiles, two stages, an ARG, and things a .dockerignore should leave out. */
function project(name: string): string {
  const dir = join(work, name);
  for (const sub of [".git", "node_modules/left-pad", "dist", "docker"]) mkdirSync(join(dir, sub), { recursive: true });
  writeFileSync(join(dir, "Dockerfile"), "FROM scratch AS base\nARG VERSION\nCOPY . /src\nFROM base AS app\n");
  writeFileSync(join(dir, "docker/Dockerfile.dev"), "FROM scratch\n");
  writeFileSync(join(dir, ".env"), "API_KEY=hunter2\n");
  writeFileSync(join(dir, "video.bin"), Buffer.alloc(11 * 1024 * 1024));
  return dir;
}

const TOKEN = "init-test-token-0123456789";

describe("memobuild init in a real terminal", () => {
  test("answering every prompt writes memobuild.json, .dockerignore, the user config and a signing key", async () => {
    const server = await startCacheServer(join(work, "server"), ["--token", TOKEN]);
    servers.push(server);
    const dir = project("wizard");
    const xdg = join(work, "wizard-xdg");
    const terminal = openTerminal([memobuildBinary(), "init"], { columns: 100, rows: 40, cwd: dir, env: { XDG_CONFIG_HOME: xdg } });
    try {
      await terminal.waitFor(/Which Dockerfile builds the image\?[\s\S]*● Dockerfile[\s\S]*○ docker\/Dockerfile\.dev/);
      terminal.send("Enter");
      await terminal.waitFor(/Which stage is the image\?[\s\S]*○ base[\s\S]*● app/);
      terminal.send("Up", "Enter"); // base
      await terminal.waitFor(/Image name\(s\)[\s\S]*wizard:latest/);
      terminal.send("C-u", "registry.example/team/web:dev web:latest", "Enter");
      await terminal.waitFor(/Build args to set, NAME=VALUE \(declared: VERSION\)/);
      terminal.send("VERSION", "Enter");
      await terminal.waitFor(/VERSION: use NAME=VALUE/); // refused, asked again
      terminal.send("=1.2", "Enter");
      const ignores = await terminal.waitFor(/Leave these out of the build context[\s\S]*video\.bin/);
      for (const pattern of [".git", "**/node_modules", "dist", ".env*", "video.bin"]) expect(ignores).toContain(`◼ ${pattern}`);
      terminal.send("Down", "Down", "Space", "Enter"); // keep dist in the context
      await terminal.waitFor(/Share results with your team/);
      terminal.send("y", "Enter");
      // Offered: where `memobuild serve` listens by default.
      await terminal.waitFor(/Cache server URL[\s\S]*http:\/\/127\.0\.0\.1:7070/);
      terminal.send("C-u", server.url, "Enter");
      await terminal.waitFor(/Token/);
      terminal.send("wrong-token-000000", "Enter");
      await terminal.waitFor(/the server refused the token[\s\S]*Save it anyway\?/);
      terminal.send("n", "Enter"); // asked again, the URL as typed; every earlier answer kept
      await terminal.waitFor(new RegExp(`Save it anyway\\?[\\s\\S]*Cache server URL[\\s\\S]*${server.url.replaceAll(".", "\\.")}`));
      terminal.send("Enter");
      await terminal.waitFor(/Save it anyway\?[\s\S]*Token/);
      terminal.send(TOKEN, "Enter");
      await terminal.waitFor(/Sign the results you upload/);
      terminal.send("Enter"); // no
      await terminal.waitFor(/wrote memobuild\.json/);
    } finally {
      terminal.stop();
    }
    expect(JSON.parse(readFileSync(join(dir, "memobuild.json"), "utf8"))).toEqual({
      $schema: "./.memobuild.schema.json",
      dockerfile: "Dockerfile",
      target: "base",
      tags: ["registry.example/team/web:dev", "web:latest"],
      buildArgs: { VERSION: "1.2" },
      remote: { url: server.url },
    });

    const again = openTerminal([memobuildBinary(), "init", "--force", "-f", "Dockerfile", "--target", "base", "-t", "web:latest", "--build-arg", "VERSION=1.2"], { columns: 80, rows: 40, cwd: dir, env: { XDG_CONFIG_HOME: xdg } });
    try {
      // The flags answered the first four questions.
      await again.waitFor(/Leave these out of the build context/);
      again.send("Enter");
      await again.waitFor(/Share results with your team/);
      again.send("y", "Enter");
      await again.waitFor(/Cache server URL/);
      again.send("C-u", server.url, "Enter");
      await again.waitFor(/Token/);
      again.send(TOKEN, "Enter");
      await again.waitFor(/Sign the results you upload/);
      again.send("y", "Enter");
      await again.waitFor(/Use only results signed by this key/);
      again.send("y", "Enter");
      const end = await again.waitFor(/wrote memobuild\.json/);
      expect(end).not.toContain(TOKEN); // the token is masked on the screen
    } finally {
      again.stop();
    }
    const config = JSON.parse(readFileSync(join(dir, "memobuild.json"), "utf8"));
    const publicKey = readFileSync(join(xdg, "memobuild/signing.key.pub"), "utf8").trim();
    expect(config).toEqual({
      $schema: "./.memobuild.schema.json",
      dockerfile: "Dockerfile",
      target: "base",
      tags: ["web:latest"],
      buildArgs: { VERSION: "1.2" },
      remote: { url: server.url, trust: [publicKey] },
    });
    expect(JSON.stringify(config)).not.toContain(TOKEN);
    expect(JSON.parse(readFileSync(join(dir, ".memobuild.schema.json"), "utf8")).properties.remote).toBeDefined();
    // The first run kept dist in the context; the second left it out too (appended).
    expect(readFileSync(join(dir, ".dockerignore"), "utf8")).toBe("# Left out of the build context (memobuild init)\n.git\n**/node_modules\n.env*\nvideo.bin\ndist\n");
    const userFile = join(xdg, "memobuild/config.json");
    expect(statSync(userFile).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(userFile, "utf8"))).toEqual({ remote: { url: server.url, token: TOKEN, signKey: join(xdg, "memobuild/signing.key") } });
    expect(statSync(join(xdg, "memobuild/signing.key")).mode & 0o777).toBe(0o600);

    // What was written is what the next command uses, the token included (the user file vouches for the URL).
    const shown = runMemobuild(["config", "--json"], { cwd: join(dir, "docker"), env: { XDG_CONFIG_HOME: xdg } });
    expect(shown.exitCode).toBe(0);
    const effective = JSON.parse(shown.stdout);
    expect(effective.context).toMatchObject({ value: dir, source: "project" });
    expect(effective.target).toMatchObject({ value: "base", source: "project" });
    expect(effective["remote.token"]).toMatchObject({ value: `(set, ${TOKEN.length} characters)`, source: "user" });
    const graph = runMemobuild(["graph"], { cwd: join(dir, "docker"), env: { XDG_CONFIG_HOME: xdg } });
    expect(graph.exitCode).toBe(0);
    expect(graph.stdout).toContain(`${join(dir, "Dockerfile")}: 1 stage(s), 3 step(s), target "base"`);
  }, 60_000);
});

describe("memobuild init without a terminal", () => {
  test("with stdin closed it stops at once with what to do, and writes nothing", () => {
    const dir = project("closed");
    const started = Date.now();
    const result = runMemobuild(["init"], { cwd: dir, env: { XDG_CONFIG_HOME: join(work, "closed-xdg") } });
    expect(Date.now() - started).toBeLessThan(5000);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("memobuild init --yes");
    expect(existsSync(join(dir, "memobuild.json"))).toBe(false);
    expect(existsSync(join(dir, ".dockerignore"))).toBe(false);
  });

  test("--yes takes the defaults; an existing memobuild.json needs --force", () => {
    const dir = project("yes");
    const env = { XDG_CONFIG_HOME: join(work, "yes-xdg") };
    const result = runMemobuild(["init", "--yes"], { cwd: dir, env });
    expect(result.exitCode).toBe(0);
    expect(result.stderr).toBe("wrote memobuild.json\nwrote .memobuild.schema.json\nwrote .dockerignore\n");
    expect(JSON.parse(readFileSync(join(dir, "memobuild.json"), "utf8"))).toEqual({ $schema: "./.memobuild.schema.json", dockerfile: "Dockerfile", tags: ["yes:latest"] });
    expect(existsSync(join(work, "yes-xdg"))).toBe(false); // no remote: the user config is not touched
    const twice = runMemobuild(["init", "--yes"], { cwd: dir, env });
    expect(twice.exitCode).toBe(1);
    expect(twice.stderr).toContain("memobuild.json exists; nothing written (--force replaces it)");
    expect(runMemobuild(["init", "--yes", "--force", "-t", "other:1"], { cwd: dir, env }).exitCode).toBe(0);
    expect(JSON.parse(readFileSync(join(dir, "memobuild.json"), "utf8")).tags).toEqual(["other:1"]);
  });

  test("--yes --remote checks the server: a refused token is an error and nothing is written", async () => {
    const server = await startCacheServer(join(work, "server-yes"), ["--token", TOKEN]);
    servers.push(server);
    const dir = project("yes-remote");
    const env = { XDG_CONFIG_HOME: join(work, "yes-remote-xdg") };
    const refused = await Bun.spawn([memobuildBinary(), "init", "--yes", "--remote", server.url, "--remote-token", "not-the-token"], { cwd: dir, env: { ...process.env, ...env }, stdin: "ignore", stderr: "pipe" });
    expect(await refused.exited).toBe(1);
    expect(await new Response(refused.stderr).text()).toContain("the server refused the token; nothing written");
    expect(existsSync(join(dir, "memobuild.json"))).toBe(false);
    const ok = Bun.spawn([memobuildBinary(), "init", "--yes", "--remote", server.url, "--remote-token", TOKEN], { cwd: dir, env: { ...process.env, ...env }, stdin: "ignore", stderr: "pipe" });
    expect(await ok.exited).toBe(0);
    expect(JSON.parse(readFileSync(join(dir, "memobuild.json"), "utf8")).remote).toEqual({ url: server.url });
    expect(JSON.parse(readFileSync(join(work, "yes-remote-xdg/memobuild/config.json"), "utf8")).remote.token).toBe(TOKEN);
  }, 30_000);
});
