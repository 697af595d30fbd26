/** Writing what `memobuild init` decided: each file whole or not at all (temp file + rename). */
import { existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { configSchema, PROJECT_FILE } from "../config/settings.ts";
import { UserError } from "../errors.ts";
import { readRegularFile, writeFileAtomic } from "../util/host-file.ts";
import { parseJsonText } from "../util/json-text.ts";
import { ignoreFileFor, readIgnoreFile } from "../context/context.ts";

export const SCHEMA_FILE = ".memobuild.schema.json";

export interface ProjectConfig {
  dockerfile?: string;
  target?: string;
  tags?: string[];
  buildArgs?: Record<string, string>;
  remote?: { url: string; trust?: string[] };
}

/** Writes `file` whole or not at all, with exactly `mode` (the umask does not narrow it). */
export function writeAtomic(file: string, text: string, mode = 0o644) {
  mkdirSync(dirname(file), { recursive: true });
  writeFileAtomic(file, text, mode);
}

/** memobuild.json and the schema editors read beside it. */
export function writeProjectConfig(dir: string, config: ProjectConfig) {
  writeAtomic(join(dir, SCHEMA_FILE), JSON.stringify(configSchema(), null, 2) + "\n");
  writeAtomic(join(dir, PROJECT_FILE), JSON.stringify({ $schema: `./${SCHEMA_FILE}`, ...config }, null, 2) + "\n");
}

/** Merges remote settings into the user file (mode 0600: it holds a token), keeping the rest. */
export function mergeUserConfig(file: string, remote: Record<string, string>) {
  let current: Record<string, unknown> = {};
  if (existsSync(file)) {
    // The user's own file (a link is theirs to make), still read as a bounded regular file; a
    // mistake says where, not what: the file holds a token.
    const text = readRegularFile(file, { follow: true, limit: 1024 * 1024 }).toString("utf8");
    try {
      current = parseJsonText(text, file) as Record<string, unknown>;
    } catch (error) {
      throw new UserError(`${(error as Error).message}; not changed`);
    }
  }
  const merged = { ...current, remote: { ...(current.remote as object), ...remote } };
  writeAtomic(file, JSON.stringify(merged, null, 2) + "\n", 0o600);
}

/** Appends the patterns a .dockerignore does not hold yet; returns those added. */
export function extendDockerignore(dir: string, patterns: string[]): string[] {
  const file = join(dir, ".dockerignore");
  const existing = ignoreFileFor(dir) ? readIgnoreFile(file, file) : "";
  const have = new Set(existing.split("\n").map((l) => l.trim()));
  const added = patterns.filter((p) => !have.has(p));
  if (added.length === 0) return [];
  const header = existing ? (existing.endsWith("\n") ? "" : "\n") : "# Left out of the build context (memobuild init)\n";
  writeAtomic(file, `${existing}${header}${added.join("\n")}\n`);
  return added;
}
