/**
 * Where the remote cache is and how far to trust it, from the settings (flags, environment,
 * project file, user file: see settings.ts).
 *
 * A token is a credential of the person or CI job, never of the repository: when the URL comes
 * from the project file (which a pull request can change), a token from the environment or the
 * user file is sent only if the user file names the same URL (the user vouched for that server).
 * A token typed as a flag is the user's own choice and is sent.
 *
 * The same goes for what a build sends: results (layers: the image's files) and the build's
 * report (host, labels, CI metadata) go only to a server the user names. A server that only the
 * project file names is used read-only (`readOnly`): results are looked up, nothing is sent.
 */
import { UserError } from "../errors.ts";
import { value, type Settings } from "./settings.ts";

export interface RemoteSettings {
  url?: string;
  token?: string;
  /** A file holding the Ed25519 private key that signs uploaded results. */
  signKey?: string;
  /** Public keys whose signed results this client accepts (none: any result). */
  trust?: string[];
  /** PEM files: the CA that signed the server's certificate, and a client certificate and key (mutual TLS). */
  cacert?: string;
  cert?: string;
  key?: string;
  /** The URL comes only from the project file: look results up, send nothing (no token, uploads or report). */
  readOnly?: boolean;
}

export function remoteSettings(settings: Settings, warn: (message: string) => void): RemoteSettings {
  const url = value<string | undefined>(settings, "remote.url");
  let token = value<string | undefined>(settings, "remote.token");
  if (url !== undefined && !/^https?:\/\/[^/]+/.test(url)) throw new UserError(`remote cache URL "${url}" (from ${describeSource(settings, "remote.url")}) must start with http:// or https://`);
  const vouched = settings["remote.url"].lower?.some((layer) => layer.source === "user" && layer.value === url);
  const readOnly = settings["remote.url"].source === "project" && !vouched;
  if (readOnly) {
    const withheld = token !== undefined && settings["remote.token"].source !== "flag";
    const hint = "(name the same URL in $MEMOBUILD_REMOTE_URL or the user config's remote.url)";
    if (withheld) {
      warn(`not sending the token from ${describeSource(settings, "remote.token")} to ${url}, which ${settings["remote.url"].origin} names, nor any result or build report: a repository's file cannot direct credentials or a build's data ${hint}`);
      token = undefined;
    } else warn(`${url} is named only by ${settings["remote.url"].origin}: results are looked up there, but no result and no build report is sent to it ${hint}`);
  }
  const cert = value<string | undefined>(settings, "remote.cert");
  const key = value<string | undefined>(settings, "remote.key");
  if ((cert === undefined) !== (key === undefined)) throw new UserError("a client certificate and its key go together (--remote-cert and --remote-key)");
  const trust = value<string[]>(settings, "remote.trust");
  return { url, token, signKey: value(settings, "remote.signKey"), trust: trust.length ? trust : undefined, cacert: value(settings, "remote.cacert"), cert, key, ...(readOnly ? { readOnly } : {}) };
}

function describeSource(settings: Settings, key: keyof Settings): string {
  const { source, origin } = settings[key];
  return source === "flag" ? "the command line" : (origin ?? source);
}
