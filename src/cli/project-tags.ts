/**
 * Tags from a project file. memobuild.json comes with the repository, and a name in the local
 * image store is what later, unrelated builds get for `FROM name`: a pull request that tags its
 * image `memobuild/busybox:latest` would change every build on the machine that uses it. So a
 * project file may name a new image, or retag one that the same project named before; an image
 * pulled, imported, tagged on the command line or by another project is refused. `-t` on the
 * command line is the user's choice and may replace any name.
 */
import { realpathSync } from "node:fs";
import { dirname } from "node:path";
import type { LocalStore } from "../cache/store.ts";
import type { Settings } from "../config/settings.ts";
import { UserError } from "../errors.ts";
import { familiarReference } from "../image/reference.ts";

/** The project directory that will own `tags` when they came from a project file (undefined: the user's). Refuses a name the project does not own. */
export function checkProjectTags(store: LocalStore, tags: string[], settings: Settings): string | undefined {
  const setting = settings.tags;
  if (setting.source !== "project" || !setting.origin) return undefined;
  const project = realpathSync(dirname(setting.origin));
  for (const tag of tags) {
    const existing = store.image(tag);
    if (existing && existing.project !== project) {
      const name = familiarReference(tag);
      throw new UserError(
        `${setting.origin}: tags: "${name}" names an image already in the local store that this project did not build (pulled, imported, tagged with -t or by another project); ` +
          `a project file may not replace it, as later builds that use "${name}" would get this image. To replace it, tag on the command line: -t ${name}`,
      );
    }
  }
  return project;
}
