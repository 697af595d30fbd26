import { afterAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import packageJson from "../package.json" with { type: "json" };
import { REPO_ROOT, memobuildBinary, runMemobuild } from "./support/binary.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-cli-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const DOCKERFILE = `# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM \${BASE} AS build
WORKDIR /src
COPY . .
RUN <<EOF
make "all"
EOF
FROM \${BASE} AS lint
RUN lint
FROM scratch
COPY --from=build /src/out /app
`;

const context = join(work, "project");
mkdirSync(context);
writeFileSync(join(context, "Dockerfile"), DOCKERFILE);

describe("memobuild binary", () => {
  test("--version prints the package version", () => {
    const result = runMemobuild(["--version"]);
    expect(result.exitCode).toBe(0);
    expect(result.stdout.trim()).toBe(packageJson.version);
  });

  test("-v is --version, also before a command as Commander has it; a closed pipe is no error", () => {
    expect(runMemobuild(["-v"])).toEqual({ exitCode: 0, stdout: `${packageJson.version}\n`, stderr: "" });
    // With anything else on the line, Commander decides: -v before a command still prints the version.
    expect(runMemobuild(["-v", "build"]).stdout).toBe(`${packageJson.version}\n`);
    const piped = Bun.spawnSync(["sh", "-c", `"${memobuildBinary()}" --version | true`], { stderr: "pipe" });
    expect({ exitCode: piped.exitCode, stderr: piped.stderr.toString() }).toEqual({ exitCode: 0, stderr: "" });
  });

  test("--help lists only the commands that exist", () => {
    const result = runMemobuild(["--help"]);
    expect(result.exitCode).toBe(0);
    const commands = [...result.stdout.matchAll(/^  (\w+) /gm)].map((m) => m[1]);
    expect(commands).toEqual(["init", "build", "graph", "explain", "context", "image", "run", "cache", "serve", "worker", "key", "verify", "config", "completion", "help"]);
    expect(runMemobuild(["graph", "--help"]).stdout).toContain("--format <format>");
  });

  test("the README's synopses of build, serve, worker and init name exactly the flags of their --help", () => {
    const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
    const synopses: Record<string, string> = {
      build: readme.match(/^### `memobuild build .*$/m)![0],
      serve: readme.match(/^### `memobuild serve .*$/m)![0],
      worker: readme.match(/^`memobuild worker \[[^`]*`/m)![0],
      init: readme.match(/`memobuild init --yes [^`]*`/)![0],
    };
    for (const [command, synopsis] of Object.entries(synopses)) {
      const help = runMemobuild([command, "--help"]).stdout;
      const options = [...help.matchAll(/^  (?:-([a-zA-Z]), )?--([a-z0-9-]+)/gm)].filter((m) => m[2] !== "help");
      const long = new Map(options.filter((m) => m[1]).map((m) => [m[1], m[2]]));
      const named = new Set([
        ...[...synopsis.matchAll(/(?<![\w-])--([a-z][a-z0-9-]*)/g)].map((m) => m[1]),
        ...[...synopsis.matchAll(/(?<![\w-])-([a-zA-Z])(?![\w-])/g)].map((m) => long.get(m[1]) ?? `-${m[1]}`),
      ]);
      expect({ command, flags: [...named].sort() }).toEqual({ command, flags: options.map((m) => m[2]).sort() });
    }
  });

  test("an unknown command or option fails with a usage message and exit code 2", () => {
    const unknown = runMemobuild(["bulid"]);
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'bulid'");
    expect(runMemobuild(["graph", "--nope"]).exitCode).toBe(2);
  });

  test("graph --format json follows the contract", () => {
    const result = runMemobuild(["graph", context, "--format", "json"]);
    expect(result.stderr).toBe("");
    expect(result.exitCode).toBe(0);
    const json = JSON.parse(result.stdout);
    expect(json.nodes.map((n: { id: string }) => n.id)).toEqual(["build/0", "build/1", "build/2", "build/3", "2/0", "2/1"]);
    expect(json.nodes[3]).toEqual({
      id: "build/3",
      stage: "build",
      instruction: 'RUN <<EOF\nmake "all"\nEOF',
      level: 3,
      deps: ["build/2"],
    });
    expect(json.nodes[5].deps).toEqual(["2/0", "build/3"]);
    expect(json.edges).toContainEqual({ from: "build/3", to: "2/1", kind: "copy-from" });
  });

  test("graph --target and --build-arg", () => {
    const result = runMemobuild(["graph", context, "--target", "lint", "--build-arg", "BASE=alpine", "--format", "json"]);
    expect(result.exitCode).toBe(0);
    const json = JSON.parse(result.stdout);
    expect(json.nodes.map((n: { instruction: string }) => n.instruction)).toEqual(["FROM alpine AS lint", "RUN lint"]);
  });

  test("an undeclared --build-arg is a warning", () => {
    const result = runMemobuild(["graph", context, "--build-arg", "NOPE=1"]);
    expect(result.exitCode).toBe(0);
    expect(result.stderr).toBe("warning: build arg NOPE is not declared by any ARG\n");
  });

  test("graph reads the Dockerfile from -f, relative to the working directory, or stdin", () => {
    writeFileSync(join(work, "other.Dockerfile"), "FROM a\nRUN b\n");
    expect(runMemobuild(["graph", "project", "-f", "other.Dockerfile"], { cwd: work }).stdout).toContain("RUN b");
    expect(runMemobuild(["graph", context, "-f", "-"], { stdin: "FROM c\nRUN d\n" }).stdout).toContain("RUN d");
  });

  test("graph --format dot renders with Graphviz", () => {
    const result = runMemobuild(["graph", context, "--format", "dot"]);
    expect(result.exitCode).toBe(0);
    const dot = Bun.spawnSync(["dot", "-Tsvg"], {
      stdin: new TextEncoder().encode(result.stdout),
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(dot.stderr.toString()).toBe("");
    expect(dot.exitCode).toBe(0);
    const svg = dot.stdout.toString();
    expect(svg).toContain("<svg");
    // Graphviz writes "-" as "&#45;" in SVG text.
    expect(svg).toContain("COPY &#45;&#45;from=build /src/out /app");
    expect(svg).toContain("<title>build/3&#45;&gt;2/1</title>");
  });

  test("graph --format mermaid and text", () => {
    expect(runMemobuild(["graph", context, "--format", "mermaid"]).stdout).toStartWith("flowchart TD\n");
    const text = runMemobuild(["graph", context]).stdout;
    expect(text).toContain("level 0 (2 steps may run in parallel)");
    expect(text).toContain("2 step(s) pruned");
    expect(runMemobuild(["graph", context, "--format", "yaml"]).stderr).toBe(
      'memobuild: unknown --format "yaml" (use text, dot, mermaid, json)\n',
    );
  });

  test("a missing context or Dockerfile is a one-line error", () => {
    const result = runMemobuild(["graph", join(work, "does-not-exist")]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/^memobuild: build context .* is not a directory\n$/);
    const noFile = runMemobuild(["graph", work, "-f", join(work, "nope")]);
    expect(noFile.stderr).toBe(`memobuild: cannot read Dockerfile ${join(work, "nope")}: no such file\n`);
    expect(noFile.exitCode).toBe(2);
  });

  test("a worker whose --sign-key cannot be read stops at start, naming the file (not at its first job)", async () => {
    const child = Bun.spawn([memobuildBinary(), "worker", "--server", "http://127.0.0.1:9", "--token", "worker-token-0123", "--sign-key", "no-such.key"], { cwd: work, stdout: "ignore", stderr: "pipe" });
    const timer = setTimeout(() => child.kill("SIGKILL"), 3_000); // a worker that started would wait for work
    const [stderr, exitCode] = await Promise.all([new Response(child.stderr).text(), child.exited]);
    clearTimeout(timer);
    expect(stderr).toStartWith(`memobuild: cannot read signing key ${join(work, "no-such.key")}: `);
    expect(exitCode).not.toBe(0);
    expect(child.signalCode).toBeNull();
  });

  test("the binary works when copied alone to another directory", () => {
    const alone = mkdtempSync(join(tmpdir(), "memobuild-alone-"));
    try {
      const copy = join(alone, "memobuild");
      copyFileSync(memobuildBinary(), copy);
      Bun.spawnSync(["chmod", "+x", copy]);
      const result = runMemobuild(["graph", ".", "--format", "json"], { binary: copy, cwd: context });
      expect(result.stderr).toBe("");
      expect(JSON.parse(result.stdout).nodes).toHaveLength(6);
    } finally {
      rmSync(alone, { recursive: true, force: true });
    }
  });
});

describe("logs and errors", () => {
  test("MEMOBUILD_LOG=debug with MEMOBUILD_JSON_LOGS=1: JSON lines on stderr, stdout keeps only the data", () => {
    const plain = runMemobuild(["graph", context, "--format", "json"]);
    const logged = runMemobuild(["graph", context, "--format", "json", "--target", "build"], { env: { MEMOBUILD_LOG: "debug", MEMOBUILD_JSON_LOGS: "1" } });
    expect(logged.exitCode).toBe(0);
    expect(JSON.parse(logged.stdout).target).toBe("build");
    const lines = logged.stderr.trimEnd().split("\n").map((l) => JSON.parse(l));
    expect(lines[0]).toMatchObject({ level: "debug", msg: "command", argv: expect.stringContaining("graph") });
    expect(lines).toContainEqual(expect.objectContaining({ level: "debug", msg: "setting", key: "target", source: "flag" }));
    expect(plain.stderr).toBe(""); // the default level says nothing on success
  });

  test("every error has one form: `memobuild: ...`, or one JSON line with its exit code", () => {
    const usage = runMemobuild(["graph", "--nope"]);
    expect(usage.stderr.split("\n")[0]).toBe("memobuild: unknown option '--nope'");
    const json = runMemobuild(["graph", join(work, "missing")], { env: { MEMOBUILD_JSON_LOGS: "1" } });
    expect(json.exitCode).toBe(2);
    expect(JSON.parse(json.stderr)).toEqual({ time: expect.any(String), level: "error", msg: `build context ${join(work, "missing")} is not a directory`, exitCode: 2 });
  });
});

describe("shell completion", () => {
  const script = (shell: string) => {
    const result = runMemobuild(["completion", shell]);
    expect(result.exitCode).toBe(0);
    const file = join(work, `completion.${shell}`);
    writeFileSync(file, result.stdout);
    return file;
  };

  test("bash completes commands, subcommands, each command's flags and flag values", () => {
    const file = script("bash");
    const complete = (words: string) => {
      const count = words.split(" ").length - 1;
      const run = Bun.spawnSync(["bash", "-c", `source ${file}; COMP_WORDS=(${words}); COMP_CWORD=${count}; _memobuild; echo "\${COMPREPLY[*]}"`]);
      return run.stdout.toString().trim();
    };
    expect(complete("memobuild bu")).toBe("build");
    expect(complete("memobuild image l")).toBe("ls");
    expect(complete("memobuild build --no-cache-f")).toBe("--no-cache-filter");
    expect(complete("memobuild build --progress ''")).toBe("auto tty plain json quiet");
    expect(complete("memobuild cache g")).toBe("gc");
  });

  test("fish completes the same, and the zsh script is valid zsh that lists every flag", () => {
    const fish = script("fish");
    const run = Bun.spawnSync(["fish", "-c", `source ${fish}; complete -C "memobuild image l"; complete -C "memobuild build --no-cache-f"`]);
    expect(run.stdout.toString()).toBe("ls\tlist the images in the local store\n--no-cache-filter\trun the steps of these stages (names or indexes, comma-separated; repeatable) without the cache\n");
    const zsh = script("zsh");
    expect(Bun.spawnSync(["zsh", "-n", zsh]).exitCode).toBe(0);
    expect(readFileSync(zsh, "utf8")).toContain("'--no-cache-filter:run the steps of these stages");
    expect(runMemobuild(["completion", "tcsh"]).stderr).toBe("memobuild: completion tcsh: use bash, zsh or fish\n");
  });
});

describe("graph shows values as a build would see them", () => {
  test("ARG as written with the value used; a variable a missing base image may set is named", () => {
    const dir = join(work, "graph-values");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "Dockerfile"), "FROM example/base\nARG V=1\nARG W\nENV PATH=/opt/bin:$PATH\n");
    const result = runMemobuild(["graph", dir, "--build-arg", "W=x", "--cache-dir", join(work, "no-cache")]);
    expect(result.stdout).toContain("  0/1  ARG V=1   (V=1)   <- 0/0\n");
    expect(result.stdout).toContain("  0/2  ARG W   (W=x)   <- 0/1\n");
    expect(result.stderr).toBe(`warning: ${join(dir, "Dockerfile")}:4: $PATH may come from the base image example/base, which is not in the local store: it reads as empty here (memobuild image pull example/base)\n`);
  });
});
