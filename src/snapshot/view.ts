/**
 * A read-only view of a root filesystem made of snapshot directories (bottom first), the way
 * overlayfs would merge them: whiteouts hide, opaque directories hide what is below them.
 * Enough to read /etc/passwd or ask "is /app a directory?" without mounting anything.
 */
import { UserError } from "../errors.ts";
import { Root, type Stat } from "../rootfs/root.ts";
import { OVERLAY_OPAQUE } from "../sys/libc.ts";

export class LayerView {
  /** `layers` are snapshot directories, bottom (base) first. */
  constructor(readonly layers: string[]) {}

  /**
   * The layer that provides `path` (absolute in the image) and its entry, or undefined when it
   * does not exist. A symlink on the way ends the search: this view never follows links (it
   * reads /etc/passwd and /etc/group, which real images keep as plain files).
   */
  locate(path: string): { layer: string; stat: Stat } | undefined {
    const parts = path.split("/").filter(Boolean);
    for (let i = this.layers.length - 1; i >= 0; i--) {
      const layer = this.layers[i];
      const found = Root.with(layer, (root): { stat?: Stat; stop: boolean } => {
        let hiddenBelow = false;
        for (let depth = 1; depth < parts.length; depth++) {
          const prefix = parts.slice(0, depth).join("/");
          const ancestor = root.lstat(prefix);
          if (!ancestor) continue;
          if (ancestor.isWhiteout() || !ancestor.isDirectory()) return { stop: true };
          if (root.getXattr(prefix, OVERLAY_OPAQUE)?.toString() === "y") hiddenBelow = true;
        }
        const stat = parts.length ? root.lstat(parts.join("/")) : root.lstat("/");
        if (stat) return stat.isWhiteout() ? { stop: true } : { stat, stop: true };
        return { stop: hiddenBelow };
      }, { symlinks: "none" });
      if (found.stat) return { layer, stat: found.stat };
      if (found.stop) return undefined;
    }
    return undefined;
  }

  readFile(path: string): string | undefined {
    const found = this.locate(path);
    if (!found || !found.stat.isFile()) return undefined;
    return Root.with(found.layer, (root) => root.readFile(path)?.toString("utf8"), { symlinks: "none" });
  }

  isDirectory(path: string): boolean {
    return this.locate(path)?.stat.isDirectory() ?? false;
  }
}

export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
}

export class UserResolutionError extends UserError {}

function parseDatabase(text: string | undefined): string[][] {
  return (text ?? "").split("\n").filter((line) => line && !line.startsWith("#")).map((line) => line.split(":"));
}

/**
 * `USER name[:group]` or `uid[:gid]` → numeric ids, through the image's /etc/passwd and
 * /etc/group (as Docker does). A numeric uid need not exist; a name must.
 */
export function resolveUser(spec: string | undefined, readFile: (path: string) => string | undefined): ResolvedUser {
  if (!spec) return { uid: 0, gid: 0, additionalGids: [] };
  const [userPart, groupPart] = spec.split(":", 2);
  const passwd = parseDatabase(readFile("/etc/passwd"));
  const groups = parseDatabase(readFile("/etc/group"));
  let uid: number;
  let gid = 0;
  let name: string | undefined;
  if (/^\d+$/.test(userPart)) {
    uid = Number(userPart);
    const entry = passwd.find((e) => Number(e[2]) === uid);
    if (entry) {
      gid = Number(entry[3]);
      name = entry[0];
    }
  } else {
    const entry = passwd.find((e) => e[0] === userPart);
    if (!entry) throw new UserResolutionError(`unable to find user ${userPart}: no matching entries in the image's /etc/passwd`);
    uid = Number(entry[2]);
    gid = Number(entry[3]);
    name = entry[0];
  }
  if (groupPart !== undefined) {
    if (/^\d+$/.test(groupPart)) gid = Number(groupPart);
    else {
      const group = groups.find((g) => g[0] === groupPart);
      if (!group) throw new UserResolutionError(`unable to find group ${groupPart}: no matching entries in the image's /etc/group`);
      gid = Number(group[2]);
    }
  }
  const additionalGids =
    groupPart === undefined && name !== undefined
      ? groups.filter((g) => (g[3] ?? "").split(",").includes(name!)).map((g) => Number(g[2])).filter((g) => g !== gid)
      : [];
  return { uid, gid, additionalGids };
}
