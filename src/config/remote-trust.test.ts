/**
 * remoteSettings: which server, and whether the user's token may go to it. The layers are built
 * in memory (what each file and variable would hold), so every source can be named exactly.
 */
import { describe, expect, test } from "bun:test";
import { UserError } from "../errors.ts";
import { remoteSettings, type RemoteSettings } from "./remote.ts";
import { resolveSettings, type Layers } from "./settings.ts";

const PROJECT = "/repo/memobuild.json";
const USER = "/home/u/.config/memobuild/config.json";

interface Given {
  flags?: Record<string, unknown>;
  env?: Record<string, string>;
  project?: Record<string, unknown>;
  user?: Record<string, unknown>;
}

function remote(given: Given): { settings: RemoteSettings; warnings: string[] } {
  const layers: Layers = {
    env: given.env ?? {},
    ...(given.project ? { project: { file: PROJECT, values: given.project } } : {}),
    ...(given.user ? { user: { file: USER, values: given.user } } : {}),
  };
  const warnings: string[] = [];
  const settings = remoteSettings(resolveSettings(given.flags ?? {}, layers), (w) => warnings.push(w));
  return { settings, warnings };
}

function refusal(given: Given): string {
  try {
    remote(given);
  } catch (error) {
    expect(error).toBeInstanceOf(UserError);
    return (error as Error).message;
  }
  throw new Error("accepted");
}

describe("the URL", () => {
  test("http and https URLs with a host are taken; no URL is no remote", () => {
    expect(remote({ flags: { "remote.url": "https://cache.example:8443/base" } }).settings.url).toBe("https://cache.example:8443/base");
    expect(remote({ env: { MEMOBUILD_REMOTE_URL: "http://c" } }).settings.url).toBe("http://c");
    expect(remote({}).settings).toEqual({ url: undefined, token: undefined, signKey: undefined, trust: undefined, cacert: undefined, cert: undefined, key: undefined });
    expect(remote({}).warnings).toEqual([]);
  });

  test("anything else is refused, naming where it came from", () => {
    expect(refusal({ flags: { "remote.url": "ftp://c" } })).toBe('remote cache URL "ftp://c" (from the command line) must start with http:// or https://');
    expect(refusal({ env: { MEMOBUILD_REMOTE_URL: "cache.example" } })).toBe('remote cache URL "cache.example" (from $MEMOBUILD_REMOTE_URL) must start with http:// or https://');
    expect(refusal({ project: { "remote.url": "xhttp://c" } })).toBe(`remote cache URL "xhttp://c" (from ${PROJECT}) must start with http:// or https://`);
    expect(refusal({ user: { "remote.url": "http:///path" } })).toBe(`remote cache URL "http:///path" (from ${USER}) must start with http:// or https://`);
  });
});

describe("the token and a URL the project file names", () => {
  const userToken = { "remote.token": "user-token" };

  test("a user file naming another URL does not vouch for the project's", () => {
    const { settings, warnings } = remote({ project: { "remote.url": "http://attacker.example" }, user: { ...userToken, "remote.url": "http://cache.example" } });
    expect(settings).toMatchObject({ url: "http://attacker.example", token: undefined, readOnly: true });
    expect(warnings).toEqual([
      `not sending the token from ${USER} to http://attacker.example, which ${PROJECT} names, nor any result or build report: a repository's file cannot direct credentials or a build's data (name the same URL in $MEMOBUILD_REMOTE_URL or the user config's remote.url)`,
    ]);
  });

  test("a user file naming the same URL vouches for it", () => {
    const { settings, warnings } = remote({ project: { "remote.url": "http://cache.example" }, user: { ...userToken, "remote.url": "http://cache.example" } });
    expect(settings.token).toBe("user-token");
    expect(settings.readOnly).toBeUndefined();
    expect(warnings).toEqual([]);
  });

  test("a token from the environment is held back the same way, and named so", () => {
    const { settings, warnings } = remote({ env: { MEMOBUILD_TOKEN: "env-token" }, project: { "remote.url": "http://attacker.example" } });
    expect(settings.token).toBeUndefined();
    expect(warnings[0]).toStartWith("not sending the token from $MEMOBUILD_TOKEN to http://attacker.example");
  });

  test("without any token, the server is still only read from, and that is said", () => {
    const { settings, warnings } = remote({ project: { "remote.url": "http://attacker.example" } });
    expect(settings).toMatchObject({ url: "http://attacker.example", token: undefined, readOnly: true });
    expect(warnings).toEqual([
      `http://attacker.example is named only by ${PROJECT}: results are looked up there, but no result and no build report is sent to it (name the same URL in $MEMOBUILD_REMOTE_URL or the user config's remote.url)`,
    ]);
  });

  test("a token typed as a flag goes (the server stays read-only); a URL not from the project file gets the token", () => {
    expect(remote({ flags: { "remote.token": "typed" }, project: { "remote.url": "http://p" } }).settings).toMatchObject({ token: "typed", readOnly: true });
    const fromEnv = remote({ env: { MEMOBUILD_REMOTE_URL: "http://e" }, project: { "remote.url": "http://p" }, user: userToken });
    expect(fromEnv.settings).toMatchObject({ url: "http://e", token: "user-token" });
    expect(fromEnv.settings.readOnly).toBeUndefined();
    expect(fromEnv.warnings).toEqual([]);
    expect(remote({ user: { ...userToken, "remote.url": "http://u" } }).settings).toMatchObject({ url: "http://u", token: "user-token" });
  });
});

describe("TLS files and trust", () => {
  test("a client certificate and its key go together", () => {
    const message = "a client certificate and its key go together (--remote-cert and --remote-key)";
    expect(refusal({ user: { "remote.cert": "/c.pem" } })).toBe(message);
    expect(refusal({ user: { "remote.key": "/k.pem" } })).toBe(message);
    expect(remote({ user: { "remote.cert": "/c.pem", "remote.key": "/k.pem", "remote.cacert": "/ca.pem" } }).settings).toMatchObject({ cert: "/c.pem", key: "/k.pem", cacert: "/ca.pem" });
  });

  test("an empty trust list is no list (any result); keys are passed on", () => {
    expect(remote({ user: { "remote.trust": [] } }).settings.trust).toBeUndefined();
    expect(remote({ user: { "remote.trust": ["k1", "k2"], "remote.signKey": "/sign.key" } }).settings).toMatchObject({ trust: ["k1", "k2"], signKey: "/sign.key" });
  });
});
