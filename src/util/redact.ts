/**
 * Credentials out of what a build reports. A build report is shown to every holder of a
 * read-only token (the whole team, pull-request builds), so nothing that looks like a
 * credential may be in it: the client removes them before sending and the server again before
 * storing (an old or hostile client is not trusted to have done it).
 *
 * What counts: a URL's user information (`https://user:token@host`, as Jenkins' GIT_URL has it),
 * the value of a URL query parameter whose name says it is secret (`?access_token=`, `&sig=`),
 * an `Authorization`-style `Bearer`/`Basic` value, and tokens whose shape is well known
 * (GitHub, GitLab, Slack, AWS access keys, Slack/Teams/Discord webhook paths).
 */
const REDACTED = "***";

const PATTERNS: [RegExp, string][] = [
  // scheme://user:password@host and scheme://token@host: everything before the @ goes.
  [/\b([a-z][a-z0-9+.-]*:\/\/)[^\s/?#@]+@/gi, "$1"],
  // ?token=… &private_token=… &sig=…: the value goes, the name stays (it says what was there).
  [/([?&;](?:[a-z0-9_.-]*(?:token|secret|passw(?:or)?d|pwd|key|signature|credentials?)|auth|authorization|sig|code))=[^&#\s"']*/gi, `$1=${REDACTED}`],
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/g, `$1 ${REDACTED}`],
  [/\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{20,}|xox[abposr]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16})\b/g, REDACTED],
  // Incoming-webhook URLs carry their secret in the path.
  [/(hooks\.slack\.com\/)(?:services|workflows|triggers)\/[^\s"'?#]+/gi, `$1${REDACTED}`],
  [/(\.webhook\.office\.com\/)[^\s"'?#]+/gi, `$1${REDACTED}`],
  [/(discord(?:app)?\.com\/api\/webhooks\/)[^\s"'?#]+/gi, `$1${REDACTED}`],
];

export function redactCredentials(text: string): string {
  let out = text;
  for (const [pattern, replacement] of PATTERNS) out = out.replace(pattern, replacement);
  return out;
}

/** A URL as it may be shown to anyone: its scheme and host only (a webhook's path is its secret). */
export function urlOrigin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return REDACTED;
  }
}
