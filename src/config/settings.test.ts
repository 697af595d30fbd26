import { describe, expect, test } from "bun:test";
import Ajv from "ajv";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { remoteSettings } from "./remote.ts";
import { configSchema, findProjectFile, loadLayers, readConfigFile, resolveSettings } from "./settings.ts";

function project(config: object, user?: object) {
  const root = mkdtempSync(join(tmpdir(), "memobuild-settings-"));
  mkdirSync(join(root, "repo/.git"), { recursive: true });
  mkdirSync(join(root, "repo/app/src"), { recursive: true });
  writeFileSync(join(root, "repo/memobuild.json"), JSON.stringify(config));
  if (user) {
    mkdirSync(join(root, "xdg/memobuild"), { recursive: true });
    writeFileSync(join(root, "xdg/memobuild/config.json"), JSON.stringify(user));
  }
  return { root, cwd: join(root, "repo/app/src"), env: { XDG_CONFIG_HOME: join(root, "xdg") } as NodeJS.ProcessEnv };
}

describe("precedence: flags > environment > project file > user file > defaults", () => {
  const { root, cwd, env } = project({ jobs: 3, progress: "plain", target: "app", dockerfile: "docker/Dockerfile" }, { jobs: 5, progress: "json", "remote": { url: "http://user.example" }, cacheDir: "cache" });
  const layers = (extra: NodeJS.ProcessEnv = {}) => loadLayers(cwd, { ...env, ...extra });

  test("each layer wins over the next", () => {
    const s = resolveSettings({ jobs: 7 }, layers({ MEMOBUILD_JOBS: "6" }));
    expect(s.jobs).toMatchObject({ value: 7, source: "flag" });
    expect(resolveSettings({}, layers({ MEMOBUILD_JOBS: "6" })).jobs).toMatchObject({ value: 6, source: "env", origin: "$MEMOBUILD_JOBS" });
    expect(resolveSettings({}, layers()).jobs).toMatchObject({ value: 3, source: "project", origin: join(root, "repo/memobuild.json"), lower: [{ value: 5, source: "user" }] });
    expect(resolveSettings({}, layers()).cacheDir).toEqual({ value: join(root, "xdg/memobuild/cache"), source: "user", origin: join(root, "xdg/memobuild/config.json") });
    expect(resolveSettings({}, layers())["remote.upload"]).toEqual({ value: "wait", source: "default" });
  });

  test("paths in a file are relative to the file; the context is the project's directory", () => {
    const s = resolveSettings({}, layers());
    expect(s.dockerfile.value).toBe(join(root, "repo/docker/Dockerfile"));
    expect(s.context.value).toBe(join(root, "repo"));
    expect(resolveSettings({ context: "/elsewhere" }, layers()).context.value).toBe("/elsewhere");
  });

  test("the search for a project file stops at the repository's root", () => {
    const outer = mkdtempSync(join(tmpdir(), "memobuild-settings-"));
    writeFileSync(join(outer, "memobuild.json"), "{}");
    mkdirSync(join(outer, "repo/.git"), { recursive: true });
    expect(findProjectFile(join(outer, "repo"))).toBeUndefined();
    expect(findProjectFile(cwd)).toBe(join(root, "repo/memobuild.json"));
  });

  test("build args merge name by name, a flag overriding one name", () => {
    const p = project({ buildArgs: { A: "project", B: "project" } }, { buildArgs: { C: "user", A: "user" } });
    const l = loadLayers(p.cwd, p.env);
    expect(resolveSettings({ buildArgs: { B: "flag" } }, l).buildArgs.value).toEqual({ A: "project", B: "flag", C: "user" });
  });
});

describe("an invalid file names the file, the key and what is expected", () => {
  const cases: [object | string, RegExp][] = [
    ["{not json", /memobuild\.json: not valid JSON/],
    [[1], /memobuild\.json: expected a JSON object/],
    [{ jbos: 2 }, /memobuild\.json: unknown key "jbos" \(known: dockerfile, context/],
    [{ jobs: 0 }, /memobuild\.json: jobs: expected a whole number of at least 1/],
    [{ jobs: "2" }, /jobs: expected a whole number/],
    [{ progress: "fancy" }, /progress: expected one of auto, tty, plain, json, quiet/],
    [{ tags: "a:1" }, /tags: expected a list of strings/],
    [{ buildArgs: { A: 1 } }, /buildArgs: expected an object of strings/],
    [{ remote: "http://x" }, /remote: expected an object/],
    [{ remote: { required: "yes" } }, /remote\.required: expected true or false/],
  ];
  for (const [content, message] of cases) {
    test(JSON.stringify(content), () => {
      const dir = mkdtempSync(join(tmpdir(), "memobuild-settings-"));
      writeFileSync(join(dir, "memobuild.json"), typeof content === "string" ? content : JSON.stringify(content));
      expect(() => readConfigFile(join(dir, "memobuild.json"), "project")).toThrow(message);
    });
  }

  test("a file larger than 1 MiB is refused without being read", () => {
    const dir = mkdtempSync(join(tmpdir(), "memobuild-settings-"));
    writeFileSync(join(dir, "memobuild.json"), " ".repeat(1024 * 1024 + 1));
    expect(() => readConfigFile(join(dir, "memobuild.json"), "project")).toThrow("larger than 1048576 bytes");
  });

  test("a bad environment variable names it", () => {
    expect(() => resolveSettings({}, { env: { MEMOBUILD_JOBS: "many" } })).toThrow('$MEMOBUILD_JOBS: expected a whole number of at least 1, not "many"');
  });
});

describe("a project file, which comes with the repository, cannot reach credentials or the host", () => {
  for (const key of ["cacheDir", "remote.token", "remote.signKey", "remote.cacert", "remote.cert", "remote.key"]) {
    test(`${key} is refused in a project file and accepted in the user file`, () => {
      const dir = mkdtempSync(join(tmpdir(), "memobuild-settings-"));
      const [outer, inner] = key.split(".");
      const config = inner ? { [outer!]: { [inner]: "x" } } : { [key]: "x" };
      writeFileSync(join(dir, "c.json"), JSON.stringify(config));
      expect(() => readConfigFile(join(dir, "c.json"), "project")).toThrow(`"${key}" cannot be set in a project file`);
      expect(() => readConfigFile(join(dir, "c.json"), "user")).not.toThrow();
    });
  }

  test("a token from the environment or the user file is not sent to a URL the project file chose", () => {
    const p = project({ remote: { url: "http://attacker.example" } }, { remote: { token: "user-token-0123456789abcdef" } });
    const warnings: string[] = [];
    const fromUser = remoteSettings(resolveSettings({}, loadLayers(p.cwd, p.env)), (w) => warnings.push(w));
    expect(fromUser).toMatchObject({ url: "http://attacker.example", token: undefined });
    const fromEnv = remoteSettings(resolveSettings({}, loadLayers(p.cwd, { ...p.env, MEMOBUILD_TOKEN: "env-token" })), (w) => warnings.push(w));
    expect(fromEnv.token).toBeUndefined();
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toContain("not sending the token from");
    // The same token goes to a URL the environment names, and a token typed as a flag is the user's choice.
    const trusted = resolveSettings({}, loadLayers(p.cwd, { ...p.env, MEMOBUILD_REMOTE_URL: "http://cache.example" }));
    expect(remoteSettings(trusted, () => {}).token).toBe("user-token-0123456789abcdef");
    expect(remoteSettings(resolveSettings({ "remote.token": "typed" }, loadLayers(p.cwd, p.env)), () => {}).token).toBe("typed");
    // A user file that names the same server vouches for it (what `memobuild init` writes).
    const vouched = project({ remote: { url: "http://cache.example" } }, { remote: { url: "http://cache.example", token: "user-token" } });
    expect(remoteSettings(resolveSettings({}, loadLayers(vouched.cwd, vouched.env)), () => {}).token).toBe("user-token");
  });
});

describe("the JSON Schema", () => {
  const schema = configSchema();
  const ajv = new Ajv({ allErrors: true });
  const validate = ajv.compile(schema);

  test("is the one checked in for editors (regenerate: memobuild config --schema > schema/memobuild.schema.json)", () => {
    expect(JSON.parse(readFileSync(join(import.meta.dir, "../../schema/memobuild.schema.json"), "utf8"))).toEqual(schema);
  });

  test("accepts what the reader accepts and refuses what it refuses", () => {
    const good = { $schema: "./.memobuild.schema.json", dockerfile: "Dockerfile", tags: ["a:1"], buildArgs: { A: "1" }, jobs: 2, remote: { url: "http://x", upload: "background", trust: ["ed25519:abc"] } };
    expect(validate(good)).toBe(true);
    for (const bad of [{ jobs: 0 }, { jbos: 1 }, { progress: "fancy" }, { remote: { upload: "later" } }, { buildArgs: { A: 1 } }]) {
      expect(validate(bad)).toBe(false);
    }
  });
});
