import { afterAll, describe, expect, test } from "bun:test";
import Ajv from "ajv";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { remoteSettings } from "./remote.ts";
import { configSchema, findProjectFile, loadLayers, readConfigFile, resolveSettings, SETTINGS, SETTING_KEYS } from "./settings.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-settings-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function project(config: object, user?: object) {
  const root = mkdtempSync(join(work, "s-"));
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
    const outer = mkdtempSync(join(work, "s-"));
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
      const dir = mkdtempSync(join(work, "s-"));
      writeFileSync(join(dir, "memobuild.json"), typeof content === "string" ? content : JSON.stringify(content));
      expect(() => readConfigFile(join(dir, "memobuild.json"), "project")).toThrow(message);
    });
  }

  test("a file larger than 1 MiB is refused without being read", () => {
    const dir = mkdtempSync(join(work, "s-"));
    writeFileSync(join(dir, "memobuild.json"), " ".repeat(1024 * 1024 + 1));
    expect(() => readConfigFile(join(dir, "memobuild.json"), "project")).toThrow("larger than 1048576 bytes");
  });

  test("a bad environment variable names it", () => {
    expect(() => resolveSettings({}, { env: { MEMOBUILD_JOBS: "many" } })).toThrow('$MEMOBUILD_JOBS: expected a whole number of at least 1, not "many"');
  });
});

describe("a project file, which comes with the repository, cannot reach credentials or the host", () => {
  for (const key of ["cacheDir", "signKey", "remote.token", "remote.signKey", "remote.cacert", "remote.cert", "remote.key"]) {
    test(`${key} is refused in a project file and accepted in the user file`, () => {
      const dir = mkdtempSync(join(work, "s-"));
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

describe("a project file's paths stay in the project's directory, symlinks resolved as the kernel would", () => {
  const repo = () => {
    const root = mkdtempSync(join(work, "confine-"));
    mkdirSync(join(root, "repo/docker"), { recursive: true });
    writeFileSync(join(root, "repo/docker/Dockerfile"), "FROM scratch\n");
    writeFileSync(join(root, "secret"), "root:x:0:0\n");
    return root;
  };
  const read = (root: string, config: object) => {
    writeFileSync(join(root, "repo/memobuild.json"), JSON.stringify(config));
    return () => readConfigFile(join(root, "repo/memobuild.json"), "project");
  };

  test("inside: relative, through a link that stays inside, not yet existing", () => {
    const root = repo();
    symlinkSync("docker", join(root, "repo/d"));
    expect(read(root, { context: "docker", dockerfile: "d/Dockerfile" })()).toEqual({ context: join(root, "repo/docker"), dockerfile: join(root, "repo/d/Dockerfile") });
    expect(read(root, { context: ".", dockerfile: "docker/../new/Dockerfile" })().dockerfile).toBe(join(root, "repo/new/Dockerfile"));
    symlinkSync(join(root, "repo/docker/later"), join(root, "repo/dangling-in"));
    expect(read(root, { dockerfile: "dangling-in" })().dockerfile).toBe(join(root, "repo/dangling-in"));
  });

  test("outside: an absolute path, .., a link out (also a dangling one, or one in the middle) — the error names the file and key", () => {
    const root = repo();
    const file = join(root, "repo/memobuild.json");
    expect(read(root, { context: "/home/ci/.docker" })).toThrow(`${file}: context: /home/ci/.docker is outside the project's directory ${join(root, "repo")}; a project file comes with the repository`);
    expect(read(root, { dockerfile: "/etc/shadow" })).toThrow(`${file}: dockerfile: /etc/shadow is outside the project's directory`);
    expect(read(root, { dockerfile: "../secret" })).toThrow("dockerfile: ../secret is outside");
    symlinkSync(join(root, "secret"), join(root, "repo/Dockerfile.link"));
    expect(read(root, { dockerfile: "Dockerfile.link" })).toThrow(`dockerfile: Dockerfile.link is outside the project's directory ${join(root, "repo")} (it resolves to ${join(root, "secret")})`);
    symlinkSync("/", join(root, "repo/up"));
    expect(read(root, { context: "up/etc" })).toThrow("(it resolves to /etc)");
    symlinkSync("/nonexistent/elsewhere", join(root, "repo/dangling-out"));
    expect(read(root, { dockerfile: "dangling-out/Dockerfile" })).toThrow("(it resolves to /nonexistent/elsewhere/Dockerfile)");
    // The user's own file may name any path.
    writeFileSync(join(root, "user.json"), JSON.stringify({ dockerfile: "/etc/shadow" }));
    expect(readConfigFile(join(root, "user.json"), "user").dockerfile).toBe("/etc/shadow");
  });
});

describe("a project file is read as a small regular file, and its text is never echoed", () => {
  const setup = () => {
    const dir = mkdtempSync(join(work, "read-"));
    mkdirSync(join(dir, ".git"));
    return dir;
  };

  test("linked to /dev/zero or to a token file: refused as a link, nothing read", () => {
    const dir = setup();
    symlinkSync("/dev/zero", join(dir, "memobuild.json"));
    expect(() => loadLayers(dir, {})).toThrow(`${join(dir, "memobuild.json")} is a symbolic link: not followed (name the file itself); a project file must be the file itself`);
    const token = join(dir, "token");
    writeFileSync(token, "ghp_TOKEN0123456789");
    rmSync(join(dir, "memobuild.json"));
    symlinkSync(token, join(dir, "memobuild.json"));
    let message = "";
    try {
      loadLayers(dir, {});
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain("is a symbolic link");
    expect(message).not.toContain("ghp_");
  });

  test("a FIFO or a device is refused at once; a parse error says where, not what", () => {
    const dir = setup();
    expect(Bun.spawnSync(["mkfifo", join(dir, "memobuild.json")]).exitCode).toBe(0);
    expect(() => loadLayers(dir, {})).toThrow(`${join(dir, "memobuild.json")} is a FIFO, not a regular file`);
    rmSync(join(dir, "memobuild.json"));
    writeFileSync(join(dir, "memobuild.json"), '{\n  "tags": [ghp_TOKEN0123456789]\n}');
    expect(() => loadLayers(dir, {})).toThrow(`${join(dir, "memobuild.json")}: not valid JSON (line 2, column 12); its content is not shown`);
  });

  test("the user's own file may be a link (dotfile managers), and is still bounded", () => {
    const dir = setup();
    mkdirSync(join(dir, "xdg/memobuild"), { recursive: true });
    writeFileSync(join(dir, "real.json"), JSON.stringify({ jobs: 4 }));
    symlinkSync(join(dir, "real.json"), join(dir, "xdg/memobuild/config.json"));
    expect(loadLayers(join(dir, "xdg"), { XDG_CONFIG_HOME: join(dir, "xdg") }).user?.values.jobs).toBe(4);
    rmSync(join(dir, "xdg/memobuild/config.json"));
    symlinkSync("/dev/zero", join(dir, "xdg/memobuild/config.json"));
    expect(() => loadLayers(join(dir, "xdg"), { XDG_CONFIG_HOME: join(dir, "xdg") })).toThrow("is a character device, not a regular file");
  });
});

describe("a project file's remote.trust can only narrow the user's", () => {
  test("kept as it is when the user trusts every result; intersected with the user's list; nothing in common is refused", () => {
    const open = project({ remote: { trust: ["ed25519:ci", "ed25519:attacker"] } });
    expect(resolveSettings({}, loadLayers(open.cwd, open.env))["remote.trust"].value).toEqual(["ed25519:ci", "ed25519:attacker"]);
    const narrowed = project({ remote: { trust: ["ed25519:ci", "ed25519:attacker"] } }, { remote: { trust: ["ed25519:ci", "ed25519:other"] } });
    expect(resolveSettings({}, loadLayers(narrowed.cwd, narrowed.env))["remote.trust"]).toMatchObject({ value: ["ed25519:ci"], source: "project" });
    const widened = project({ remote: { trust: ["ed25519:attacker"] } }, { remote: { trust: ["ed25519:ci"] } });
    expect(() => resolveSettings({}, loadLayers(widened.cwd, widened.env))).toThrow(
      `${join(widened.root, "repo/memobuild.json")}: remote.trust: none of its keys is on your own trust list (${join(widened.root, "xdg/memobuild/config.json")}); a project file can only narrow that list, never replace it`,
    );
    // The environment and flags are the user's: they replace the list as before.
    expect(resolveSettings({}, loadLayers(widened.cwd, { ...widened.env, MEMOBUILD_REMOTE_TRUST: "ed25519:x" }))["remote.trust"].value).toEqual(["ed25519:x"]);
  });
});

describe("every value a project file may set is harmless, confined or narrowed", () => {
  /** Each key a project file may set, and what keeps it from widening what the user allowed. */
  const PROJECT_KEYS: Record<string, string> = {
    dockerfile: "confined: inside the project's directory",
    context: "confined: inside the project's directory",
    target: "harmless: a stage of the project's own Dockerfile",
    tags: "narrowed: only new names or the project's own (src/cli/project-tags.ts)",
    buildArgs: "harmless: what the project's own Dockerfile may declare anyway",
    progress: "harmless: display",
    jobs: "harmless: parallel stages of the project's own build",
    "remote.url": "narrowed: a server only the project names is used read-only: no token, result or report goes there (remote.ts)",
    "remote.required": "harmless: can only make the build fail",
    "remote.upload": "harmless: when, not what, is uploaded",
    "remote.report": "harmless: reports go to remote.url, under its rule",
    "remote.trust": "narrowed: intersected with the user's list",
    "remote.cacheMounts": "narrowed: read or off only; on from a project file is an error (cacheMountChoice, src/cli/remote.ts)",
  };

  test("the list above is every key a project file may set (a new one needs a decision here)", () => {
    expect(SETTING_KEYS.filter((key) => SETTINGS[key].project).sort() as string[]).toEqual(Object.keys(PROJECT_KEYS).sort());
  });

  test("every path a project file may set is refused outside the project", () => {
    const dir = mkdtempSync(join(work, "paths-"));
    for (const key of SETTING_KEYS.filter((k) => SETTINGS[k].project && (SETTINGS[k].kind as { path?: boolean }).path)) {
      writeFileSync(join(dir, "memobuild.json"), JSON.stringify({ [key]: "/etc" }));
      expect(() => readConfigFile(join(dir, "memobuild.json"), "project")).toThrow(`${key}: /etc is outside the project's directory`);
    }
  });
});
