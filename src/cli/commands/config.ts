import type { Command } from "commander";
import { resolveCacheDir } from "../../config/cache-dir.ts";
import { configSchema, displayValue, findProjectFile, SETTING_KEYS, userConfigFile } from "../../config/settings.ts";
import { commandSettings } from "../settings.ts";

export function registerConfig(program: Command) {
  program
    .command("config")
    .summary("print the effective settings and where each comes from")
    .description(
      "Print every setting a build would use and where its value comes from: a flag, the environment, the project " +
        "file (memobuild.json, from here up to the repository's root), the user file ($XDG_CONFIG_HOME/memobuild/config.json) " +
        "or the default. Tokens are shown only as set or not.",
    )
    .option("--json", "print JSON: { key: { value, source, origin } } (tokens masked)")
    .option("--schema", "print the JSON Schema of the config files (for editors)")
    .action((flags: { json?: boolean; schema?: boolean }) => {
      if (flags.schema) {
        process.stdout.write(JSON.stringify(configSchema(), null, 2) + "\n");
        return;
      }
      const settings = commandSettings({});
      if (settings.cacheDir.value === undefined) settings.cacheDir.value = resolveCacheDir();
      const rows = SETTING_KEYS.map((key) => ({ key, shown: displayValue(key, settings[key].value), ...settings[key] }));
      if (flags.json) {
        const masked = Object.fromEntries(rows.map(({ key, shown, value, source, origin }) => [key, { value: key === "remote.token" && value !== undefined ? shown : value ?? null, source, origin: origin ?? null }]));
        process.stdout.write(JSON.stringify(masked, null, 2) + "\n");
        return;
      }
      const width = Math.max(...rows.map((r) => r.key.length));
      const valueWidth = Math.min(48, Math.max(...rows.map((r) => r.shown.length)));
      for (const row of rows) process.stdout.write(`${row.key.padEnd(width)}  ${row.shown.padEnd(valueWidth)}  ${row.origin ?? row.source}\n`);
      process.stdout.write(`\nproject file: ${findProjectFile(process.cwd()) ?? "none (memobuild init writes one)"}\nuser file:    ${userConfigFile()}\n`);
    });
}
