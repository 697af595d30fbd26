/**
 * Structured logs, for the server and the client alike, on stderr (never mixed into stdout's
 * data): one JSON object per line with MEMOBUILD_JSON_LOGS=1, else `level message key=value`.
 * MEMOBUILD_LOG sets the level (error|warn|info|debug|trace; default info).
 */
const LEVELS = ["error", "warn", "info", "debug", "trace"] as const;
type Level = (typeof LEVELS)[number];

export interface Logger {
  error(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  debug(message: string, fields?: Record<string, unknown>): void;
}

export function createLogger(env: NodeJS.ProcessEnv = process.env, write: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  const threshold = LEVELS.indexOf((env.MEMOBUILD_LOG as Level) ?? "info");
  const json = env.MEMOBUILD_JSON_LOGS === "1";
  const emit = (level: Level) => (message: string, fields: Record<string, unknown> = {}) => {
    if (LEVELS.indexOf(level) > (threshold < 0 ? 2 : threshold)) return;
    if (json) write(JSON.stringify({ time: new Date().toISOString(), level, msg: message, ...fields }) + "\n");
    else {
      const rest = Object.entries(fields).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`);
      write(`${level} ${message}${rest.length ? " " + rest.join(" ") : ""}\n`);
    }
  };
  return { error: emit("error"), warn: emit("warn"), info: emit("info"), debug: emit("debug") };
}

let processLogger: Logger | undefined;

/** This process's logger, from its environment (made on first use). */
export function log(): Logger {
  return (processLogger ??= createLogger());
}
