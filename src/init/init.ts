/**
 * `memobuild init`: one flow for the wizard and for `--yes`. Every question goes through a
 * Prompter; answers given as flags are not asked; with `--yes` the rest take their defaults.
 */
import { existsSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { PROJECT_FILE, userConfigFile } from "../config/settings.ts";
import { SERVE_DEFAULT_LISTEN } from "../config/serve-defaults.ts";
import { UserError } from "../errors.ts";
import { MAX_DOCKERFILE_BYTES } from "../frontend/parser.ts";
import { ignoreFileFor, readIgnoreFile } from "../context/context.ts";
import { readRegularFile } from "../util/host-file.ts";
import { normalizeReference } from "../image/reference.ts";
import { SigningKey } from "../remote/action.ts";
import { findDockerfiles, proposeIgnores, summarizeDockerfile } from "./detect.ts";
import { checkRemote } from "./remote-check.ts";
import { extendDockerignore, mergeUserConfig, writeAtomic, writeProjectConfig, SCHEMA_FILE, type ProjectConfig } from "./write.ts";

export interface Choice {
  value: string;
  label: string;
  hint?: string;
}

/** The questions init asks; the wizard shows them, `--yes` answers each with its default. */
export interface Prompter {
  select(message: string, choices: Choice[], initial: string): Promise<string>;
  multiselect(message: string, choices: Choice[], initial: string[]): Promise<string[]>;
  text(message: string, initial: string, validate?: (value: string) => string | undefined): Promise<string>;
  secret(message: string): Promise<string>;
  confirm(message: string, initial: boolean): Promise<boolean>;
  warn(message: string): void;
}

/** What the command line already answered. */
export interface Preset {
  dockerfile?: string;
  target?: string;
  tags?: string[];
  buildArgs?: string[];
  remote?: string;
  remoteToken?: string;
  sign?: boolean;
  force?: boolean;
}

export interface InitResult {
  written: string[];
  project: ProjectConfig;
}

export async function runInit(root: string, preset: Preset, ask: Prompter, env: NodeJS.ProcessEnv = process.env): Promise<InitResult> {
  const projectFile = join(root, PROJECT_FILE);
  if (existsSync(projectFile) && !preset.force && !(await ask.confirm(`${PROJECT_FILE} exists: replace it?`, false))) {
    throw new UserError(`${projectFile} exists; nothing written (--force replaces it)`);
  }
  const project: ProjectConfig = {};
  project.dockerfile = await chooseDockerfile(root, preset, ask);
  const summary = existsSync(join(root, project.dockerfile))
    ? summarizeDockerfile(readRegularFile(join(root, project.dockerfile), { follow: true, limit: MAX_DOCKERFILE_BYTES, what: project.dockerfile }).toString("utf8"), project.dockerfile)
    : { stages: [], args: [], problem: "it does not exist yet" };
  if (summary.problem) ask.warn(`${project.dockerfile}: ${summary.problem}`);
  const target = preset.target ?? (summary.stages.length > 1 ? await ask.select("Which stage is the image?", summary.stages.map((s) => ({ value: s, label: s })), summary.stages.at(-1)!) : undefined);
  if (target !== undefined && target !== summary.stages.at(-1)) project.target = target;
  project.tags = preset.tags ?? splitWords(await ask.text("Image name(s), separated by spaces", `${imageName(root)}:latest`, invalidTags));
  const args = preset.buildArgs ?? (summary.args.length ? splitWords(await ask.text(`Build args to set, NAME=VALUE (declared: ${summary.args.join(", ")})`, "", invalidArgs)) : []);
  if (args.length) project.buildArgs = Object.fromEntries(args.map((a) => [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)]));

  const ignores = await chooseIgnores(root, ask);
  const user = await chooseRemote(preset, ask, env);
  if (user.url) project.remote = { url: user.url, ...(user.trust ? { trust: [user.trust] } : {}) };

  const written: string[] = [];
  writeProjectConfig(root, project);
  written.push(PROJECT_FILE, SCHEMA_FILE);
  if (extendDockerignore(root, ignores).length) written.push(".dockerignore");
  if (user.url) {
    mergeUserConfig(userConfigFile(env), { url: user.url, ...(user.token ? { token: user.token } : {}), ...(user.signKey ? { signKey: user.signKey } : {}) });
    written.push(userConfigFile(env));
  }
  return { written, project };
}

async function chooseDockerfile(root: string, preset: Preset, ask: Prompter): Promise<string> {
  if (preset.dockerfile) return preset.dockerfile;
  const found = findDockerfiles(root);
  if (found.length === 1) return found[0]!;
  if (found.length > 1) return ask.select("Which Dockerfile builds the image?", found.map((f) => ({ value: f, label: f })), found[0]!);
  ask.warn("no Dockerfile found in this project");
  return ask.text("Dockerfile path", "Dockerfile");
}

async function chooseIgnores(root: string, ask: Prompter): Promise<string[]> {
  const file = ignoreFileFor(root);
  const existing = file ? readIgnoreFile(file, ".dockerignore").split("\n").map((l) => l.trim()) : [];
  const proposals = proposeIgnores(root).filter((p) => !existing.includes(p.pattern));
  if (proposals.length === 0) return [];
  const choices = proposals.map((p) => ({ value: p.pattern, label: p.pattern, hint: p.reason }));
  return ask.multiselect("Leave these out of the build context (.dockerignore)?", choices, proposals.map((p) => p.pattern));
}

interface UserRemote {
  url?: string;
  token?: string;
  signKey?: string;
  trust?: string;
}

async function chooseRemote(preset: Preset, ask: Prompter, env: NodeJS.ProcessEnv): Promise<UserRemote> {
  const wanted = preset.remote !== undefined || (await ask.confirm("Share results with your team through a cache server (memobuild serve)?", false));
  if (!wanted) return {};
  const server = await askServer(preset, ask);
  if (!server) return {};
  const { url, token } = server;
  const sign = preset.sign ?? (await ask.confirm("Sign the results you upload with a key of your own (others can then trust only your results)?", false));
  if (!sign) return { url, token };
  const signKey = join(dirname(userConfigFile(env)), "signing.key");
  const key = existsSync(signKey) ? SigningKey.load(signKey) : newKey(signKey);
  const trust = await ask.confirm(`Use only results signed by this key (${key.publicKey.slice(0, 24)}…) in this project?`, false);
  return { url, token, signKey, trust: trust ? key.publicKey : undefined };
}

/**
 * The server's URL (first offered: where `memobuild serve` listens by default) and token,
 * checked. A server that does not answer as expected may be saved anyway; "no" asks for both
 * again, the URL as typed, every earlier answer kept; an empty URL goes on without a server.
 * Answers given as flags cannot be asked again: there, "no" ends init with nothing written.
 */
async function askServer(preset: Preset, ask: Prompter): Promise<{ url: string; token?: string } | undefined> {
  let offered = `http://${SERVE_DEFAULT_LISTEN}`;
  for (;;) {
    const typed = preset.remote ?? (await ask.text("Cache server URL (empty: go on without one)", offered, (v) => (v === "" || /^https?:\/\/[^/]+/.test(v) ? undefined : "start with http:// or https://")));
    if (typed === "") return undefined;
    const url = typed.replace(/\/+$/, "");
    const token = preset.remoteToken ?? ((await ask.secret("Token (the server's --token; empty for none)")) || undefined);
    const check = await checkRemote(url, token);
    if (check.ok) return { url, token };
    ask.warn(`${url}: ${check.problem}`);
    if (await ask.confirm("Save it anyway?", false)) return { url, token };
    if (preset.remote !== undefined) throw new UserError(`${url}: ${check.problem}; nothing written`);
    offered = url;
  }
}

function newKey(file: string): SigningKey {
  const { key, pem } = SigningKey.generate();
  writeAtomic(file, pem, 0o600);
  writeAtomic(`${file}.pub`, `${key.publicKey}\n`);
  return key;
}

const splitWords = (text: string) => text.split(/\s+/).filter(Boolean);

/** A name docker would accept for the project's directory. */
function imageName(root: string): string {
  return basename(root).toLowerCase().replace(/[^a-z0-9._-]+/g, "-").replace(/^[^a-z0-9]+/, "") || "app";
}

function invalidTags(text: string): string | undefined {
  for (const tag of splitWords(text)) {
    try {
      normalizeReference(tag);
    } catch (error) {
      return (error as Error).message;
    }
  }
  return undefined;
}

function invalidArgs(text: string): string | undefined {
  const bad = splitWords(text).find((a) => !/^[A-Za-z_][A-Za-z0-9_]*=/.test(a));
  return bad ? `${bad}: use NAME=VALUE` : undefined;
}

/** `--yes`: every question takes its default; a failed server check is an error. */
export const defaultAnswers = (warn: (message: string) => void): Prompter => ({
  select: async (_m, _c, initial) => initial,
  multiselect: async (_m, _c, initial) => initial,
  text: async (message, initial, validate) => {
    const problem = validate?.(initial);
    if (problem) throw new UserError(`${message}: ${problem}`);
    return initial;
  },
  secret: async () => "",
  confirm: async () => false,
  warn,
});
