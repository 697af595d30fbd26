/**
 * What is installed in an image, from its own package data: dpkg's status (and distroless
 * status.d), apk's installed database, the RPM database (rpm 4.16+'s SQLite one), npm
 * package.json under node_modules, Python *.dist-info/METADATA, and the build information Go
 * writes into its binaries.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Database } from "bun:sqlite";
import { UserError } from "../errors.ts";

export type PackageType = "deb" | "apk" | "rpm" | "npm" | "pypi" | "golang";

export interface Package {
  type: PackageType;
  name: string;
  version: string;
  arch?: string;
  license?: string;
  /** The file it was found in, from the image's root. */
  source: string;
  purl: string;
}

/** Blank-line separated paragraphs of `Key: value` lines (continuations start with a space). */
function paragraphs(text: string, separator: RegExp): Map<string, string>[] {
  return text.split(/\n\s*\n/).map((block) => {
    const fields = new Map<string, string>();
    let last: string | undefined;
    for (const line of block.split("\n")) {
      if (/^[ \t]/.test(line) && last) fields.set(last, `${fields.get(last)}\n${line.trim()}`);
      else {
        const match = separator.exec(line);
        if (match) fields.set((last = match[1]!), match[2]!.trim());
      }
    }
    return fields;
  });
}

const enc = (text: string) => encodeURIComponent(text);

/** `/etc/os-release`'s ID (debian, ubuntu, alpine…), the purl namespace of system packages. */
export function osId(files: Map<string, Buffer>, fallback: string): string {
  const text = (files.get("etc/os-release") ?? files.get("usr/lib/os-release"))?.toString("utf8") ?? "";
  return /^ID="?([^"\n]+)"?$/m.exec(text)?.[1]?.toLowerCase() ?? fallback;
}

export function dpkgPackages(text: string, source: string, distro: string): Package[] {
  return paragraphs(text, /^([A-Za-z0-9-]+):(.*)$/)
    .filter((p) => p.get("Package") && p.get("Version") && (!p.has("Status") || /\binstalled$/.test(p.get("Status")!)))
    .map((p) => {
      const [name, version, arch] = [p.get("Package")!, p.get("Version")!, p.get("Architecture")];
      return { type: "deb", name, version, arch, source, purl: `pkg:deb/${distro}/${enc(name)}@${enc(version)}${arch ? `?arch=${enc(arch)}` : ""}` };
    });
}

export function apkPackages(text: string, source: string, distro: string): Package[] {
  return paragraphs(text, /^([A-Za-z]):(.*)$/)
    .filter((p) => p.get("P") && p.get("V"))
    .map((p) => {
      const [name, version, arch] = [p.get("P")!, p.get("V")!, p.get("A")];
      return { type: "apk", name, version, arch, license: p.get("L"), source, purl: `pkg:apk/${distro}/${enc(name)}@${enc(version)}${arch ? `?arch=${enc(arch)}` : ""}` };
    });
}

const RPM_TAG = { name: 1000, version: 1001, release: 1002, epoch: 1003, license: 1014, arch: 1022 } as const;

/**
 * The tags of one RPM header as the database stores it: the count of index entries and the
 * size of the data, then entries of (tag, type, offset, count), then the data. Strings (types
 * 6, 8, 9: the first of an array) end at a NUL; type 4 is a big-endian int32.
 */
export function rpmHeaderTags(blob: Buffer): Map<number, string | number> {
  const tags = new Map<number, string | number>();
  if (blob.length < 8) return tags;
  const count = blob.readUInt32BE(0);
  const data = 8 + count * 16;
  if (data > blob.length) return tags;
  for (let i = 0; i < count; i++) {
    const at = 8 + i * 16;
    const [tag, type, offset] = [blob.readUInt32BE(at), blob.readUInt32BE(at + 4), blob.readUInt32BE(at + 8)];
    const start = data + offset;
    if (start >= blob.length) continue;
    if (type === 6 || type === 8 || type === 9) {
      const end = blob.indexOf(0, start);
      tags.set(tag, blob.subarray(start, end < 0 ? blob.length : end).toString("utf8"));
    } else if (type === 4 && start + 4 <= blob.length) tags.set(tag, blob.readUInt32BE(start));
  }
  return tags;
}

/** The packages in an RPM SQLite database (with its write-ahead log, when the image has one). */
export function rpmPackages(database: Buffer, wal: Buffer | undefined, source: string, distro: string): Package[] {
  const dir = mkdtempSync(join(tmpdir(), "memobuild-rpmdb-"));
  try {
    writeFileSync(join(dir, "rpmdb.sqlite"), database);
    if (wal) writeFileSync(join(dir, "rpmdb.sqlite-wal"), wal);
    const db = new Database(join(dir, "rpmdb.sqlite"));
    try {
      const rows = db.query("SELECT blob FROM Packages ORDER BY hnum").all() as { blob: Uint8Array }[];
      return rows.flatMap((row): Package[] => {
        const tags = rpmHeaderTags(Buffer.from(row.blob));
        const [name, version, release, epoch, arch, license] = [RPM_TAG.name, RPM_TAG.version, RPM_TAG.release, RPM_TAG.epoch, RPM_TAG.arch, RPM_TAG.license].map((t) => tags.get(t));
        // gpg-pubkey entries are the signing keys rpm trusts, not software.
        if (typeof name !== "string" || typeof version !== "string" || name === "gpg-pubkey") return [];
        const full = typeof release === "string" ? `${version}-${release}` : version;
        const query = [...(typeof arch === "string" ? [`arch=${enc(arch)}`] : []), ...(typeof epoch === "number" ? [`epoch=${epoch}`] : [])];
        const purl = `pkg:rpm/${distro}/${enc(name)}@${enc(full)}${query.length ? `?${query.join("&")}` : ""}`;
        return [{ type: "rpm", name, version: full, arch: typeof arch === "string" ? arch : undefined, license: typeof license === "string" ? license : undefined, source, purl }];
      });
    } finally {
      db.close();
    }
  } catch (error) {
    throw new UserError(`SBOM: ${source} in the image is not a readable RPM database (${(error as Error).message})`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function npmPackage(text: string, source: string): Package[] {
  let json: { name?: unknown; version?: unknown; license?: unknown };
  try {
    json = JSON.parse(text);
  } catch {
    return []; // a broken package.json describes nothing
  }
  if (typeof json.name !== "string" || typeof json.version !== "string") return [];
  const [scope, bare] = json.name.startsWith("@") ? json.name.split("/", 2) : [undefined, json.name];
  const purl = `pkg:npm/${scope ? `${enc(scope)}/` : ""}${enc(bare!)}@${enc(json.version)}`;
  return [{ type: "npm", name: json.name, version: json.version, license: typeof json.license === "string" ? json.license : undefined, source, purl }];
}

export function pythonPackage(text: string, source: string): Package[] {
  const headers = paragraphs(text.split(/\n\n/)[0] ?? "", /^([A-Za-z0-9-]+):(.*)$/)[0]!;
  const [name, version] = [headers.get("Name"), headers.get("Version")];
  if (!name || !version) return [];
  const license = headers.get("License-Expression") ?? headers.get("License");
  // PEP 503 normalized name, as the pypi purl type asks.
  const normalized = name.toLowerCase().replace(/[-_.]+/g, "-");
  return [{ type: "pypi", name, version, license, source, purl: `pkg:pypi/${enc(normalized)}@${enc(version)}` }];
}

function uvarint(bytes: Buffer, at: number): [number, number] {
  let value = 0;
  for (let shift = 0, i = at; i < bytes.length && shift < 35; i++, shift += 7) {
    value += (bytes[i]! & 0x7f) * 2 ** shift;
    if (!(bytes[i]! & 0x80)) return [value, i + 1];
  }
  return [-1, at];
}

/**
 * The main module and dependencies of a Go binary (Go 1.18+ writes its build information inline:
 * the magic, pointer size, flags with bit 2 set, then two varint-prefixed strings at offset 32:
 * the Go version and the module information between 16-byte sentinels).
 */
export function goPackages(binary: Buffer, source: string): Package[] {
  const at = binary.indexOf(Buffer.from("\xff Go buildinf:", "latin1"));
  if (at < 0 || !(binary[at + 15]! & 2)) return [];
  let [length, next] = uvarint(binary, at + 32);
  if (length < 0) return [];
  const goVersion = binary.subarray(next, next + length).toString("utf8");
  // The standard library it was linked with, named as SBOM tools name it.
  const packages: Package[] = /^go[0-9.]+/.test(goVersion) ? [{ type: "golang", name: "stdlib", version: goVersion, source, purl: `pkg:golang/stdlib@${enc(goVersion)}` }] : [];
  [length, next] = uvarint(binary, next + length);
  if (length < 33) return packages;
  const info = binary.subarray(next + 16, next + length - 16).toString("utf8");
  return packages.concat(info.split("\n").flatMap((line): Package[] => {
    const [kind, path, version] = line.split("\t");
    if ((kind !== "mod" && kind !== "dep") || !path || !version || version === "(devel)") return [];
    return [{ type: "golang", name: path, version, source, purl: `pkg:golang/${path.split("/").map(enc).join("/")}@${enc(version)}` }];
  }));
}

/** Every package the files show, sorted by type, name and version (a stable document). */
export function packagesIn(files: Map<string, Buffer>): Package[] {
  const found: Package[] = [];
  for (const [path, content] of files) {
    const text = () => content.toString("utf8");
    if (path === "var/lib/dpkg/status" || path.startsWith("var/lib/dpkg/status.d/")) found.push(...dpkgPackages(text(), `/${path}`, osId(files, "debian")));
    else if (path === "lib/apk/db/installed") found.push(...apkPackages(text(), `/${path}`, osId(files, "alpine")));
    else if (path.endsWith("/rpmdb.sqlite")) found.push(...rpmPackages(content, files.get(`${path}-wal`), `/${path}`, osId(files, "unknown")));
    else if (path.endsWith("/rpmdb.sqlite-wal")) continue;
    else if (path.endsWith("/package.json")) found.push(...npmPackage(text(), `/${path}`));
    else if (path.endsWith(".dist-info/METADATA")) found.push(...pythonPackage(text(), `/${path}`));
    else if (!path.endsWith("os-release")) found.push(...goPackages(content, `/${path}`));
  }
  const order = (p: Package) => `${p.type}\0${p.name}\0${p.version}\0${p.source}`;
  return found.sort((a, b) => (order(a) < order(b) ? -1 : order(a) > order(b) ? 1 : 0));
}
