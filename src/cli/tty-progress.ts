/**
 * `--progress tty`: a live display on a terminal, in BuildKit's manner. Finished steps are
 * printed once, above a live area that is redrawn in place: a header with the elapsed time and
 * count, then each running step (several stages run side by side) with its elapsed time and its
 * last lines of output. Runs of cached steps collapse into one line.
 *
 * Each frame is one write: cursor up over the last live area, then each new line erased and
 * written, then the rows left over erased. Lines are cut to the terminal's width, so none wraps;
 * when the terminal is narrowed, the lines already drawn reflow (tmux, VTE, iTerm do), so the rows
 * to go back up are counted at the width the terminal has now, asked of it at each frame.
 * RUN output is untrusted bytes: control characters are removed before it reaches the terminal.
 */
import type { PlannedStep, ProgressEvent, ProgressSink } from "../solver/progress.ts";

export interface TtyOutput {
  write(text: string): void;
  columns(): number;
  rows(): number;
}

export interface TtyOptions {
  color: boolean;
  now?: () => number;
  /** How many lines of output each running step shows. */
  logLines?: number;
}

interface Running {
  number: number;
  name: string;
  started: number;
  output: string[];
}

const ESC = "\x1b[";
type Color = "green" | "blue" | "red" | "yellow" | "dim";
const LOG_LINES = 5;

/** Removes what a terminal would interpret: escape sequences and control characters. */
export function sanitize(line: string): string {
  return line
    .replace(/\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[@-_]/g, "")
    .replace(/\t/g, "  ")
    .replace(/[\x00-\x1f\x7f-\x9f]/g, "");
}

/** Cuts a line to `width` columns (characters; a cut line ends with an ellipsis). */
export function fit(line: string, width: number): string {
  const chars = [...line];
  if (chars.length <= width) return line;
  return width <= 1 ? chars.slice(0, width).join("") : chars.slice(0, width - 1).join("") + "…";
}

export const seconds = (ms: number) => `${(ms / 1000).toFixed(1)}s`;

export class TtyProgress {
  private readonly now: () => number;
  private readonly started: number;
  private plan: PlannedStep[] = [];
  private readonly running = new Map<string, Running>();
  private cachedRun: string[] = [];
  private done = 0;
  private readonly committed: string[] = [];
  /** The visible length of each line of the live area last drawn, to go back over it. */
  private drawn: number[] = [];
  private timer: ReturnType<typeof setInterval> | undefined;
  private closed = false;

  constructor(
    private readonly out: TtyOutput,
    private readonly options: TtyOptions,
  ) {
    this.now = options.now ?? (() => performance.now());
    this.started = this.now();
  }

  /** Starts redrawing every 100 ms (the elapsed times move); the timer never keeps the process up. */
  start(): this {
    this.timer = setInterval(() => this.render(), 100);
    this.timer.unref?.();
    this.out.write(`${ESC}?25l`); // no blinking cursor jumping over the live area
    return this;
  }

  /** Draws again (the terminal was resized). */
  redraw() {
    this.render();
  }

  readonly sink: ProgressSink = (event) => {
    if (this.closed) return;
    this.apply(event);
    this.render();
  };

  private apply(event: ProgressEvent) {
    const id = event.step ?? "";
    switch (event.type) {
      case "plan":
        // A multi-platform build plans once per platform: the total counts every platform's steps.
        this.plan = [...this.plan, ...(event.steps ?? [])];
        break;
      case "start":
        this.running.set(id, { number: event.number ?? 0, name: event.name ?? id, started: this.now(), output: [] });
        break;
      case "output": {
        const running = this.running.get(id);
        const line = sanitize(event.line ?? "");
        if (running) running.output = [...running.output, line].slice(-(this.options.logLines ?? LOG_LINES));
        else this.commit(this.paint("dim", line));
        break;
      }
      case "done": {
        const running = this.running.get(id);
        this.running.delete(id);
        this.done++;
        const name = running?.name ?? event.name ?? id;
        if (event.status === "cached-local" || event.status === "cached-remote") {
          this.cachedRun.push(event.status === "cached-remote" ? `${name} (remote)` : name);
        } else {
          this.flushCached();
          this.commit(this.stepLine("=>", "green", name, event.durationMs ?? 0));
        }
        break;
      }
      case "error": {
        const running = this.running.get(id);
        this.running.delete(id);
        this.flushCached();
        this.commit(`${this.paint("red", "=> ERROR")} ${running?.name ?? id}: ${sanitize(event.message ?? "")}`);
        for (const line of event.tail ?? []) this.commit(this.paint("red", `   ${sanitize(line)}`));
        break;
      }
      case "warning":
        this.commit(this.paint("yellow", `warning: ${sanitize(event.message ?? "")}`));
        break;
    }
  }

  private flushCached() {
    const cached = this.cachedRun;
    if (cached.length === 0) return;
    this.cachedRun = [];
    const label = this.paint("blue", "=> CACHED");
    this.commit(cached.length === 1 ? `${label} ${cached[0]}` : `${label} ${cached.length} steps: ${cached[0]} … ${cached.at(-1)}`);
  }

  private commit(line: string) {
    this.committed.push(line);
  }

  /** `=> NAME          1.2s`: the name cut so the time stays at the right edge; the mark coloured. */
  private stepLine(mark: string, color: Color | undefined, name: string, ms: number): string {
    const time = seconds(ms);
    const width = Math.max(20, this.out.columns() - 1);
    const text = fit(`${mark} ${name}`, width - time.length - 1);
    const pad = " ".repeat(Math.max(1, width - [...text].length - time.length));
    const painted = color ? this.paint(color, mark) + text.slice(mark.length) : text;
    return `${painted}${pad}${time}`;
  }

  private paint(color: Color, text: string): string {
    if (!this.options.color) return text;
    const code = { green: 32, blue: 34, red: 31, yellow: 33, dim: 2 }[color];
    return `${ESC}${code}m${text}${ESC}0m`;
  }

  private liveLines(): string[] {
    const total = this.plan.length || this.done + this.running.size;
    const lines = [this.paint("blue", `[+] Building ${seconds(this.now() - this.started)} (${this.done}/${total})`)];
    const width = Math.max(20, this.out.columns() - 1);
    for (const step of [...this.running.values()].sort((a, b) => a.number - b.number)) {
      lines.push(this.stepLine("=>", undefined, step.name, this.now() - step.started));
      for (const line of step.output) lines.push(this.paint("dim", fit(`=> => ${line}`, width)));
    }
    // Never taller than the terminal: the header and the first steps stay.
    return lines.slice(0, Math.max(1, this.out.rows() - 1));
  }

  /** Rows the last live area takes now: a terminal narrowed since reflows each line (tmux, VTE, iTerm do). */
  private drawnRows(): number {
    const columns = Math.max(1, this.out.columns());
    return this.drawn.reduce((rows, length) => rows + Math.max(1, Math.ceil(length / columns)), 0);
  }

  private render(final = false) {
    if (this.closed) return;
    const rows = this.drawnRows();
    // Back over the old live area; each line is erased whole before it is written, and the rows
    // left over are erased one by one. No erase-to-end-of-screen: tmux turns that, at the
    // top of the screen, into a full clear that pushes the screen into its scrollback.
    let frame = rows > 0 ? `\r${ESC}${rows}A` : "\r";
    const width = Math.max(20, this.out.columns() - 1);
    const live = final ? [] : this.liveLines();
    const lines = [...this.committed.splice(0).map((line) => fitPainted(line, width)), ...live];
    for (const line of lines) frame += `${ESC}2K${line}\n`;
    const leftover = rows - lines.length;
    if (leftover > 0) frame += `${`${ESC}2K\n`.repeat(leftover)}${ESC}${leftover}A`;
    this.drawn = live.map((line) => [...visible(line)].length);
    this.out.write(frame);
  }

  /** Ends the display: the last finished steps, then the summary lines; the cursor comes back. */
  finish(summary: string[] = []) {
    if (this.closed) return;
    clearInterval(this.timer);
    this.flushCached();
    this.render(true);
    this.closed = true;
    // The summary is never cut: a digest is copied from it. Nothing is redrawn after it, so it may wrap.
    this.out.write(`${summary.map((line) => `${line}\n`).join("")}${ESC}?25h`);
  }
}

/** The text of a line without its colour codes. */
function visible(line: string): string {
  return line.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "");
}

/** Cuts a line that may hold colour codes to `width` visible characters. */
function fitPainted(line: string, width: number): string {
  const plain = visible(line);
  if ([...plain].length <= width) return line;
  return fit(plain, width);
}

function windowSize(stream: NodeJS.WriteStream): [number, number] {
  try {
    const [columns, rows] = stream.getWindowSize();
    if (columns > 0 && rows > 0) return [columns, rows];
  } catch {
    // not a terminal after all: the defaults below
  }
  return [stream.columns || 80, stream.rows || 24];
}

/** The tty display on this process's stderr. */
export function ttyProgress(): TtyProgress {
  const stream = process.stderr;
  const display = new TtyProgress(
    // The size is asked of the terminal at each frame: `columns` is updated only when SIGWINCH is
    // handled, and a frame drawn between the resize and then would go back over too few rows.
    { write: (text) => stream.write(text), columns: () => windowSize(stream)[0], rows: () => windowSize(stream)[1] },
    { color: !process.env.NO_COLOR && process.env.TERM !== "dumb" },
  );
  stream.on("resize", () => display.redraw());
  return display.start();
}
