/**
 * What a build shows, by `--progress` mode: live events while it runs, then the result. `plain`
 * and `tty` end with a summary on stderr; `quiet` prints only the image ID on stdout; `json`
 * ends with a `result` event on stdout, so a script needs no metadata file.
 */
import type { ProgressSink } from "../solver/progress.ts";
import { jsonLine, jsonProgress, plainProgress, quietProgress } from "./progress.ts";
import { seconds, ttyProgress, type TtyProgress } from "./tty-progress.ts";
import type { StepResult } from "../solver/solver.ts";
import type { Finding } from "../frontend/lint.ts";

export type DisplayMode = "tty" | "plain" | "json" | "quiet";

export interface OutputResult {
  type: string;
  dest: string;
  /** The manifest digest a user meets there (the registry's after a push, the archive's...); none for a file system. */
  digest?: string;
}

export interface BuildOutcome {
  /** The image ID: the config digest, as `docker images` shows it. */
  imageId: string;
  /** The digest of the first output that has one (an image), else of the image in the local store. */
  digest: string;
  /** The manifest digest of the image in the local store (what `image ls` shows as DIGEST). */
  manifestDigest: string;
  /** A multi-platform image: its platforms (manifestDigest is then the digest of its index). */
  platforms?: string[];
  outputs: OutputResult[];
  tags: string[];
  steps: StepResult[];
  /** What the build checks found (shown before the summary, as BuildKit shows its warnings). */
  checks?: Finding[];
}

export interface Display {
  sink: ProgressSink;
  finish(outcome: BuildOutcome): void;
  /** The build failed: a live display ends cleanly (the error itself is printed by main). */
  abort(): void;
}

export function displayMode(setting: string, stderrIsTty = !!process.stderr.isTTY): DisplayMode {
  if (setting === "auto") return stderrIsTty && process.env.TERM !== "dumb" ? "tty" : "plain";
  return setting as DisplayMode;
}

export function openDisplay(mode: DisplayMode, start = performance.now()): Display {
  let savedMs = 0;
  const tally = (sink: ProgressSink): ProgressSink => (event) => {
    if (event.type === "done" && event.savedMs) savedMs += event.savedMs;
    sink(event);
  };
  const summary = (outcome: BuildOutcome) => summaryLines(outcome, savedMs, performance.now() - start);
  switch (mode) {
    case "tty": {
      const tty: TtyProgress = ttyProgress();
      return { sink: tally(tty.sink), finish: (outcome) => tty.finish(summary(outcome)), abort: () => tty.finish() };
    }
    case "json": {
      const json = jsonProgress();
      return {
        sink: json,
        finish: ({ imageId, digest, manifestDigest, outputs, tags, steps, checks }) =>
          void process.stdout.write(jsonLine({ type: "result", imageId, digest, configDigest: imageId, manifestDigest, outputs, tags, ...counts(steps), checks: checks ?? [] })),
        abort: () => {},
      };
    }
    case "quiet":
      return { sink: quietProgress(), finish: ({ imageId }) => void process.stdout.write(`${imageId}\n`), abort: () => {} };
    case "plain": {
      const plain = plainProgress();
      return { sink: tally(plain), finish: (outcome) => void process.stderr.write(summary(outcome).map((l) => `${l}\n`).join("")), abort: () => {} };
    }
  }
}

/** Steps that did work (config-only steps never run anything, so they never count). */
function counts(steps: StepResult[]) {
  const count = (status: string) => steps.filter((s) => s.status === status && !s.config_only).length;
  return { run: count("executed"), cached: count("cached-local"), cachedRemote: count("cached-remote") };
}

/**
 * `image sha256:… (2 step(s) run, 9 cached: 82% hit rate, 12.3s saved) in 4.1s` with the image
 * ID (what -q prints, and every command takes), then the manifest digests, each named as such:
 * the local store's, and each output's (an archive's or a registry's differs: compressed layers).
 */
export function summaryLines(outcome: BuildOutcome, savedMs: number, elapsedMs: number): string[] {
  const { run, cached, cachedRemote } = counts(outcome.steps);
  const hits = cached + cachedRemote;
  const rate = run + hits ? Math.round((100 * hits) / (run + hits)) : 100;
  const remote = cachedRemote ? `, ${cachedRemote} from the remote cache` : "";
  const saved = savedMs ? `, ${seconds(savedMs)} saved` : "";
  const checks = outcome.checks ?? [];
  return [
    ...(checks.length ? [`${checks.length} warning(s) found (memobuild build --check lists them; # check=skip=RULE turns one off):`] : []),
    ...checks.map((f) => ` - ${f.rule}: ${f.message} (${f.file}:${f.line})`),
    `image ${outcome.imageId} (${run} step(s) run, ${cached} cached${remote}: ${rate}% hit rate${saved}) in ${seconds(elapsedMs)}`,
    outcome.platforms ? `index ${outcome.manifestDigest} (local store: ${outcome.platforms.join(", ")})` : `manifest ${outcome.manifestDigest} (local store)`,
    ...outcome.outputs.map((o) => `output ${o.type} ${o.dest}${o.digest ? ` ${outcome.platforms ? "index" : "manifest"} ${o.digest}` : ""}`),
    ...outcome.tags.map((tag) => `naming to ${tag}`),
  ];
}
