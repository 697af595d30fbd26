/**
 * Build progress on a terminal or a pipe: `plain` prints numbered lines in BuildKit's plain style
 * (output of RUN steps streams live); `json` prints one JSON object per event for tools; quiet
 * prints only warnings. The tty display is tty-progress.ts.
 */
import type { ProgressSink } from "../solver/progress.ts";

export function plainProgress(write: (text: string) => void = (t) => process.stderr.write(t)): ProgressSink {
  return (event) => {
    const n = event.number !== undefined ? `#${event.number} ` : "";
    switch (event.type) {
      case "start":
        write(`${n}${event.name}\n`);
        break;
      case "output":
        write(`${n}${event.line}\n`);
        break;
      case "done":
        if (event.status === "executed") write(`${n}DONE ${((event.durationMs ?? 0) / 1000).toFixed(1)}s\n`);
        else if (event.status === "cached-local" || event.status === "cached-remote") write(`${n}CACHED\n`);
        break;
      case "error":
        write(`${n}ERROR ${event.message}\n`);
        break;
      case "warning":
        write(`warning: ${event.message}\n`);
        break;
    }
  };
}

export function jsonProgress(write: (text: string) => void = (t) => process.stdout.write(t)): ProgressSink {
  return (event) => write(jsonLine(event));
}

/** One JSON event per line, with its time first. */
export function jsonLine(event: object): string {
  // A worker's relayed event keeps the time it happened (ProgressEvent.time, ms): shown the same way.
  const { time, ...rest } = event as { time?: unknown };
  return JSON.stringify({ time: new Date(typeof time === "number" ? time : Date.now()).toISOString(), ...rest }) + "\n";
}

/** `-q`: nothing but warnings (on stderr), so stdout holds only the image ID. */
export function quietProgress(write: (text: string) => void = (t) => process.stderr.write(t)): ProgressSink {
  const plain = plainProgress(write);
  return (event) => event.type === "warning" && plain(event);
}
