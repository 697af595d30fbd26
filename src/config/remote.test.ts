import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { remoteSettings } from "./remote.ts";
import { loadLayers, resolveSettings } from "./settings.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-remote-settings-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let n = 0;

/** A repository with a project file, and a user file; the settings a build in it resolves. */
function resolve(projectFile: object, userFile?: object, env: NodeJS.ProcessEnv = {}) {
  const root = join(work, `case${++n}`);
  mkdirSync(join(root, "repo/.git"), { recursive: true });
  writeFileSync(join(root, "repo/memobuild.json"), JSON.stringify(projectFile));
  if (userFile) {
    mkdirSync(join(root, "xdg/memobuild"), { recursive: true });
    writeFileSync(join(root, "xdg/memobuild/config.json"), JSON.stringify(userFile));
  }
  const warnings: string[] = [];
  const remote = remoteSettings(resolveSettings({}, loadLayers(join(root, "repo"), { XDG_CONFIG_HOME: join(root, "xdg"), ...env })), (w) => warnings.push(w));
  return { remote, warnings };
}

const TOKEN = "user-token-0123456789abcdef";

describe("a server named by the project file gets nothing the user did not send it", () => {
  test("a user file naming ANOTHER server does not vouch for the project's: no token, nothing sent", () => {
    const { remote, warnings } = resolve({ remote: { url: "http://attacker.example" } }, { remote: { url: "http://cache.example", token: TOKEN } });
    expect(remote).toMatchObject({ url: "http://attacker.example", token: undefined, readOnly: true });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain("not sending the token from");
    expect(warnings[0]).toContain("nor any result or build report");
  });

  test("the user file naming the same server vouches for it: the token goes, and so do results", () => {
    const { remote, warnings } = resolve({ remote: { url: "http://cache.example" } }, { remote: { url: "http://cache.example", token: TOKEN } });
    expect(remote.token).toBe(TOKEN);
    expect(remote.readOnly).toBeUndefined();
    expect(warnings).toEqual([]);
  });

  test("with no user file at all, the project's server is looked up only, and the user is told", () => {
    const { remote, warnings } = resolve({ remote: { url: "http://team.example" } });
    expect(remote).toMatchObject({ url: "http://team.example", readOnly: true });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain("no result and no build report is sent to it");
  });

  test("a server the environment names is the user's choice: not read-only", () => {
    const { remote, warnings } = resolve({ remote: { url: "http://team.example" } }, { remote: { token: TOKEN } }, { MEMOBUILD_REMOTE_URL: "http://mine.example" });
    expect(remote).toMatchObject({ url: "http://mine.example", token: TOKEN });
    expect(remote.readOnly).toBeUndefined();
    expect(warnings).toEqual([]);
  });
});
