/** `memobuild build --check`: the build checks on the Dockerfile, and nothing built. */
import type { LocalStore } from "../cache/store.ts";
import { lintDockerfile, type Finding } from "../frontend/lint.ts";
import { parseDockerfile } from "../frontend/parser.ts";
import { plan } from "../frontend/plan.ts";
import { hostPlatform } from "../frontend/platform.ts";
import { imageResolver } from "../solver/images.ts";
import type { DockerfileInput } from "./inputs.ts";

/** The findings, each on its own line (file:line: Rule: message), then how many. */
export function runChecks(input: DockerfileInput, buildArgs: Record<string, string>, store: LocalStore, write: (text: string) => void): Finding[] {
  const parsed = parseDockerfile(input.text, input.displayPath);
  const images = imageResolver(store);
  // Base images in the store lend their ENV, so a variable they define is not "undefined".
  const planned = plan(parsed, {
    buildArgs,
    platform: hostPlatform(),
    images: (ref) => {
      const image = images(ref, hostPlatform());
      return image ? { env: image.config.config.Env ?? [], onbuild: image.config.config.OnBuild ?? [] } : undefined;
    },
  });
  const findings = lintDockerfile(parsed, planned);
  for (const f of findings) write(`${f.file}:${f.line}: ${f.rule}: ${f.message}\n`);
  write(findings.length ? `Check complete, ${findings.length} warning(s) found.\n` : "Check complete, no warnings found.\n");
  return findings;
}
