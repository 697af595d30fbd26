/**
 * The solver with a fake executor (as BuildKit tests its solver with fake ops): keys, cache
 * hits and misses, parallel stages, a failing step and --target pruning, with no root, no
 * overlayfs and no OCI runtime. The fake packs a tiny real layer so the store and the image
 * are real.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalStore } from "../cache/store.ts";
import type { Executor, ExecutorResources, StepIO, StepLayer, StepRequest } from "../executor/request.ts";
import { writeLayerTar } from "../snapshot/pack.ts";
import { storeImage, storeImageIndex } from "../image/layout.ts";
import { formatPlatform, hostPlatform, type Platform } from "../frontend/platform.ts";
import { blake3 } from "../hash/blake3.ts";

const hostArchitecture = () => hostPlatform().architecture;
import type { Sandbox } from "../executor/sandbox.ts";
import type { NetworkMode } from "../executor/network.ts";
import { silentProgress, type ProgressEvent, type ProgressSink } from "./progress.ts";
import { build, BuildError, type BuildResult, type NamedContext } from "./solver.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-solver-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/**
 * Records every step it is asked to run; its layer holds one file named after the step. It
 * resolves what a request names through the build's resources, as the local executor does.
 */
class FakeExecutor implements Executor {
  readonly ran: string[] = [];
  /** What each step was given to read: stage/image sources and local named contexts, by reference. */
  readonly reads: string[][] = [];
  /** What each step was given as ADD downloads. */
  readonly downloads: StepRequest["downloads"][] = [];
  resources?: ExecutorResources;
  constructor(private readonly behave: (request: StepRequest) => Promise<void> | void = () => {}) {}
  async execute(request: StepRequest, io: StepIO): Promise<StepLayer> {
    // A request is plain data: it survives JSON as it is.
    expect(JSON.parse(JSON.stringify(request))).toEqual(request);
    const text = request.instruction.kind === "RUN" && request.instruction.command.form === "shell" ? request.instruction.command.text : request.instruction.kind;
    this.ran.push(text);
    this.reads.push([...Object.keys(request.sources), ...Object.keys(request.namedContexts).map((k) => `named:${k}`)]);
    this.downloads.push(request.downloads);
    // Only ADD fetches: every other step is given no downloads (an empty list, as the type says).
    if (request.instruction.kind !== "ADD") expect(request.downloads).toEqual([]);
    expect(request.owner).toEqual({ uid: expect.any(Number), gid: expect.any(Number) });
    // Everything it names can be found.
    await this.resources!.snapshots([...request.lowers, ...Object.values(request.sources).flat()]);
    for (const digest of [...(request.context ? [request.context] : []), ...Object.values(request.namedContexts)]) this.resources!.context(digest);
    for (const download of request.downloads) await this.resources!.download(download.url, download.digest);
    await this.behave(request);
    const directory = join(io.work, "layer");
    mkdirSync(directory);
    writeFileSync(join(directory, "step"), `${text} ${request.lowers.length} ${Object.keys(request.sources).join(",")}`);
    const tar = join(io.work, "layer.tar");
    const packed = writeLayerTar(directory, tar, { clampMtime: 0 });
    return { directory, tar, diffId: packed.diffId, size: packed.size };
  }
}

interface BuildOverrides {
  target?: string;
  noCache?: boolean;
  namedContexts?: Map<string, NamedContext>;
  /** Another Dockerfile text in the same project and cache (an edit of the Dockerfile). */
  dockerfile?: string;
  buildArgs?: Record<string, string>;
  allow?: string[];
  sandbox?: Sandbox;
  network?: NetworkMode;
  progress?: ProgressSink;
  platform?: Platform;
  pull?: (ref: string, platform: Platform) => Promise<void>;
  pullAlways?: boolean;
  untrusted?: string;
}

let projects = 0;
function project(dockerfile: string, files: Record<string, string> = {}) {
  const dir = join(work, `p${++projects}`);
  mkdirSync(dir);
  writeFileSync(join(dir, "Dockerfile"), dockerfile);
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  const cache = join(dir, ".cache");
  return {
    dir,
    /** `dockerfile` builds another text in the same project and cache (an edit of the Dockerfile). */
    async build(executor: FakeExecutor, options: BuildOverrides = {}): Promise<BuildResult> {
      const store = LocalStore.open(cache);
      try {
        return await build({
          contextDir: dir,
          dockerfileText: options.dockerfile ?? dockerfile,
          dockerfilePath: "Dockerfile",
          buildArgs: options.buildArgs ?? {},
          noCache: options.noCache ?? false,
          allow: new Set(options.allow ?? []),
          sandbox: options.sandbox,
          untrusted: options.untrusted,
          target: options.target,
          store,
          secrets: new Map(),
          network: options.network ?? "none",
          progress: options.progress ?? silentProgress,
          executor: (resources) => ((executor.resources = resources), executor),
          namedContexts: options.namedContexts,
          platform: options.platform,
          pull: options.pull,
          pullAlways: options.pullAlways,
        });
      } finally {
        store.close();
      }
    },
  };
}

/** Step keys of the Dockerfile in "the key of each kind of input is stable" (linux/amd64). */
const GOLDEN_KEYS: Record<string, string> = {
  "dep/0": "20b7ec3c69ac27404c71b7fea9ce0e2a9532ff01789f2f5be4569101776542d7",
  "dep/1": "595332d19f47ddc742a813518ae71c6acc537a7cfd703a14a25e5e43a2d31d3c",
  "dep/2": "0951fe0036d43c4b7563afccd79f7d7331282ccbb9f97e48cab098af6b525438",
  "1/0": "e9672e2dc28602a423209fb5f94e542415d20632b4cbbe0d285ea3bb2bf68bcb",
  "1/1": "acb09497c654461236d147f752756170b8adc0118a5a6ffc8d6b71f942de5fcd",
  "1/2": "20cba03860a482d4a4834cd257627fd717423322b4ed9194e92ca8289546d51d",
  "1/3": "194c651965ca06c7bd15604d7b6c6135ca955f0769a44845a99afda2f057f1be",
  "1/4": "e7d645fccbc969fe39c80a75721f50da16283156c836d468bfd7514d677e93e3",
  "1/5": "ddfa40245f0339656988cf2c2688a8946c55b5ef6cf32aac6feb3207cdae1930",
  "1/6": "a4e101cb113e65e2728e8f73df808db41d66d7a2233618467506824a0a54a309",
};

const statuses = (result: BuildResult) => Object.fromEntries(result.steps.map((s) => [s.id, s.status]));

describe("solver with a fake executor", () => {
  test("a miss runs, a rebuild hits and runs nothing, an edit misses only what reads it", async () => {
    const p = project("FROM scratch\nRUN first\nCOPY a.txt /a\nRUN last\n", { "a.txt": "one" });
    const cold = new FakeExecutor();
    const first = await p.build(cold);
    expect(cold.ran).toEqual(["first", "COPY", "last"]);
    expect(statuses(first)).toEqual({ "0/0": "executed", "0/1": "executed", "0/2": "executed", "0/3": "executed" });

    const warm = new FakeExecutor();
    const again = await p.build(warm);
    expect(warm.ran).toEqual([]);
    expect(statuses(again)).toEqual({ "0/0": "cached-local", "0/1": "cached-local", "0/2": "cached-local", "0/3": "cached-local" });
    expect(again.image!.manifestDigest).toBe(first.image!.manifestDigest);
    expect(again.image!.config.rootfs.diff_ids).toHaveLength(3);

    writeFileSync(join(p.dir, "a.txt"), "two");
    const edited = new FakeExecutor();
    const third = await p.build(edited);
    expect(edited.ran).toEqual(["COPY", "last"]);
    expect(third.steps.find((s) => s.id === "0/1")!.key).toBe(first.steps.find((s) => s.id === "0/1")!.key);
    expect(third.steps.find((s) => s.id === "0/2")!.key).not.toBe(first.steps.find((s) => s.id === "0/2")!.key);
  });

  test("the executor gets the parent layers and the stages a step reads, resolved", async () => {
    const p = project("FROM scratch AS tools\nRUN make-tools\nFROM scratch\nRUN one\nCOPY --from=tools /x /x\nRUN --mount=type=bind,from=tools,target=/t use\n");
    const requests: StepRequest[] = [];
    await p.build(new FakeExecutor((r) => void requests.push(r)));
    const copy = requests.find((r) => r.instruction.kind === "COPY")!;
    expect(copy.lowers).toHaveLength(1);
    expect(Object.keys(copy.sources)).toEqual(["tools"]);
    expect(copy.sources.tools).toHaveLength(1);
    const use = requests.find((r) => r.instruction.kind === "RUN" && r.instruction.command.form === "shell" && r.instruction.command.text === "use")!;
    expect(use.lowers).toHaveLength(2);
    expect(use.sources.tools).toEqual(copy.sources.tools);
  });

  /** Builds once, edits one context file, builds again: what the second build ran. */
  async function ranAfterEdit(dockerfile: string, file: string): Promise<string[]> {
    const p = project(dockerfile, { [file]: "1" });
    await p.build(new FakeExecutor());
    writeFileSync(join(p.dir, file), "2");
    const again = new FakeExecutor();
    await p.build(again);
    return again.ran;
  }

  test("what a step reads keys it: an edit misses exactly the steps that read it", async () => {
    // A stage read by --mount from=
    expect(await ranAfterEdit("FROM scratch AS tools\nCOPY t.txt /t\nFROM scratch\nRUN --mount=type=bind,from=tools,target=/t use\n", "t.txt")).toEqual(["COPY", "use"]);
    // The parent stage of FROM <stage>
    expect(await ranAfterEdit("FROM scratch AS base\nCOPY b.txt /b\nFROM base\nRUN child\n", "b.txt")).toEqual(["COPY", "child"]);
    // A file bind-mounted from the context
    expect(await ranAfterEdit("FROM scratch\nRUN --mount=type=bind,source=m.txt,target=/m reader\n", "m.txt")).toEqual(["reader"]);
    // One of several bind mounts (each counts, not only the last)
    expect(await ranAfterEdit("FROM scratch\nRUN --mount=type=bind,source=m.txt,target=/m --mount=type=bind,source=Dockerfile,target=/o reader\n", "m.txt")).toEqual(["reader"]);
  });

  test("keys follow what a stage reference stands for, never its spelling: renames, --from=N and moved stages keep every hit", async () => {
    const before = "FROM scratch AS build\nRUN compile\nFROM scratch AS lint\nRUN lint\nFROM build AS app\nCOPY --from=build /a /a\nRUN --mount=from=build,target=/b --mount=type=cache,from=lint,target=/c use\n";
    const variants = [
      // the stage renamed everywhere
      before.replaceAll("build", "builder"),
      // references by index instead of by name
      "FROM scratch AS build\nRUN compile\nFROM scratch AS lint\nRUN lint\nFROM 0 AS app\nCOPY --from=0 /a /a\nRUN --mount=from=0,target=/b --mount=type=cache,from=1,target=/c use\n",
      // an independent stage moved before the other, and the final stage renamed
      "FROM scratch AS lint\nRUN lint\nFROM scratch AS build\nRUN compile\nFROM build AS release\nCOPY --from=build /a /a\nRUN --mount=from=build,target=/b --mount=type=cache,from=lint,target=/c use\n",
    ];
    const p = project(before);
    const first = new FakeExecutor();
    await p.build(first);
    expect(first.ran).toEqual(["compile", "lint", "COPY", "use"]);
    for (const dockerfile of variants) {
      const again = new FakeExecutor();
      const result = await p.build(again, { dockerfile });
      expect({ dockerfile, ran: again.ran }).toEqual({ dockerfile, ran: [] });
      expect(result.steps.filter((s) => s.status === "executed")).toEqual([]);
    }
    // What a referenced stage contains still decides: a changed stage misses everything that reads it.
    const changed = new FakeExecutor();
    await p.build(changed, { dockerfile: before.replace("RUN lint", "RUN lint --strict") });
    expect(changed.ran).toEqual(["lint --strict", "use"]);
  });

  test("independent stages run at the same time", async () => {
    const p = project("FROM scratch AS a\nRUN left\nFROM scratch AS b\nRUN right\nFROM scratch\nCOPY --from=a /x /a\nCOPY --from=b /x /b\n");
    let waiting: (() => void) | undefined;
    const met: string[] = [];
    // Each of the two stage steps waits for the other: only parallel stages get through.
    const rendezvous = (request: StepRequest) => {
      if (request.instruction.kind !== "RUN") return;
      met.push("arrived");
      if (waiting) {
        waiting();
        return;
      }
      return Promise.race([
        new Promise<void>((resolve) => (waiting = resolve)),
        Bun.sleep(5000).then(() => {
          throw new Error("the other stage never started: stages ran one after the other");
        }),
      ]);
    };
    const result = await p.build(new FakeExecutor(rendezvous));
    expect(met).toEqual(["arrived", "arrived"]);
    expect(statuses(result)["2/2"]).toBe("executed");
  });

  test("a failing step stops the build with its location; nothing after it runs", async () => {
    const p = project("FROM scratch\nRUN ok\nRUN broken\nRUN never\n");
    const executor = new FakeExecutor((r) => {
      if (r.instruction.kind === "RUN" && r.instruction.command.form === "shell" && r.instruction.command.text === "broken") throw new BuildError("broken: exit code 2", 2);
    });
    await expect(p.build(executor)).rejects.toThrow("broken: exit code 2");
    expect(executor.ran).toEqual(["ok", "broken"]);
    // What succeeded before the failure is cached: a fixed rerun starts at the broken step.
    const again = new FakeExecutor();
    await p.build(again);
    expect(again.ran).toEqual(["broken", "never"]);
  });

  test("a layer whose blob cannot be stored fails the build; no step result names it, and no staging is left", async () => {
    class LosingTar extends FakeExecutor {
      override async execute(request: StepRequest, io: StepIO): Promise<StepLayer> {
        const layer = await super.execute(request, io);
        rmSync(layer.tar); // gone before the store syncs it
        return layer;
      }
    }
    const p = project("FROM scratch\nRUN lost\nRUN after\n");
    await expect(p.build(new LosingTar())).rejects.toThrow("ENOENT");
    const store = LocalStore.open(join(p.dir, ".cache"));
    try {
      expect(store.stepResults().filter((s) => s.diffId !== null)).toEqual([]);
      expect(readdirSync(store.tmpRoot)).toEqual([]);
    } finally {
      store.close();
    }
  });

  test("a build returns, finished or failed, only once the executor has settled what its steps left exiting", async () => {
    class Settling extends FakeExecutor {
      settled = 0;
      async settle() {
        await Bun.sleep(1); // still exiting when the last step returned
        this.settled++;
      }
    }
    const p = project("FROM scratch\nRUN ok\nRUN broken\n");
    const fine = new Settling();
    await p.build(fine, { dockerfile: "FROM scratch\nRUN ok\n" });
    expect(fine.settled).toBe(1);
    const failing = new Settling((r) => {
      if (r.instruction.kind === "RUN" && r.instruction.command.form === "shell" && r.instruction.command.text === "broken") throw new BuildError("broken: exit code 2", 2);
    });
    await expect(p.build(failing)).rejects.toThrow("broken");
    expect(failing.settled).toBe(1);
  });

  test("a step that fails without running (a COPY of a missing file) says so as an error event, like a failed RUN; the plan names the target stage", async () => {
    const p = project("FROM scratch AS build\nCOPY missing.txt /m\nRUN never\nFROM scratch\nRUN last\n");
    const events: ProgressEvent[] = [];
    await expect(p.build(new FakeExecutor(), { target: "build", progress: (e) => events.push(e) })).rejects.toThrow("missing.txt");
    const errors = events.filter((e) => e.type === "error");
    expect(errors).toEqual([{ type: "error", number: 2, step: "build/1", message: expect.stringContaining("missing.txt") }]);
    expect(events.find((e) => e.type === "plan")!.target).toBe("build");
    const unnamed: ProgressEvent[] = [];
    await p.build(new FakeExecutor(), { dockerfile: "FROM scratch\nRUN a\nFROM scratch\nRUN b\n", progress: (e) => unnamed.push(e) });
    expect(unnamed.find((e) => e.type === "plan")!.target).toBeUndefined(); // the default target goes unsaid
    const first: ProgressEvent[] = [];
    await p.build(new FakeExecutor(), { dockerfile: "FROM scratch\nRUN a\nFROM scratch\nRUN b\n", target: "0", progress: (e) => first.push(e) });
    expect(first.find((e) => e.type === "plan")!.target).toBe("stage-0");
  });

  test("--target prunes stages the target does not need; their steps are skipped", async () => {
    const p = project("FROM scratch AS lint\nRUN lint\nFROM scratch AS app\nRUN compile\nFROM app AS test\nRUN test\n");
    const executor = new FakeExecutor();
    const result = await p.build(executor, { target: "app" });
    expect(executor.ran).toEqual(["compile"]);
    expect(statuses(result)).toMatchObject({ "lint/1": "skipped", "app/1": "executed", "test/1": "skipped" });
  });

  test("WORKDIR makes a layer (its directory, owned by USER) unless it is /; ONBUILD adds no history", async () => {
    const p = project("FROM scratch\nUSER 5:6\nWORKDIR /app\nWORKDIR /\nONBUILD RUN x\nENV A=1\n");
    const executor = new FakeExecutor();
    const owners: string[] = [];
    const recording = new FakeExecutor((request) => void owners.push(`${request.owner.uid}:${request.owner.gid}`));
    const result = await p.build(recording);
    expect(recording.ran).toEqual(["WORKDIR"]);
    expect(owners).toEqual(["5:6"]);
    expect(result.image!.manifest.layers.length).toBe(1);
    // USER, WORKDIR /app, WORKDIR /, ENV: one entry each; ONBUILD none.
    expect(result.image!.config.history!.map((h) => h.created_by?.split(" ")[0])).toEqual(["USER", "WORKDIR", "WORKDIR", "ENV"]);
    expect(result.image!.config.config.WorkingDir).toBe("/");
    expect((await p.build(executor)).steps.every((s) => s.status !== "executed")).toBe(true);
  });

  test("--no-cache runs every step again (config-only steps are recomputed and marked so: they never count as run), with the same image", async () => {
    const p = project("FROM scratch\nENV A=1\nRUN once\nLABEL b=2\n");
    const first = await p.build(new FakeExecutor());
    expect(first.steps.map((s) => s.config_only ?? false)).toEqual([true, true, false, true]);
    expect(first.steps.map((s) => s.name)).toEqual(["[stage-0 1/4] FROM scratch", "[stage-0 2/4] ENV A=1", "[stage-0 3/4] RUN once", "[stage-0 4/4] LABEL b=2"]);
    const again = new FakeExecutor();
    const events: ProgressEvent[] = [];
    const rebuilt = await p.build(again, { noCache: true, progress: (e) => events.push(e) });
    expect(again.ran).toEqual(["once"]);
    // Why each ran, as the hub shows it: --no-cache (not "no longer in the cache"); a config-only step has no why.
    expect(events.filter((e) => e.type === "done").map((e) => e.reasons)).toEqual([undefined, undefined, ["--no-cache: run without looking in the cache"], undefined]);
    expect(rebuilt.steps.map((s) => s.status)).toEqual(["executed", "executed", "executed", "executed"]);
    expect(rebuilt.image!.manifest.config.digest).toBe(first.image!.manifest.config.digest);
  });
});

describe("what a step's key is made of (each a protection: a key that missed an input would reuse a stale result)", () => {
  const ran = async (p: ReturnType<typeof project>, options: Parameters<ReturnType<typeof project>["build"]>[1] = {}) => {
    const executor = new FakeExecutor();
    await p.build(executor, options);
    return executor.ran;
  };

  test("the files a RUN bind-mounts from the context, each of them", async () => {
    const p = project("FROM scratch\nRUN --mount=type=bind,source=a.txt,target=/a --mount=type=bind,source=b.txt,target=/b use\n", { "a.txt": "1", "b.txt": "1", "other.txt": "1" });
    expect(await ran(p)).toEqual(["use"]);
    writeFileSync(join(p.dir, "other.txt"), "2");
    expect(await ran(p)).toEqual([]);
    writeFileSync(join(p.dir, "b.txt"), "2");
    expect(await ran(p)).toEqual(["use"]);
    writeFileSync(join(p.dir, "a.txt"), "2");
    expect(await ran(p)).toEqual(["use"]);
  });

  test("the stage a RUN mounts, the stage COPY --from reads, and the stage FROM builds on", async () => {
    const dockerfile = (v: string) => `FROM scratch AS dep\nRUN make-${v}\nFROM scratch AS mount\nRUN --mount=from=dep,target=/d use-mount\nFROM scratch AS copy\nCOPY --from=dep /step /s\nFROM dep AS child\nRUN on-top\nFROM scratch\nCOPY --from=mount /step /1\nCOPY --from=copy /s /2\nCOPY --from=child /step /3\n`;
    const p = project(dockerfile("1"));
    await ran(p);
    const executor = new FakeExecutor();
    await p.build(executor, { dockerfile: dockerfile("2") });
    expect(executor.ran).toEqual(expect.arrayContaining(["make-2", "use-mount", "on-top"]));
    expect(executor.ran.filter((r) => r === "COPY").length).toBe(4); // COPY --from=dep and the three of the last stage
  });

  test("the network a RUN has: default, none and host key apart; a RUN's own --network wins over the build's", async () => {
    const p = project("FROM scratch\nRUN fetch\nRUN --network=none offline\n");
    const keys = async (network: NetworkMode) => (await p.build(new FakeExecutor(), { network, allow: ["network.host"] })).steps.map((s) => s.key);
    const [none, sandboxed, host] = [await keys("none"), await keys("default"), await keys("host")];
    expect(new Set([none[1], sandboxed[1], host[1]]).size).toBe(3);
    expect(await ran(p, { network: "default" })).toEqual([]);
    // --network=none on the RUN: the same key as a build without any network, whatever the build's.
    const alone = project("FROM scratch\nRUN --network=none offline\n");
    const offline = async (network: NetworkMode) => (await alone.build(new FakeExecutor(), { network })).steps[1]!.key;
    expect(await offline("default")).toBe(await offline("none"));
  });

  test("a local --build-context's files, as COPY --from=NAME reads them", async () => {
    const p = project("FROM scratch\nCOPY --from=docs a.md /a.md\n");
    const docs = join(p.dir, "docs");
    mkdirSync(docs);
    writeFileSync(join(docs, "a.md"), "1");
    writeFileSync(join(docs, "other.md"), "1");
    const named = new Map<string, NamedContext>([["docs", { kind: "local", dir: docs }]]);
    expect(await ran(p, { namedContexts: named })).toEqual(["COPY"]);
    writeFileSync(join(docs, "other.md"), "2");
    expect(await ran(p, { namedContexts: named })).toEqual([]);
    writeFileSync(join(docs, "a.md"), "2");
    expect(await ran(p, { namedContexts: named })).toEqual(["COPY"]);
  });

  test("the user a WORKDIR's directory is made for", async () => {
    const p = project("FROM scratch\nUSER 1000\nWORKDIR /app\n");
    expect(await ran(p)).toEqual(["WORKDIR"]);
    expect(await ran(p)).toEqual([]);
    expect(await ran(p, { dockerfile: "FROM scratch\nUSER 1001\nWORKDIR /app\n" })).toEqual(["WORKDIR"]);
  });

  test("a RUN mounting the whole context (no source) reads all of it, as the main context, not a named one", async () => {
    const p = project("FROM scratch\nRUN --mount=type=bind,target=/ctx everything\n", { "x.txt": "1" });
    const executor = new FakeExecutor();
    await p.build(executor);
    expect(executor.reads[0]).toEqual([]);
    writeFileSync(join(p.dir, "x.txt"), "2");
    expect(await ran(p)).toEqual(["everything"]);
  });

  test("each file a step reads is kept with its digest, so explain can name the one that changed", async () => {
    const p = project("FROM scratch\nRUN --mount=type=bind,source=a.txt,target=/a --mount=type=bind,source=b.txt,target=/b use\nCOPY a.txt /a\n", { "a.txt": "1", "b.txt": "1" });
    const result = await p.build(new FakeExecutor());
    expect(Object.keys(result.inputs.get("0/1")!.context!.files).sort()).toEqual(["a.txt", "b.txt"]);
    expect(Object.keys(result.inputs.get("0/2")!.context!.files)).toEqual(["a.txt"]);
    // A step that reads nothing of the context has no context input at all.
    expect(result.inputs.get("0/0")!.context).toBeUndefined();
  });

  test("COPY --exclude: an excluded file is not read, from the main context or a local --build-context", async () => {
    // Patterns apply below a directory source (BuildKit ignores them for file sources: moby/buildkit#5489).
    const p = project("FROM scratch\nCOPY --exclude=skip.txt src /app/\nCOPY --from=docs --exclude=skip.md . /docs/\n");
    const docs = join(p.dir, "docs");
    for (const dir of [docs, join(p.dir, "src")]) mkdirSync(dir);
    for (const file of ["src/keep.txt", "src/skip.txt", "docs/keep.md", "docs/skip.md"]) writeFileSync(join(p.dir, file), "1");
    const named = new Map<string, NamedContext>([["docs", { kind: "local", dir: docs }]]);
    const executor = new FakeExecutor();
    await p.build(executor, { namedContexts: named });
    expect(executor.reads[1]).toEqual(["named:docs"]); // the executor is given the named context it copies from
    writeFileSync(join(p.dir, "src/skip.txt"), "2");
    writeFileSync(join(docs, "skip.md"), "2");
    expect(await ran(p, { namedContexts: named })).toEqual([]);
    writeFileSync(join(p.dir, "src/keep.txt"), "2");
    writeFileSync(join(docs, "keep.md"), "2");
    expect(await ran(p, { namedContexts: named })).toEqual(["COPY", "COPY"]);
  });

  test("the key of each kind of input is stable across versions (a change re-runs every user's cache: make it on purpose)", async () => {
    // Pinned for linux/amd64 (the platform is part of every key). If a change is deliberate,
    // print the new keys and update them here; the README's cache notes should say so.
    if (hostArchitecture() !== "amd64") return;
    const p = project(
      "FROM scratch AS dep\nRUN --mount=type=bind,source=a.txt,target=/a one\nRUN --mount=type=bind,source=a.txt,target=/a --mount=type=bind,source=b.txt,target=/b two\n" +
        "FROM dep\nRUN --mount=from=dep,target=/d --mount=from=dep,target=/e stages\nUSER 7:8\nWORKDIR /w\nCOPY a.txt /a\nCOPY --from=dep /x /x\nRUN --mount=type=cache,from=dep,target=/c seeded\n",
      { "a.txt": "a", "b.txt": "b" },
    );
    const result = await p.build(new FakeExecutor());
    expect(Object.fromEntries(result.steps.map((step) => [step.id, step.key]))).toEqual(GOLDEN_KEYS);
  });

  test("what a step may not read is an error naming it", async () => {
    const cases: [string, RegExp][] = [
      ["FROM scratch\nCOPY https://example.com/x /x\n", /COPY does not fetch URLs; use ADD/],
      ["FROM scratch\nADD --checksum=sha256:" + "0".repeat(64) + " https://example.com/a https://example.com/b /x/\n", /--checksum needs exactly one URL source/],
      ["FROM scratch\nCOPY --from=nowhere /x /x\n", /--from=nowhere: no such stage, and no image nowhere in the local store/],
      ["FROM scratch\nRUN --mount=from=nowhere,target=/n x\n", /--mount from=nowhere: no such stage, and no image nowhere in the local store/],
      ["FROM scratch\nUSER ghost\nWORKDIR /w\n", /USER=ghost: /],
      ["FROM scratch\nCOPY --chown=ghost a /a\n", /--chown=ghost: unable to find user ghost/],
      ["FROM no-such-image\n", /image no-such-image is not in the local image store/],
      ["FROM --platform=windows/amd64 scratch\n", /platform windows\/amd64 is not supported: MemoBuild builds Linux images/],
      ["FROM --platform=linux scratch\n", /invalid platform "linux"/],
    ];
    for (const [dockerfile, message] of cases) {
      await expect(project(dockerfile).build(new FakeExecutor())).rejects.toThrow(message);
    }
  });
});

test("a base image is said to be missing from the store only when that is why it is pulled: with --pull (a worker's job too) it is asked for", async () => {
  for (const pullAlways of [false, true]) {
    const warnings: string[] = [];
    const progress: ProgressSink = (event: ProgressEvent) => void (event.type === "warning" && warnings.push(event.message ?? ""));
    const pulled: string[] = [];
    const pull = async (ref: string) => void pulled.push(ref);
    await project("FROM elsewhere/base:1\n").build(new FakeExecutor(), { pull, pullAlways, progress }).catch(() => {});
    expect(pulled).toEqual(["elsewhere/base:1"]);
    expect(warnings.some((w) => w.includes("it is not in the local image store"))).toBe(!pullAlways);
  }
});

describe("base images and what steps are given to read", () => {
  /** A one-layer image named `ref` in the project's store, for `os/architecture`. */
  async function addImage(p: ReturnType<typeof project>, ref: string, content: string, platform = { os: "linux", architecture: hostArchitecture() }, extra: { files?: Record<string, string>; config?: Record<string, unknown>; history?: unknown[] | null } = {}) {
    const store = LocalStore.open(join(p.dir, ".cache"));
    try {
      const dir = join(p.dir, `img-${Math.random().toString(36).slice(2)}`);
      mkdirSync(dir);
      writeFileSync(join(dir, "file"), content);
      for (const [name, text] of Object.entries(extra.files ?? {})) {
        mkdirSync(join(dir, name, ".."), { recursive: true });
        writeFileSync(join(dir, name), text);
      }
      const tar = join(p.dir, `img-${Math.random().toString(36).slice(2)}.tar`);
      const packed = writeLayerTar(dir, tar, { clampMtime: 0 });
      const blob = store.putBlob(readFileSync(tar));
      store.recordLayer({ diffId: packed.diffId, digest: blob.digest, size: blob.size, uncompressedSize: blob.size, mediaType: "application/vnd.oci.image.layer.v1.tar" });
      const config: Record<string, unknown> = { ...platform, created: "2020-01-01T00:00:00Z", config: { Env: ["PATH=/bin"], ...extra.config }, rootfs: { type: "layers", diff_ids: [packed.diffId] }, history: [] };
      if (extra.history === null) delete config.history;
      const image = storeImage(store, config as never, [{ mediaType: "application/vnd.oci.image.layer.v1.tar", digest: blob.digest, size: blob.size }]);
      store.setImage(ref, image.manifestDigest);
      return image;
    } finally {
      store.close();
    }
  }

  test("FROM an image keys on its manifest digest: the same name on another image runs everything again", async () => {
    const p = project("FROM docker.io/library/base:1\nRUN on-top\n");
    await addImage(p, "docker.io/library/base:1", "one");
    const first = new FakeExecutor();
    const result = await p.build(first);
    expect(first.ran).toEqual(["on-top"]);
    expect(result.image!.config.config.Env).toEqual(["PATH=/bin"]);
    expect(result.image!.manifest.layers).toHaveLength(2);
    const again = new FakeExecutor();
    await p.build(again);
    expect(again.ran).toEqual([]);
    await addImage(p, "docker.io/library/base:1", "two");
    const moved = new FakeExecutor();
    await p.build(moved);
    expect(moved.ran).toEqual(["on-top"]);
  });

  test("an image for another platform is refused, naming both", async () => {
    const p = project("FROM docker.io/library/other:1\n");
    await addImage(p, "docker.io/library/other:1", "x", { os: "linux", architecture: "s390x" });
    await expect(p.build(new FakeExecutor())).rejects.toThrow(/image docker\.io\/library\/other:1 is for linux\/s390x, not linux\//);
  });

  test("COPY --from an image and RUN --mount from a stage are given those sources; a cache mount is not a context read", async () => {
    const p = project("FROM scratch AS s\nRUN in-stage\nFROM scratch\nCOPY --from=docker.io/library/img:1 /file /f\nRUN --mount=from=s,target=/s use\nRUN --mount=type=cache,target=/c cached-run\n", { "x.txt": "1" });
    await addImage(p, "docker.io/library/img:1", "img");
    const executor = new FakeExecutor();
    await p.build(executor);
    expect(executor.reads[executor.ran.indexOf("COPY")]).toEqual(["docker.io/library/img:1"]);
    expect(executor.reads[executor.ran.indexOf("use")]).toEqual(["s"]);
    writeFileSync(join(p.dir, "x.txt"), "2");
    const again = new FakeExecutor();
    await p.build(again);
    expect(again.ran).toEqual([]); // no step reads x.txt; the cache mount reads no context
  });

  test("a RUN given a local --build-context mount sees it by its name", async () => {
    const p = project("FROM scratch\nRUN --mount=from=Docs,target=/d use\n");
    const docs = join(p.dir, "docs");
    mkdirSync(docs);
    writeFileSync(join(docs, "a"), "1");
    const executor = new FakeExecutor();
    await p.build(executor, { namedContexts: new Map<string, NamedContext>([["docs", { kind: "local", dir: docs }]]) });
    expect(executor.reads[0]).toEqual(["named:Docs"]);
    writeFileSync(join(docs, "a"), "2");
    const again = new FakeExecutor();
    await p.build(again, { namedContexts: new Map<string, NamedContext>([["docs", { kind: "local", dir: docs }]]) });
    expect(again.ran).toEqual(["use"]);
  });

  test("WORKDIR's owner is USER as the image's /etc/passwd names it: the same name for another uid is another key", async () => {
    const p = project("FROM docker.io/library/users:1\nUSER app\nWORKDIR /w\n");
    await addImage(p, "docker.io/library/users:1", "x", undefined, { files: { "etc/passwd": "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/w:/bin/sh\n" } });
    const result = await p.build(new FakeExecutor());
    expect(result.inputs.get("0/2")!.owner).toBe("1000:1001");
  });

  test("FROM --platform: the stage's steps are keyed for it, and a RUN for another architecture asks for emulation", async () => {
    const host = `linux/${hostArchitecture()}`;
    const other = hostArchitecture() === "s390x" ? "linux/arm64" : "linux/s390x";
    const p = project(`FROM --platform=${host} scratch\nRUN x\n`);
    const executor = new FakeExecutor((request) => void requests.push(request));
    const requests: StepRequest[] = [];
    const built = await p.build(executor);
    expect(built.inputs.get("0/0")!.platform).toBe(host);
    expect(requests[0]!.platform).toBeUndefined(); // this machine's runs natively: requests are as they were
    const foreign = await p.build(executor, { dockerfile: `FROM --platform=${other} scratch\nRUN x\n` });
    expect(foreign.inputs.get("0/1")!.platform).toBe(other);
    expect(foreign.steps[1]!.key).not.toBe(built.steps[1]!.key);
    expect(requests[1]!.platform).toBe(other);
    expect(foreign.image!.config.architecture).toBe(other.split("/")[1]);
  });

  test("--platform: the target's steps are keyed apart, TARGET* and BUILD* are BuildKit's, and FROM --platform=$BUILDPLATFORM stays on this machine", async () => {
    const host = hostPlatform();
    const target: Platform = { os: "linux", architecture: host.architecture === "arm64" ? "amd64" : "arm64" };
    const dockerfile =
      "FROM --platform=$BUILDPLATFORM scratch AS tools\nRUN native-only\nARG TARGETARCH\nRUN make\n" +
      "FROM scratch\nARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM BUILDOS BUILDARCH\nRUN env\nCOPY --from=tools /step /tools\n";
    const p = project(dockerfile);
    const requests: StepRequest[] = [];
    const executor = new FakeExecutor((request) => void requests.push(request));
    const native = await p.build(executor);
    const crossed = await p.build(executor, { platform: target });
    const ran = (r: StepRequest) => (r.instruction.kind === "RUN" && r.instruction.command.form === "shell" ? `${r.instruction.command.text} ${r.env.map(([k, v]) => `${k}=${v}`).join(" ")}`.trim() : r.instruction.kind);
    const args = (t: Platform) => `BUILDARCH=${host.architecture} BUILDOS=linux BUILDPLATFORM=${formatPlatform(host)} TARGETARCH=${t.architecture} TARGETOS=linux TARGETPLATFORM=${formatPlatform(t)} TARGETVARIANT=`;
    expect(requests.map(ran)).toEqual([
      "native-only",
      `make TARGETARCH=${host.architecture}`,
      `env ${args(host)}`,
      "COPY",
      // "native-only" reads no TARGET* value: the same key, from the cache (BuildKit shares it too)
      `make TARGETARCH=${target.architecture}`,
      `env ${args(target)}`,
      "COPY",
    ]);
    // The tools stage runs on this machine (no emulation); the target's steps ask for it.
    expect(requests.slice(4).map((r) => r.platform)).toEqual([undefined, formatPlatform(target), formatPlatform(target)]);
    expect(crossed.inputs.get("tools/1")!.platform).toBe(formatPlatform(host));
    expect(crossed.steps.find((s) => s.id === "tools/1")!.key).toBe(native.steps.find((s) => s.id === "tools/1")!.key);
    expect(crossed.image!.config.architecture).toBe(target.architecture);
    expect(native.image!.config.architecture).toBe(host.architecture);
  });

  test("a base stored for this machine only is pulled again for the platform a build is for", async () => {
    const p = project("FROM docker.io/library/one:1\n");
    await addImage(p, "docker.io/library/one:1", "x");
    const other = { os: "linux", architecture: hostArchitecture() === "arm64" ? "amd64" : "arm64" };
    const asked: string[] = [];
    const pull = async (ref: string, platform: Platform) => void asked.push(`${ref} ${formatPlatform(platform)}`);
    await p.build(new FakeExecutor(), { pull });
    expect(asked).toEqual([]); // this machine's is there
    // The fake pull brings nothing: the FROM then names the mismatch.
    await expect(p.build(new FakeExecutor(), { platform: other, pull })).rejects.toThrow(`is for linux/${hostArchitecture()}, not ${formatPlatform(other)}`);
    expect(asked).toEqual([`docker.io/library/one:1 ${formatPlatform(other)}`]);
  });

  test("a multi-platform base image: each platform's build starts from its own image; a platform it lacks is named", async () => {
    const p = project("FROM docker.io/library/multi:1\nRUN on-top\n");
    const host = hostPlatform();
    const other = { os: "linux", architecture: host.architecture === "arm64" ? "amd64" : "arm64" };
    const mine = await addImage(p, "docker.io/library/multi:1", "host's", host);
    const theirs = await addImage(p, "docker.io/library/multi:1", "other's", other);
    const store = LocalStore.open(join(p.dir, ".cache"));
    store.setImage("docker.io/library/multi:1", storeImageIndex(store, [mine, theirs]));
    store.close();
    const native = await p.build(new FakeExecutor());
    expect(native.inputs.get("0/0")!.base).toBe(mine.manifestDigest);
    const crossed = await p.build(new FakeExecutor(), { platform: other });
    expect(crossed.inputs.get("0/0")!.base).toBe(theirs.manifestDigest);
    await expect(p.build(new FakeExecutor(), { platform: { os: "linux", architecture: "riscv64" } })).rejects.toThrow(`has no image for linux/riscv64 (it has: ${formatPlatform(host)}, ${formatPlatform(other)})`);
  });

  test("an image for another OS is refused, as one for another architecture is", async () => {
    const p = project("FROM docker.io/library/win:1\n");
    await addImage(p, "docker.io/library/win:1", "x", { os: "windows", architecture: hostArchitecture() });
    await expect(p.build(new FakeExecutor())).rejects.toThrow(`image docker.io/library/win:1 is for windows/${hostArchitecture()}, not linux/`);
  });

  test("a base image without history gets one entry per step built on it", async () => {
    const p = project("FROM docker.io/library/nohistory:1\nRUN a\nENV B=1\n");
    await addImage(p, "docker.io/library/nohistory:1", "x", undefined, { history: null });
    const result = await p.build(new FakeExecutor());
    expect(result.image!.config.history!.map((h) => h.created_by?.split(" ")[0])).toEqual(["RUN", "ENV"]);
  });

  test("a new ENTRYPOINT drops the CMD a base image or parent stage set, but not one set in the same stage", async () => {
    const p = project("FROM docker.io/library/cmd:1 AS fromimage\nENTRYPOINT [\"e\"]\nFROM scratch AS parent\nCMD [\"p\"]\nFROM parent AS child\nENTRYPOINT [\"e\"]\nFROM scratch\nCMD [\"own\"]\nENTRYPOINT [\"e\"]\n");
    await addImage(p, "docker.io/library/cmd:1", "x", undefined, { config: { Cmd: ["from-image"] } });
    const cases: [string | undefined, string[] | null][] = [["fromimage", null], ["child", null], [undefined, ["own"]]];
    for (const [target, cmd] of cases) {
      const result = await p.build(new FakeExecutor(), { target });
      expect(result.image!.config.config.Cmd ?? null).toEqual(cmd);
    }
  });
});

describe("ADD from a URL", () => {
  let content = "v1";
  let requests = 0;
  const server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => (requests++, new Response(content)) });
  afterAll(() => server.stop(true));
  const url = `http://127.0.0.1:${server.port}/file`;
  const sha256 = (text: string) => `sha256:${new Bun.CryptoHasher("sha256").update(text).digest("hex")}`;

  test("without --checksum, what the URL serves keys the step; the executor is given the download", async () => {
    content = "v1";
    const p = project(`FROM scratch\nADD ${url} /f\nCOPY a.txt /a\n`, { "a.txt": "1" });
    const first = new FakeExecutor();
    const result = await p.build(first);
    expect(first.ran).toEqual(["ADD", "COPY"]);
    expect(first.downloads[0]!.map((d) => d.digest)).toEqual([sha256("v1")]);
    expect(result.inputs.get("0/1")!.urls).toEqual([sha256("v1")]);
    expect(result.inputs.get("0/1")!.context).toBeUndefined(); // a URL is not a context read
    const same = new FakeExecutor();
    await p.build(same);
    expect(same.ran).toEqual([]);
    content = "v2";
    const changed = new FakeExecutor();
    await p.build(changed);
    expect(changed.ran).toEqual(["ADD", "COPY"]);
  });

  test("with --checksum, the checksum keys the step: a cache hit downloads nothing", async () => {
    content = "pinned";
    const p = project(`FROM scratch\nADD --checksum=${sha256("pinned")} ${url} /f\n`);
    requests = 0;
    const first = new FakeExecutor();
    const result = await p.build(first);
    expect(result.inputs.get("0/1")!.urls).toEqual([sha256("pinned")]);
    expect(first.downloads[0]!.map((d) => d.digest)).toEqual([sha256("pinned")]);
    expect(requests).toBe(1);
    const again = new FakeExecutor();
    await p.build(again);
    expect(again.ran).toEqual([]);
    expect(requests).toBe(1);
  });

  test("ADD with a URL and a local file reads both", async () => {
    content = "v1";
    const p = project(`FROM scratch\nADD ${url} a.txt /d/\n`, { "a.txt": "1" });
    const result = await p.build(new FakeExecutor());
    expect(result.inputs.get("0/1")!.urls).toEqual([sha256("v1")]);
    expect(Object.keys(result.inputs.get("0/1")!.context!.files)).toEqual(["a.txt"]);
  });
});

describe("what each operation keys on and asks the executor for", () => {
  const keyOf = async (dockerfile: string, id: string, options: BuildOverrides = {}) => (await project(dockerfile).build(new FakeExecutor(), options)).steps.find((s) => s.id === id)!.key;
  const requestsOf = async (dockerfile: string, options: BuildOverrides = {}, files: Record<string, string> = {}) => {
    const requests: StepRequest[] = [];
    await project(dockerfile, files).build(new FakeExecutor((r) => void requests.push(r)), options);
    return requests;
  };

  test("ARG keys on its names, each of them, and not on their values (a value keys the steps that read it)", async () => {
    expect(await keyOf("FROM scratch\nARG A=1\n", "0/1")).toBe(await keyOf("FROM scratch\nARG A=2\n", "0/1"));
    expect(await keyOf("FROM scratch\nARG A\n", "0/1")).not.toBe(await keyOf("FROM scratch\nARG B\n", "0/1"));
    expect(await keyOf("FROM scratch\nARG A B\n", "0/1")).not.toBe(await keyOf("FROM scratch\nARG AB\n", "0/1"));
  });

  test("RUN leaves the sandbox only with the matching consent: --network=host needs network.host, --security=insecure needs security.insecure", async () => {
    const host = "FROM scratch\nRUN --network=host x\n";
    const insecure = "FROM scratch\nRUN --security=insecure x\n";
    await expect(project(host).build(new FakeExecutor())).rejects.toThrow("RUN --network=host uses the host's network: run the build with --allow network.host to let it");
    await expect(project(host).build(new FakeExecutor(), { allow: ["security.insecure"] })).rejects.toThrow("--allow network.host");
    await expect(project(insecure).build(new FakeExecutor())).rejects.toThrow("RUN --security=insecure runs a privileged container: run the build with --allow security.insecure to let it");
    await expect(project(insecure).build(new FakeExecutor(), { allow: ["network.host"] })).rejects.toThrow("--allow security.insecure");
    expect((await requestsOf(host, { allow: ["network.host"] })).map((r) => r.instruction.kind)).toEqual(["RUN"]);
    expect((await requestsOf(insecure, { allow: ["security.insecure"] })).map((r) => r.instruction.kind)).toEqual(["RUN"]);
    // The build's own --network host needs the same consent, and the error names that flag, not the RUN.
    const plain = "FROM scratch\nRUN x\n";
    await expect(project(plain).build(new FakeExecutor(), { network: "host" })).rejects.toThrow(/: RUN x: --network host uses the host's network: run the build with --allow network.host to let it/);
  });

  test("--add-host, --shm-size and --ulimit key a RUN and reach its request; without them neither changes", async () => {
    const sandbox: Sandbox = { hosts: [["db", "10.0.0.1"]], ulimits: [], shmBytes: 1024 };
    const dockerfile = "FROM scratch\nENV A=1\nRUN x\n";
    const plain = await project(dockerfile).build(new FakeExecutor());
    expect(plain.inputs.get("0/2")!.sandbox).toBeUndefined();
    const sandboxed = await project(dockerfile).build(new FakeExecutor(), { sandbox });
    expect(sandboxed.inputs.get("0/2")!.sandbox).toBe("host db=10.0.0.1; shm 1024");
    expect(sandboxed.steps[2].key).not.toBe(plain.steps[2].key);
    const [run] = await requestsOf(dockerfile, { sandbox });
    expect(run.sandbox).toEqual(sandbox);
    expect(run.env).toEqual([["A", "1"]]);
    const [unsandboxed] = await requestsOf(dockerfile);
    expect("sandbox" in unsandboxed).toBe(false);
  });

  test("an untrusted submitter's RUN that reads a cache mount, a secret or an SSH agent keys apart by it (and so does what follows); other steps keep their keys", async () => {
    const dockerfile = "FROM scratch\nENV A=1\nRUN --mount=type=cache,target=/c x\nRUN --mount=type=tmpfs,target=/t y\nRUN --mount=type=secret,id=s z\nRUN --mount=type=ssh w\n";
    const trusted = await project(dockerfile).build(new FakeExecutor());
    const untrusted = await project(dockerfile).build(new FakeExecutor(), { untrusted: "job-private/abc" });
    expect(untrusted.steps.map((s, i) => s.key === trusted.steps[i].key)).toEqual([true, true, false, false, false, false]);
    expect([2, 3, 4, 5].map((n) => untrusted.inputs.get(`0/${n}`)!.untrusted)).toEqual(["job-private/abc", undefined, "job-private/abc", "job-private/abc"]);
    expect(trusted.inputs.get("0/2")!.untrusted).toBeUndefined();
    const plain = "FROM scratch\nRUN --mount=type=tmpfs,target=/t y\n";
    expect((await project(plain).build(new FakeExecutor(), { untrusted: "job-private/abc" })).steps[1].key).toBe((await project(plain).build(new FakeExecutor())).steps[1].key);
    // One such mount among others is enough.
    const mixed = "FROM scratch\nRUN --mount=type=tmpfs,target=/t --mount=type=cache,target=/c v\n";
    expect((await project(mixed).build(new FakeExecutor(), { untrusted: "job-private/abc" })).steps[1].key).not.toBe((await project(mixed).build(new FakeExecutor())).steps[1].key);
  });

  test("SOURCE_DATE_EPOCH keys every step that makes a layer (its file times are clamped to it), and no other", async () => {
    const dockerfile = "FROM scratch\nENV A=1\nCOPY a.txt /a\nRUN x\n";
    const plain = await project(dockerfile, { "a.txt": "a" }).build(new FakeExecutor());
    const clamped = await project(dockerfile, { "a.txt": "a" }).build(new FakeExecutor(), { buildArgs: { SOURCE_DATE_EPOCH: "1700000000" } });
    expect(clamped.steps.map((s, i) => s.key === plain.steps[i].key)).toEqual([true, true, false, false]);
    expect(clamped.inputs.get("0/2")!.epoch).toBe(1700000000);
    expect(plain.inputs.get("0/2")!.epoch).toBeUndefined();
  });

  test("SOURCE_DATE_EPOCH reaches every request (layer times are clamped to it); without it no request has one", async () => {
    const dockerfile = "FROM scratch\nCOPY a.txt /a\nRUN x\n";
    const clamped = await requestsOf(dockerfile, { buildArgs: { SOURCE_DATE_EPOCH: "1700000000" } }, { "a.txt": "a" });
    expect(clamped.map((r) => r.epoch)).toEqual([1700000000, 1700000000]);
    const unclamped = await requestsOf(dockerfile, {}, { "a.txt": "a" });
    expect(unclamped.map((r) => "epoch" in r)).toEqual([false, false]);
  });

  test("tmpfs, secret and cache mounts read no context: editing a context file keeps the RUN's hit", async () => {
    const p = project("FROM scratch\nRUN --mount=type=tmpfs,target=/t --mount=type=secret,id=s --mount=type=cache,target=/c x\n", { "f.txt": "1" });
    await p.build(new FakeExecutor());
    writeFileSync(join(p.dir, "f.txt"), "2");
    const again = new FakeExecutor();
    await p.build(again);
    expect(again.ran).toEqual([]);
  });

  test("FROM a local --build-context directory is refused, naming what FROM needs", async () => {
    const p = project("FROM docs\n");
    mkdirSync(join(p.dir, "docs"));
    await expect(p.build(new FakeExecutor(), { namedContexts: new Map([["docs", { kind: "local", dir: join(p.dir, "docs") }]]) })).rejects.toThrow(
      "--build-context docs is a directory, and FROM needs an image (docker-image://REF or oci-layout://DIR); COPY --from=docs and RUN --mount from=docs read a directory",
    );
  });

  test("a parent stage's ONBUILD triggers run in the child and are not inherited further; FROM adds no history", async () => {
    const p = project("FROM scratch AS parent\nONBUILD ENV T=1\nFROM parent\nLABEL l=1\n");
    const result = await p.build(new FakeExecutor());
    expect(result.image!.config.config.OnBuild).toBeNull();
    expect(result.image!.config.config.Env).toContain("T=1");
    expect(result.image!.config.history!.map((h) => h.created_by?.split(" ")[0])).toEqual(["ENV", "LABEL"]);
    // A stage without triggers keeps its config as it is (no OnBuild written where there was none).
    const plain = await project("FROM scratch\nLABEL l=1\n").build(new FakeExecutor());
    expect("OnBuild" in plain.image!.config.config).toBe(false);
  });

  test("what a step read is kept per file for explain: mode and content digest, or type, mode and link target", async () => {
    const p = project("FROM scratch\nCOPY . /\n", { "f.txt": "content" });
    mkdirSync(join(p.dir, "d"));
    symlinkSync("f.txt", join(p.dir, "link"));
    const files = (await p.build(new FakeExecutor())).inputs.get("0/1")!.context!.files;
    const digest = Buffer.from(blake3("content")).toString("hex").slice(0, 16);
    expect(files["f.txt"]).toBe(`644:${digest}`);
    expect(files["link"]).toBe("symlink:777:f.txt");
    expect(files["d"]).toBe("dir:755:");
  });

  test("WORKDIR sets the working directory; COPY and ADD add a history entry each, as RUN does", async () => {
    const result = await project("FROM scratch\nWORKDIR /app\nCOPY a.txt /a\nADD a.txt /b\n", { "a.txt": "a" }).build(new FakeExecutor());
    expect(result.image!.config.config.WorkingDir).toBe("/app");
    expect(result.image!.config.history!.map((h) => [h.created_by?.split(" ")[0], h.empty_layer ?? false])).toEqual([
      ["WORKDIR", false],
      ["COPY", false],
      ["ADD", false],
    ]);
  });

  test("a numeric USER is its ids (gid = uid when no group is given); a name must be in the image", async () => {
    const ownerOf = async (user: string) => (await project(`FROM scratch\nUSER ${user}\nWORKDIR /w\n`).build(new FakeExecutor())).inputs.get("0/2")!.owner;
    expect(await ownerOf("12")).toBe("12:12");
    expect(await ownerOf("7:89")).toBe("7:89");
    await expect(ownerOf("app12")).rejects.toThrow("USER=app12: unable to find user app12");
    await expect(ownerOf("12:staff")).rejects.toThrow("USER=12:staff: unable to find group staff");
  });
});
