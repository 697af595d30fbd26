/**
 * Bundles the dashboard's browser code when the server is compiled or loaded: a Bun macro
 * (imported `with { type: "macro" }`), so the script is a string inside the binary and no
 * generated file is kept anywhere. Bun.build cannot run inside a macro; the CLI can.
 */
export function bundleDashboard(): string {
  const entry = `${import.meta.dir}/ui/main.ts`;
  const result = Bun.spawnSync([process.execPath, "build", entry, "--target=browser", "--format=esm", "--minify"]);
  if (result.exitCode !== 0) throw new Error(`bundling the dashboard failed:\n${result.stderr.toString()}`);
  return result.stdout.toString();
}
