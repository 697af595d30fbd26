/**
 * What a build prints, mode by mode, from the compiled binary: `plain`, `quiet` and `json`
 * as snapshots (times and digests masked), and `tty` in a real terminal (tmux) mid-build and at
 * its end, at 80 and 200 columns.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { memobuildBinary, runMemobuild } from "./support/binary.ts";
import { buildBaseImage, machineWithBase, writeProject } from "./support/base-image.ts";
import { openTerminal } from "./support/tmux.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-progress-"));
const baseOci = join(work, "base-oci");
afterAll(() => rmSync(work, { recursive: true, force: true }));
beforeAll(() => buildBaseImage(work, baseOci), 120_000);

const DOCKERFILE = "FROM memobuild/busybox AS base\nRUN echo hello from run\nFROM base\nENV A=1\nCOPY f /f\n";
let count = 0;
function fresh() {
  const dir = writeProject(join(work, `p${++count}`), { Dockerfile: DOCKERFILE, f: "x\n" });
  const cache = machineWithBase(join(work, `cache${count}`), baseOci);
  return { dir, cache };
}
const mask = (text: string) => text.replace(/\d+\.\ds/g, "X.Xs").replace(/sha256:[0-9a-f]{64}/g, "sha256:…");

describe("plain, quiet and json", () => {
  test("plain: numbered steps, RUN output, a summary with the digest, the hit rate and the names", () => {
    const { dir, cache } = fresh();
    const first = runMemobuild(["build", dir, "--cache-dir", cache, "--progress", "plain", "-t", "pp:1"]);
    expect(first.exitCode).toBe(0);
    expect(first.stdout).toBe("");
    expect(mask(first.stderr)).toBe(
      [
        "#1 [base 1/2] FROM memobuild/busybox AS base",
        "#1 DONE X.Xs",
        "#2 [base 2/2] RUN echo hello from run",
        "#2 hello from run",
        "#2 DONE X.Xs",
        "#3 [stage-1 1/3] FROM base",
        "#3 DONE X.Xs",
        "#4 [stage-1 2/3] ENV A=1",
        "#4 DONE X.Xs",
        "#5 [stage-1 3/3] COPY f /f",
        "#5 DONE X.Xs",
        "image sha256:… (2 step(s) run, 0 cached: 0% hit rate) in X.Xs",
        "manifest sha256:… (local store)",
        "naming to docker.io/library/pp:1",
        "",
      ].join("\n"),
    );
    const again = runMemobuild(["build", dir, "--cache-dir", cache, "--progress", "plain", "--output", `type=oci-archive,dest=${join(work, "pp.tar")}`]);
    const lines = mask(again.stderr).split("\n");
    expect(lines.filter((l) => l.endsWith("CACHED"))).toHaveLength(5);
    expect(lines.slice(-4)).toEqual(["image sha256:… (0 step(s) run, 2 cached: 100% hit rate, X.Xs saved) in X.Xs", "manifest sha256:… (local store)", `output oci-archive ${join(work, "pp.tar")} manifest sha256:…`, ""]);
    // The image is named by its ID, the same with or without an output (what -q prints); the
    // archive's manifest digest (compressed layers) is beside it, named as such.
    const index = JSON.parse(Bun.spawnSync(["tar", "-xOf", join(work, "pp.tar"), "index.json"]).stdout.toString());
    expect(again.stderr).toContain(`output oci-archive ${join(work, "pp.tar")} manifest ${index.manifests[0].digest}\n`);
    const imageLine = (stderr: string) => stderr.split("\n").find((l) => l.startsWith("image "))!.split(" ")[1];
    expect(imageLine(again.stderr)).toBe(imageLine(first.stderr));
    expect(imageLine(again.stderr)).toBe(runMemobuild(["build", dir, "--cache-dir", cache, "-q"]).stdout.trim());
  });

  test("quiet: exactly one line on stdout, the image ID that image ls and --iidfile show", () => {
    const { dir, cache } = fresh();
    const iid = join(work, "iid");
    const quiet = runMemobuild(["build", dir, "--cache-dir", cache, "-q", "-t", "quiet:1", "--iidfile", iid]);
    expect(quiet.exitCode).toBe(0);
    expect(quiet.stderr).toBe("");
    expect(quiet.stdout).toMatch(/^sha256:[0-9a-f]{64}\n$/);
    expect(readFileSync(iid, "utf8")).toBe(quiet.stdout.trim());
    const ls = runMemobuild(["image", "ls", "--cache-dir", cache]).stdout;
    expect(ls).toMatch(new RegExp(`^quiet:1 +${quiet.stdout.slice(7, 19)} +sha256:`, "m"));
    expect(runMemobuild(["build", dir, "--cache-dir", cache, "--progress", "quiet"]).stdout).toBe(quiet.stdout);
  });

  test("json: one event per line on stdout, ending with the result a script needs", () => {
    const { dir, cache } = fresh();
    const oci = join(work, "json-oci");
    const json = runMemobuild(["build", dir, "--cache-dir", cache, "--progress", "json", "-t", "j:1", "--output", `type=oci,dest=${oci}`]);
    expect(json.exitCode).toBe(0);
    expect(json.stderr).toBe("");
    const events = json.stdout.trimEnd().split("\n").map((l) => JSON.parse(l));
    expect(events[0].type).toBe("plan");
    expect(events.find((e) => e.type === "output")).toMatchObject({ step: "base/1", line: "hello from run" });
    expect(events.filter((e) => e.type === "done")).toHaveLength(5);
    const result = events.at(-1);
    const index = JSON.parse(readFileSync(join(oci, "index.json"), "utf8"));
    expect(result).toEqual({
      time: expect.any(String),
      type: "result",
      imageId: expect.stringMatching(/^sha256:[0-9a-f]{64}$/),
      configDigest: result.imageId,
      digest: index.manifests[0].digest,
      manifestDigest: expect.stringMatching(/^sha256:[0-9a-f]{64}$/),
      outputs: [{ type: "oci", dest: oci, digest: index.manifests[0].digest }],
      tags: ["docker.io/library/j:1"],
      run: 2, // the RUN and the COPY: steps that change only the config never count as run
      cached: 0,
      cachedRemote: 0,
      checks: [],
    });
  });
});

describe("tty in a real terminal", () => {
  const slow = "FROM memobuild/busybox AS a\nRUN for i in 1 2 3 4 5 6 7 8 9 10; do echo \"step a line $i\"; sleep 0.3; done\nFROM memobuild/busybox AS b\nRUN for i in 1 2 3 4 5 6 7 8 9 10; do echo \"step b line $i\"; sleep 0.3; done\nFROM memobuild/busybox\nCOPY --from=a /etc/passwd /a\nCOPY --from=b /etc/passwd /b\n";
  /** Every line a tty build may show: step lines, output lines, the header, the summary. */
  const known = [/^=> (CACHED )?\[/, /^=> => step [ab] line \d+$/, /^\[\+\] Building \d+\.\ds \(\d+\/\d+\)$/, /^image sha256:[0-9a-f]{64} \(/, /^manifest sha256:[0-9a-f]{64} \(local store\)$/, /^naming to /, /^EXIT=0$/];

  for (const [columns, resizeTo] of [[80], [200], [200, 60]] as [number, number?][]) {
    const title = resizeTo ? `${columns} columns narrowed to ${resizeTo} mid-build` : `${columns} columns`;
    test(`${title}: both stages live side by side, then every step once and the summary`, async () => {
      const name = `${columns}-${resizeTo ?? ""}`;
      const dir = writeProject(join(work, `tty${name}`), { Dockerfile: slow });
      const cache = machineWithBase(join(work, `tty-cache${name}`), baseOci);
      const terminal = openTerminal(["sh", "-c", `${memobuildBinary()} build . --cache-dir ${cache} -t tty:1; echo EXIT=$?`], { columns, rows: 30, cwd: dir });
      try {
        const mid = await terminal.waitFor(/step a line 3[\s\S]*step b line 3|step b line 3[\s\S]*step a line 3/, 30_000);
        expect(mid).toMatch(/^\[\+\] Building \d+\.\ds \(\d\/7\)$/m);
        const running = mid.split("\n").filter((l) => /^=> \[[ab] 2\/2\] RUN/.test(l));
        expect(running).toHaveLength(2); // two stages at once, one line each
        for (const line of running) {
          expect(line).toMatch(/ \d+\.\ds$/);
          expect(line.length).toBe(columns - 1); // the time at the right edge, nothing wrapped
        }
        if (resizeTo) {
          terminal.resize(resizeTo, 30);
          await terminal.waitFor(/step a line 6/, 30_000);
        }
        await terminal.waitFor(/EXIT=\d+/, 30_000);
        // Narrowed, tmux reflows the lines drawn and keeps the cursor's row, pushing the rows above
        // into its scrollback, out of reach of any program: the screen is what must be right.
        const end = terminal.screen(!!resizeTo);
        const lines = end.split("\n").filter(Boolean);
        expect(lines.filter((line) => !known.some((pattern) => pattern.test(line)))).toEqual([]);
        // Only the summary may be longer than the terminal (it is never cut: its digests are copied).
        for (const line of lines.filter((l) => !/^(image|manifest) /.test(l))) expect(line.length).toBeLessThan(columns);
        if (resizeTo) for (const line of lines.filter((l) => /^=> \[stage-2/.test(l))) expect(line.length).toBe(resizeTo - 1);
        expect(lines.filter((l) => /^\[\+\] Building/.test(l))).toEqual([]); // the live area is gone
        // Each of the 7 steps once: run ones one line each, cached ones collapsed. The summary
        // counts the 4 that do work (RUN, COPY): FROM steps never run anything.
        const summary = /^image sha256:[0-9a-f]{64} \((\d) step\(s\) run, (\d) cached: \d+% hit rate(, \d+\.\ds saved)?\) in \d+\.\ds$/.exec(lines.at(-4)!);
        expect(summary).not.toBeNull();
        const [run, cached] = [Number(summary![1]), Number(summary![2])];
        expect(run + cached).toBe(4);
        const stepLines = lines.filter((l) => /^=> \[(a|b|stage-2) \d\/\d\] /.test(l));
        expect(new Set(stepLines).size).toBe(stepLines.length);
        if (!resizeTo) {
          expect(stepLines.filter((l) => !/\] FROM /.test(l))).toHaveLength(run);
          // Cached steps collapse into one line (the FROM steps may be cached when nothing else is).
          expect(lines.filter((l) => l.startsWith("=> CACHED")).length).toBe(stepLines.length === 7 ? 0 : 1);
        }
        expect(lines.slice(-2)).toEqual(["naming to docker.io/library/tty:1", "EXIT=0"]);
      } finally {
        terminal.stop();
      }
    }, 60_000);
  }

  test("colours on a terminal, none with NO_COLOR", async () => {
    const dir = writeProject(join(work, "colors"), { Dockerfile: "FROM memobuild/busybox\nRUN echo hi\n" });
    const cache = machineWithBase(join(work, "colors-cache"), baseOci);
    const screens: string[] = [];
    for (const env of [{}, { NO_COLOR: "1" }] as Record<string, string>[]) {
      const terminal = openTerminal(["sh", "-c", `${memobuildBinary()} build . --cache-dir ${cache} --no-cache; echo EXIT=$?`], { columns: 100, rows: 20, cwd: dir, env });
      try {
        await terminal.waitFor(/EXIT=0/, 30_000);
        screens.push(terminal.colored());
      } finally {
        terminal.stop();
      }
    }
    expect(screens[0]).toMatch(/\x1b\[3[0-9]m=>/);
    expect(screens[1]).not.toMatch(/\x1b\[[0-9;]*m/);
  }, 60_000);
});
