/**
 * A version of a shared cache mount (`RUN --mount=type=cache`) as the remote cache stores it: a
 * manifest listing every regular file (path, mode, BLAKE3, size), whose contents are ordinary
 * blobs, so a file found in many versions, mounts or projects is stored once.
 *
 * A version is named by the BLAKE3 of its canonical text, and signed over that same text by its
 * publisher (Ed25519, as step results are). The client checks the name and the signature itself:
 * the server is not trusted to have done so. Both sides check every path, so a manifest cannot
 * name a file outside the mount.
 */
import { blake3Hex } from "../hash/blake3.ts";
import { checkTextSignature } from "./action.ts";
import type { MountLabel } from "./mount-types.ts";

export type { MountLabel, MountScopeInfo, MountVersionInfo } from "./mount-types.ts";

export const MOUNT_FORMAT = "memobuild-cache-mount-v1";

export interface MountFile {
  /** Relative to the mount's root, "/"-separated, no "." or ".." parts. */
  path: string;
  /** Permission bits only (setuid, setgid and sticky are not shared). */
  mode: number;
  blake3: string;
  size: number;
}

export interface MountManifest {
  format: typeof MOUNT_FORMAT;
  /** The scope's name on the server: a hash of the mount's identity and the --cache-mount-scope. */
  scope: string;
  label: MountLabel;
  /** The version the publisher started from (null: it started empty). */
  parent: string | null;
  created: number;
  /** Sorted by path. */
  files: MountFile[];
  signature?: { signer: string; value: string };
}

const HEX64 = /^[0-9a-f]{64}$/;

/** What a --cache-mount-scope may be: up to 128 letters, digits and . _ / -, starting with a letter or digit. */
export const SCOPE_NAME = /^[A-Za-z0-9][A-Za-z0-9._\/-]{0,127}$/;

const PRIVATE_SCOPE = "job-private/";

/**
 * The scope a worker gives the job of a submitter it does not trust (a read-only token's):
 * what is in such a scope's mounts, that submitter put there.
 */
export const privateScope = (submitter: string) => `${PRIVATE_SCOPE}${submitter}`;
export const isPrivateScope = (name: string | undefined) => name?.startsWith(PRIVATE_SCOPE) === true;

/** The one text a version's name and signature cover. */
export function canonicalText(manifest: Omit<MountManifest, "signature">): string {
  const lines = [manifest.format, `scope ${manifest.scope}`, `label ${JSON.stringify([manifest.label.id, manifest.label.scope])}`, `parent ${manifest.parent ?? "-"}`, `created ${manifest.created}`];
  for (const file of manifest.files) lines.push(`${file.mode.toString(8)} ${file.blake3} ${file.size} ${JSON.stringify(file.path)}`);
  return lines.join("\n") + "\n";
}

export const versionId = (manifest: Omit<MountManifest, "signature">) => blake3Hex(canonicalText(manifest));

/** The scope a mount's versions live in on a server. */
export function mountScope(identity: string, scopeName: string | undefined): string {
  return blake3Hex(`${MOUNT_FORMAT}\0scope\0${identity}\0${scopeName ?? ""}`);
}

/** Why a path may not be in a manifest; undefined when it may. */
export function badPath(path: unknown): string | undefined {
  if (typeof path !== "string" || path === "") return "a path must be a non-empty string";
  if (path.length > 4096 || path.includes("\0") || !path.isWellFormed()) return `path ${JSON.stringify(path.slice(0, 80))} is too long, holds a NUL or is not well-formed text`;
  if (path.startsWith("/") || path.split("/").some((part) => part === "" || part === "." || part === "..")) return `path ${JSON.stringify(path)} is not a clean relative path`;
  return undefined;
}

/**
 * Checks a manifest's shape and that `id` is its name; returns the manifest or an error naming
 * the field. The signature is checked by `signerOf`.
 */
export function parseManifest(body: unknown, id: string): { manifest: MountManifest } | { error: string } {
  const m = body as MountManifest;
  if (typeof m !== "object" || m === null) return { error: "a manifest is a JSON object" };
  if (m.format !== MOUNT_FORMAT) return { error: `format must be "${MOUNT_FORMAT}"` };
  if (typeof m.scope !== "string" || !HEX64.test(m.scope)) return { error: "scope must be 64 hex digits" };
  if (typeof m.label !== "object" || m.label === null || typeof m.label.id !== "string" || !(m.label.scope === null || typeof m.label.scope === "string")) return { error: "label must be { id: string, scope: string | null }" };
  // A NUL or a lone surrogate is text no database column (nor file name) keeps as it was signed.
  if (m.label.id.length > 256 || (m.label.scope?.length ?? 0) > 128 || [m.label.id, m.label.scope ?? ""].some((text) => text.includes("\0") || !text.isWellFormed())) {
    return { error: "label: an id is at most 256 characters, a scope 128, each well-formed text without a NUL" };
  }
  if (!(m.parent === null || (typeof m.parent === "string" && HEX64.test(m.parent)))) return { error: "parent must be null or a version id" };
  if (!Number.isSafeInteger(m.created) || m.created < 0) return { error: "created must be a time in milliseconds" };
  if (!Array.isArray(m.files)) return { error: "files must be a list" };
  let previous = "";
  const paths = new Set<string>();
  for (const [index, file] of m.files.entries()) {
    const problem = badPath(file?.path) ?? fileProblem(file);
    if (problem) return { error: `files[${index}]: ${problem}` };
    if (index > 0 && !(file.path > previous)) return { error: `files[${index}]: paths must be sorted and unique (${JSON.stringify(file.path)} after ${JSON.stringify(previous)})` };
    previous = file.path;
    paths.add(file.path);
  }
  // A path is a file or a directory, not both ("a" and "a/b").
  for (const [index, file] of m.files.entries()) {
    const parts = file.path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join("/");
      if (paths.has(parent)) return { error: `files[${index}]: ${JSON.stringify(file.path)} is below ${JSON.stringify(parent)}, which is a file` };
    }
  }
  const { signature: _, ...unsigned } = m;
  if (versionId(unsigned) !== id) return { error: `the manifest's BLAKE3 is not ${id}` };
  return { manifest: m };
}

function fileProblem(file: MountFile): string | undefined {
  if (!Number.isInteger(file.mode) || file.mode < 0 || file.mode > 0o777) return "mode must be permission bits (0 to 0777)";
  if (typeof file.blake3 !== "string" || !HEX64.test(file.blake3)) return "blake3 must be 64 hex digits";
  if (!Number.isSafeInteger(file.size) || file.size < 0) return "size must be a whole number of bytes";
  return undefined;
}

/** The verified signer of a manifest, undefined when unsigned, or why its signature is bad. */
export function signerOf(manifest: MountManifest): { signer?: string } | { error: string } {
  if (manifest.signature === undefined) return {};
  const { signature, ...unsigned } = manifest;
  return checkTextSignature(canonicalText(unsigned), signature);
}
