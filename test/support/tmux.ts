/**
 * A real pseudo-terminal for tests: a tmux server on its own socket (so no other session is
 * touched), one window of a given size running one command, keys sent and the screen read back.
 */
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Terminal {
  send(...keys: string[]): void;
  /** The screen as text, lines right-trimmed; with what scrolled off the top unless `visibleOnly`. */
  screen(visibleOnly?: boolean): string;
  /** Waits until the screen matches; throws with the screen after timeoutMs. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** The screen with its colour escape sequences (capture-pane -e). */
  colored(): string;
  resize(columns: number, rows: number): void;
  stop(): void;
}

export function openTerminal(command: string[], options: { columns: number; rows: number; cwd: string; env?: Record<string, string> }): Terminal {
  const socket = `memobuild-test-${randomBytes(6).toString("hex")}`;
  const tmux = (...args: string[]) => {
    const result = Bun.spawnSync(["tmux", "-L", socket, ...args], { stdout: "pipe", stderr: "pipe" });
    if (result.exitCode !== 0) throw new Error(`tmux ${args.join(" ")}: ${result.stderr.toString()}`);
    return result.stdout.toString();
  };
  const env = Object.entries({ TERM: "xterm-256color", ...options.env }).flatMap(([k, v]) => ["-e", `${k}=${v}`]);
  // remain-on-exit keeps the last screen readable after the command ends.
  tmux("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", String(options.columns), "-y", String(options.rows), "-c", options.cwd, ...env, ...command);
  tmux("set-option", "-t", "t", "remain-on-exit", "on");
  // -J joins lines the terminal wrapped, so a long line reads as the one line it was written as;
  // -S - includes what scrolled off the top (tmux scrolls a dead pane to print "Pane is dead").
  const screen = (visibleOnly = false) =>
    tmux("capture-pane", "-p", "-J", ...(visibleOnly ? [] : ["-S", "-"]), "-t", "t")
      .split("\n")
      .map((l) => l.trimEnd())
      .filter((l) => !l.startsWith("Pane is dead"))
      .join("\n")
      .trimEnd();
  return {
    send: (...keys) => void tmux("send-keys", "-t", "t", ...keys),
    screen,
    async waitFor(pattern, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const text = screen();
        if (pattern.test(text)) return text;
        if (Date.now() > deadline) throw new Error(`the terminal never showed ${pattern}; it shows:\n${text}`);
        await Bun.sleep(50);
      }
    },
    colored: () => tmux("capture-pane", "-p", "-e", "-S", "-", "-t", "t"),
    resize: (columns, rows) => void tmux("resize-window", "-t", "t", "-x", String(columns), "-y", String(rows)),
    stop: () => {
      Bun.spawnSync(["tmux", "-L", socket, "kill-server"]);
      rmSync(join(tmpdir(), `tmux-${process.getuid?.() ?? 0}`, socket), { force: true }); // tmux leaves its socket file
    },
  };
}
