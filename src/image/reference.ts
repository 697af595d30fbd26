/**
 * Image references, normalized the way Docker does: `busybox` → `docker.io/library/busybox:latest`,
 * `me/app` → `docker.io/me/app:latest`; a registry host is a first component with a dot or a
 * port, or `localhost`. `name@sha256:…` pins a digest.
 */
import { UserError } from "../errors.ts";

export interface ImageReference {
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
}

export class ReferenceError extends UserError {}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;

export function parseReference(text: string): ImageReference {
  let rest = text.trim();
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!/^sha256:[0-9a-f]{64}$/.test(digest)) throw new ReferenceError(`invalid digest in image reference "${text}"`);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw new ReferenceError(`invalid tag "${tag}" in image reference "${text}"`);
  }
  const parts = rest.split("/");
  let registry = "docker.io";
  if (parts.length > 1 && (parts[0].includes(".") || parts[0].includes(":") || parts[0] === "localhost")) {
    registry = parts.shift()!;
  }
  if (parts.length === 0 || parts.some((p) => !COMPONENT.test(p))) {
    throw new ReferenceError(`invalid image reference "${text}": use [registry/]name[:tag][@sha256:digest] in lowercase`);
  }
  if (registry === "docker.io" && parts.length === 1) parts.unshift("library");
  return { registry, repository: parts.join("/"), tag: tag ?? (digest ? undefined : "latest"), digest };
}

export function formatReference(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag ? `:${ref.tag}` : ""}${ref.digest ? `@${ref.digest}` : ""}`;
}

/** The canonical form used as a key in the local image store. */
export function normalizeReference(text: string): string {
  return formatReference(parseReference(text));
}

/** The short form people type: docker.io/library/ dropped. */
export function familiarReference(canonical: string): string {
  return canonical.replace(/^docker\.io\/library\//, "").replace(/^docker\.io\//, "");
}
