import { describe, expect, test } from "bun:test";
import { join, relative } from "node:path";
import { allCommands, commandsFor, createProgram } from "./program.ts";

const ALL = ["init", "build", "graph", "explain", "context", "image", "run", "cache", "serve", "worker", "key", "verify", "config", "completion"];

describe("the commands a command line loads", () => {
  test("the command it names, and only that one", () => {
    expect(commandsFor(["build", "--no-cache", "ctx"])).toEqual(["build"]);
    expect(commandsFor(["-h", "image", "ls"])).toEqual(["image"]);
  });

  test("all of them for help, completion, a typo or no command", () => {
    for (const argv of [[], ["--help"], ["help", "build"], ["completion", "bash"], ["biuld"], ["toString"]]) expect(commandsFor(argv)).toEqual(ALL);
  });
});

/**
 * The modules each entry loads when it starts: its static imports, followed transitively
 * (a dynamic import() loads only when the code reaches it). Read from the bundler's metafile.
 */
async function staticClosures(entries: string[]): Promise<Map<string, Set<string>>> {
  const root = join(import.meta.dir, "../..");
  const result = await Bun.build({ entrypoints: entries.map((e) => join(root, e)), target: "bun", metafile: true, throw: true });
  const inputs = result.metafile!.inputs as Record<string, { imports: { path: string; kind: string; external?: boolean }[] }>;
  const key = (path: string) => Object.keys(inputs).find((k) => k === path || join(root, k) === path || k === relative(process.cwd(), path))!;
  const closures = new Map<string, Set<string>>();
  for (const entry of entries) {
    const seen = new Set<string>();
    const stack = [key(join(root, entry))];
    while (stack.length) {
      const module = stack.pop()!;
      if (seen.has(module) || !inputs[module]) continue;
      seen.add(module);
      for (const i of inputs[module].imports) if (i.kind !== "dynamic-import" && !i.external) stack.push(i.path);
    }
    closures.set(entry, seen);
  }
  return closures;
}

const loads = (closure: Set<string>, part: string) => [...closure].some((module) => module.includes(part));

describe("start-up loads what the command needs", () => {
  test("--version loads no parser and no command; each command loads its own features only", async () => {
    const commands = ALL.map((name) => `src/cli/commands/${name}.ts`);
    const closures = await staticClosures(["bin/memobuild.ts", ...commands]);
    const bin = closures.get("bin/memobuild.ts")!;
    for (const part of ["node_modules/commander", "src/cli/commands/", "src/solver/", "src/cache/"]) expect({ part, loaded: loads(bin, part) }).toEqual({ part, loaded: false });
    const features: Record<string, string[]> = {
      serve: ["src/server/", "src/dashboard/", "node_modules/hono", "node_modules/prom-client"],
      init: ["src/init/", "node_modules/@clack"],
      // Loaded by the commands that pull or push, when they do.
      none: ["src/registry/transfer.ts", "src/image/docker-load.ts", "src/image/filesystem-export.ts", "src/report/reporter.ts"],
    };
    for (const name of ALL) {
      const closure = closures.get(`src/cli/commands/${name}.ts`)!;
      for (const [owner, parts] of Object.entries(features)) {
        if (owner === name) continue;
        for (const part of parts) expect({ name, part, loaded: loads(closure, part) }).toEqual({ name, part, loaded: false });
      }
    }
    // graph declares the remote flags (a user copies a build command) without the client.
    expect(loads(closures.get("src/cli/commands/graph.ts")!, "src/remote/client.ts")).toBe(false);
  });
});

describe("help text", () => {
  test("no option's help ends in an empty default such as (default: [])", async () => {
    const program = await createProgram("0", "-v");
    const noisy = allCommands(program).flatMap((command) =>
      command
        .helpInformation()
        .split("\n")
        .filter((line) => /\(default: (\[\]|\{\}|""|'')\)/.test(line))
        .map((line) => `${command.name()}: ${line.trim()}`),
    );
    expect(noisy).toEqual([]);
  });
});
