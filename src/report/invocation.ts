/**
 * Who ran a build and how, for the build hub: the command line (to rerun it) with every secret
 * value and token masked, and the user. The command line goes to everyone who can read the
 * hub, so a value is masked when the flag carries a credential, when a build arg's name says
 * it is one, when it holds a value the client knows to be secret (a --secret's content, the
 * remote token), and wherever it looks like one (redactCredentials).
 */
import { userInfo } from "node:os";
import { redactCredentials } from "../util/redact.ts";

const MASK = "***";
/** Flags whose value is a credential. */
const SECRET_FLAGS = new Set(["--remote-token", "--token"]);
/** Flags whose value is NAME=VALUE, the value secret when the name says so. */
const PAIR_FLAGS = new Set(["--build-arg"]);
const SECRET_NAME = /token|secret|passw|pwd|key|credential|auth|cookie|session|private/i;
/** Shorter values are not looked for inside other words (a one-letter secret would mask everything). */
const MIN_SECRET_LENGTH = 4;

function maskKnown(text: string, secrets: string[]): string {
  let out = text;
  for (const secret of secrets) if (secret.length >= MIN_SECRET_LENGTH) out = out.split(secret).join(MASK);
  return out;
}

function maskPair(pair: string): string {
  const eq = pair.indexOf("=");
  return eq > 0 && SECRET_NAME.test(pair.slice(0, eq)) ? `${pair.slice(0, eq + 1)}${MASK}` : pair;
}

/**
 * `memobuild ARGS…` as typed, masked. `secrets` are values known to be secret (masked wherever
 * they appear, in any argument).
 */
export function reportedCommand(args: string[], secrets: string[] = []): string[] {
  const out = ["memobuild"];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const [flag, inline] = arg.startsWith("--") && arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, undefined];
    const clean = (value: string) => maskKnown(redactCredentials(value), secrets);
    if (SECRET_FLAGS.has(flag) || PAIR_FLAGS.has(flag)) {
      const mask = (value: string) => (SECRET_FLAGS.has(flag) ? MASK : clean(maskPair(value)));
      if (inline !== undefined) out.push(`${flag}=${mask(inline)}`);
      else {
        out.push(flag);
        if (i + 1 < args.length) out.push(mask(args[++i]));
      }
      continue;
    }
    out.push(clean(arg));
  }
  return out;
}

type Env = Record<string, string | undefined>;

/** Who ran the build: the CI's actor, else the user who ran sudo, else this process's user. */
export function buildUser(env: Env = process.env): string | undefined {
  const name = env.GITHUB_ACTOR || env.GITLAB_USER_LOGIN || env.SUDO_USER || env.USER || env.LOGNAME || safeUserName();
  return name ? name.slice(0, 128) : undefined;
}

function safeUserName(): string | undefined {
  try {
    return userInfo().username;
  } catch {
    return undefined; // a uid with no passwd entry (a container)
  }
}
