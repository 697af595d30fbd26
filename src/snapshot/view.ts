/**
 * A read-only view of a root filesystem made of snapshot directories (bottom first), the way
 * overlayfs would merge them: whiteouts hide, opaque directories hide what is below them.
 * Enough to read /etc/passwd or ask "is /app a directory?" without mounting anything.
 */
import { UserError } from "../errors.ts";
import { lstatSync, readFileSync, type Stats } from "node:fs";
import { join } from "node:path";
import { getXattr, OVERLAY_OPAQUE } from "./libc.ts";

const isWhiteout = (stat: Stats) => stat.isCharacterDevice() && stat.rdev === 0;

function tryLstat(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

export class LayerView {
  /** `layers` are snapshot directories, bottom (base) first. */
  constructor(readonly layers: string[]) {}

  /** Where `path` (absolute in the image) is, or undefined when it does not exist. */
  locate(path: string): { file: string; stat: Stats } | undefined {
    const parts = path.split("/").filter(Boolean);
    for (let i = this.layers.length - 1; i >= 0; i--) {
      const layer = this.layers[i];
      let hiddenBelow = false;
      for (let depth = 1; depth < parts.length; depth++) {
        const ancestor = tryLstat(join(layer, ...parts.slice(0, depth)));
        if (!ancestor) continue;
        if (isWhiteout(ancestor) || !ancestor.isDirectory()) return undefined;
        if (getXattr(join(layer, ...parts.slice(0, depth)), OVERLAY_OPAQUE)?.toString() === "y") hiddenBelow = true;
      }
      const file = join(layer, ...parts);
      const stat = tryLstat(file);
      if (stat) return isWhiteout(stat) ? undefined : { file, stat };
      if (hiddenBelow) return undefined;
    }
    return undefined;
  }

  readFile(path: string): string | undefined {
    const found = this.locate(path);
    if (!found || !found.stat.isFile()) return undefined;
    return readFileSync(found.file, "utf8");
  }

  isDirectory(path: string): boolean {
    return this.locate(path)?.stat.isDirectory() ?? false;
  }
}

/**
 * Reads a file (e.g. /etc/passwd) from a mounted root filesystem without following symlinks
 * anywhere on the path: an image's `/etc -> /` must not make us read the host's files.
 */
export function rootfsFileReader(rootfs: string): (path: string) => string | undefined {
  return (path) => {
    let current = rootfs;
    for (const part of path.split("/").filter(Boolean)) {
      current = join(current, part);
      const stat = tryLstat(current);
      if (!stat || stat.isSymbolicLink()) return undefined;
    }
    return tryLstat(current)?.isFile() ? readFileSync(current, "utf8") : undefined;
  };
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
