/** The settings a command runs with: its flags on top of the environment and config files. */
import { isGitUrl } from "./context-source.ts";
import { resolve } from "node:path";
import { loadLayers, resolveSettings, SETTINGS, type SettingKey, type Settings } from "../config/settings.ts";
import { UsageError } from "./errors.ts";
import { log } from "../util/log.ts";
import { parseBuildArgs } from "./inputs.ts";

/** The flags (as Commander names them) that set a setting; any may be absent. */
export interface SettingFlags {
  file?: string;
  target?: string;
  tag?: string[];
  buildArg?: string[];
  progress?: string;
  quiet?: boolean;
  jobs?: string;
  cacheDir?: string;
  signKey?: string;
  remote?: string;
  remoteToken?: string;
  remoteRequired?: boolean;
  remoteUpload?: string;
  remoteReport?: string;
  remoteCacheMounts?: string;
  remoteSignKey?: string;
  remoteTrust?: string[];
  remoteCacert?: string;
  remoteCert?: string;
  remoteKey?: string;
}

function oneOf(flag: string, given: string | undefined, key: SettingKey): string | undefined {
  const kind = SETTINGS[key].kind as { values?: readonly string[] };
  if (given !== undefined && !kind.values!.includes(given)) throw new UsageError(`${flag} must be ${kind.values!.join(", ")}; not "${given}"`);
  return given;
}

function jobsFlag(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const jobs = Number(text);
  if (!Number.isInteger(jobs) || jobs < 1) throw new UsageError(`--jobs must be a whole number of at least 1`);
  return jobs;
}

export function commandSettings(flags: SettingFlags, context?: string): Settings {
  const settings = resolveFlags(flags, context);
  for (const [key, { source, origin }] of Object.entries(settings)) if (source !== "default") log().debug("setting", { key, source, origin });
  return settings;
}

function resolveFlags(flags: SettingFlags, context?: string): Settings {
  const absolute = (path: string | undefined) => (path === undefined || path === "-" ? path : resolve(path));
  const buildArgs = flags.buildArg?.length ? parseBuildArgs(flags.buildArg) : undefined;
  return resolveSettings(
    {
      // stdin (-) and git URLs are no paths: kept as given (inputs.ts prepares them).
      context: context !== undefined && isGitUrl(context) ? context : absolute(context),
      dockerfile: absolute(flags.file),
      target: flags.target,
      tags: flags.tag,
      buildArgs,
      progress: flags.quiet ? "quiet" : oneOf("--progress", flags.progress, "progress"),
      jobs: jobsFlag(flags.jobs),
      cacheDir: absolute(flags.cacheDir),
      signKey: absolute(flags.signKey),
      "remote.url": flags.remote,
      "remote.token": flags.remoteToken,
      "remote.required": flags.remoteRequired,
      "remote.upload": oneOf("--remote-upload", flags.remoteUpload, "remote.upload"),
      "remote.report": oneOf("--remote-report", flags.remoteReport, "remote.report"),
      "remote.cacheMounts": oneOf("--remote-cache-mounts", flags.remoteCacheMounts, "remote.cacheMounts"),
      "remote.signKey": absolute(flags.remoteSignKey),
      "remote.trust": flags.remoteTrust,
      "remote.cacert": absolute(flags.remoteCacert),
      "remote.cert": absolute(flags.remoteCert),
      "remote.key": absolute(flags.remoteKey),
    },
    loadLayers(),
  );
}
