/**
 * The output of a build's RUN steps on its way to the build hub: secrets' values masked (this
 * process holds them, the hub never does), then streamed while each step and the build are
 * under their bounds; past a bound, only the step's tail is kept, and sent when the step ends
 * after a line saying how much was left out (a failed step's output ends with why it failed).
 */
import { LOG_CHUNK_MAX, STEP_LOG_MAX } from "./events.ts";

export interface StepLogLimits {
  /** Bytes of one step's output streamed live. */
  stepLive: number;
  /** Bytes of one step's tail kept past its live bound. */
  stepTail: number;
  /** Bytes of the whole build's output streamed live. */
  buildLive: number;
  /** Bytes of a step's tail kept once the build is past its live bound. */
  lateTail: number;
  /**
   * Chunks of output streamed live, in all: a build that prints a short line now and then for
   * hours would otherwise spend the hub's limit on a build's events (hub.ts) on its output.
   */
  liveChunks: number;
}

// A step's live part and its tail fit in what the hub keeps (STEP_LOG_MAX characters; a
// character is at least a byte), with room for the line that says what was left out. The
// build's bound stays under a read-only token's build budget (quotas.ts), which also holds states.
export const STEP_LOG_LIMITS: StepLogLimits = { stepLive: STEP_LOG_MAX / 2, stepTail: STEP_LOG_MAX / 2 - 1024, buildLive: 1024 * 1024, lateTail: 8 * 1024, liveChunks: 20_000 };

const MASK = "****";

interface StepOutput {
  /** Lines within the bounds, each with its newline, waiting for the next batch. */
  ready: string[];
  /** Bytes of the step's output let through live. */
  sent: number;
  /** Past a bound: only a tail is kept, sent when the step ends. */
  tailOnly: boolean;
  tail: string[];
  tailBytes: number;
  tailMax: number;
  leftOut: number;
}

/** One chunk of one step's output, ready to go in a step.log event. */
export interface LogChunk {
  step: string;
  text: string;
}

export class StepLogBuffer {
  private readonly steps = new Map<string, StepOutput>();
  private readonly secrets: string[];
  private buildSent = 0;
  /** Chunks taken so far while streaming live. */
  private chunks = 0;

  constructor(secrets: Iterable<Uint8Array | string> = [], private readonly limits: StepLogLimits = STEP_LOG_LIMITS) {
    this.secrets = secretPatterns(secrets);
  }

  /** Hides every secret value (and each line of a multi-line one) in a text. */
  mask(text: string): string {
    let masked = text;
    for (const secret of this.secrets) masked = masked.replaceAll(secret, MASK);
    return masked;
  }

  /**
   * A line a step printed. A progress bar redraws its line after carriage returns: what a
   * terminal would show, the text after the last one, is kept (masked whole first, so a secret
   * cannot be split by one).
   */
  add(step: string, line: string) {
    const masked = this.mask(line).replace(/\r+$/, "");
    const text = `${masked.slice(masked.lastIndexOf("\r") + 1)}\n`;
    const bytes = Buffer.byteLength(text);
    let output = this.steps.get(step);
    if (!output) this.steps.set(step, (output = { ready: [], sent: 0, tailOnly: false, tail: [], tailBytes: 0, tailMax: 0, leftOut: 0 }));
    if (!output.tailOnly && output.sent + bytes <= this.limits.stepLive && this.buildSent + bytes <= this.limits.buildLive && this.chunks < this.limits.liveChunks) {
      output.ready.push(text);
      output.sent += bytes;
      this.buildSent += bytes;
      return;
    }
    if (!output.tailOnly) {
      output.tailOnly = true;
      output.tailMax = this.buildSent + bytes > this.limits.buildLive || this.chunks >= this.limits.liveChunks ? this.limits.lateTail : this.limits.stepTail;
    }
    output.tail.push(text);
    output.tailBytes += bytes;
    this.trim(output);
  }

  /** Drops a tail's oldest lines past its bound (a line longer than the bound keeps its end). */
  private trim(output: StepOutput) {
    while (output.tailBytes > output.tailMax && output.tail.length > 1) {
      const dropped = Buffer.byteLength(output.tail.shift()!);
      output.tailBytes -= dropped;
      output.leftOut += dropped;
    }
    if (output.tailBytes > output.tailMax) {
      const line = Buffer.from(output.tail[0]);
      const cut = line.subarray(line.length - output.tailMax).toString("utf8").replace(/^\uFFFD/, "");
      output.leftOut += line.length - Buffer.byteLength(cut);
      output.tail[0] = cut;
      output.tailBytes = Buffer.byteLength(cut);
    }
  }

  /**
   * What can be sent now: every step's lines within the bounds, in chunks the hub takes. With
   * `ended`, that step's tail too (after a line saying what was left out), and it is forgotten.
   */
  take(ended?: string): LogChunk[] {
    const chunks: LogChunk[] = [];
    for (const [step, output] of this.steps) {
      if (output.ready.length) chunks.push(...chunked(step, output.ready.splice(0).join("")));
      if (step !== ended) continue;
      const note = output.leftOut ? `[… ${output.leftOut} bytes of output left out …]\n` : "";
      if (output.tail.length || note) chunks.push(...chunked(step, note + output.tail.join("")));
      this.steps.delete(step);
    }
    this.chunks += chunks.length;
    return chunks;
  }
}

/** Secret values as masked: whole, and each line of a multi-line one, longest first. */
function secretPatterns(secrets: Iterable<Uint8Array | string>): string[] {
  const patterns = new Set<string>();
  for (const secret of secrets) {
    const text = typeof secret === "string" ? secret : Buffer.from(secret).toString("utf8");
    for (const part of [text, ...text.split(/\r?\n/)]) if (part.trim()) patterns.add(part.replace(/\r?\n$/, ""));
  }
  return [...patterns].filter(Boolean).sort((a, b) => b.length - a.length);
}

/** A text in pieces of at most LOG_CHUNK_MAX characters, cut at line ends where it can be. */
function chunked(step: string, text: string): LogChunk[] {
  const chunks: LogChunk[] = [];
  let rest = text;
  while (rest.length > LOG_CHUNK_MAX) {
    const end = rest.lastIndexOf("\n", LOG_CHUNK_MAX - 1);
    const cut = end > 0 ? end + 1 : LOG_CHUNK_MAX;
    chunks.push({ step, text: rest.slice(0, cut) });
    rest = rest.slice(cut);
  }
  if (rest) chunks.push({ step, text: rest });
  return chunks;
}
