/**
 * Finding an image of the local store as a user names it: by a name (`app:1`), or by its image
 * ID, the config digest `build -q`, `--iidfile` and `image ls` show (`sha256:<64 hex>`, or a
 * unique prefix of it, with or without `sha256:`), as `docker run` and `docker rmi` take them.
 * A name wins over an ID prefix that reads the same, as in Docker.
 */
import type { LocalStore } from "../cache/store.ts";
import { UsageError, UserError } from "../errors.ts";
import { normalizeReference, ReferenceError } from "./reference.ts";

export interface FoundImage {
  manifestDigest: string;
  /** The canonical name it was found by; undefined when found by ID. */
  ref?: string;
  /** The image ID (config digest), when found by ID. */
  id?: string;
}

export class AmbiguousImageIdError extends UserError {}

/** `sha256:` and hex, or hex alone: what may be an image ID or a prefix of one. */
const ID_TEXT = /^(?:sha256:)?([0-9a-f]{1,64})$/;

/** Whether `text` can only be an image ID (it says `sha256:`), so it is never pulled as a name. */
export const isImageIdText = (text: string) => text.startsWith("sha256:") && ID_TEXT.test(text);

/** The image `text` names, by name or ID; undefined when none; an error when an ID prefix is ambiguous. */
export function findImage(store: LocalStore, text: string): FoundImage | undefined {
  if (!isImageIdText(text)) {
    const ref = canonicalName(text);
    const record = ref === undefined ? undefined : store.image(ref);
    if (record) return { manifestDigest: record.manifestDigest, ref };
  }
  const hex = ID_TEXT.exec(text)?.[1];
  return hex === undefined ? undefined : findById(store, hex, text);
}

function canonicalName(text: string): string | undefined {
  try {
    return normalizeReference(text);
  } catch (error) {
    if (error instanceof ReferenceError) return undefined;
    throw error;
  }
}

function findById(store: LocalStore, hex: string, text: string): FoundImage | undefined {
  const byId = new Map(store.imagesById(hex).map((r) => [r.id, r.manifestDigest]));
  // Names given before IDs were recorded (an older cache) count too.
  for (const record of store.images()) {
    const id = configDigestOf(store, record.manifestDigest);
    if (id?.startsWith(`sha256:${hex}`) && !byId.has(id)) byId.set(id, record.manifestDigest);
  }
  if (byId.size > 1) {
    const ids = [...byId.keys()].map((id) => id.slice(7, 19));
    throw new AmbiguousImageIdError(`image ID ${text} is ambiguous: ${byId.size} images start with it (${ids.join(", ")}); give more of it`);
  }
  const [found] = byId;
  return found ? { id: found[0], manifestDigest: found[1] } : undefined;
}

function configDigestOf(store: LocalStore, manifestDigest: string): string | undefined {
  try {
    return store.readJson<{ config: { digest: string } }>(manifestDigest).config.digest;
  } catch {
    return undefined; // a damaged entry names nothing
  }
}

/** The names (canonical) the store gives an image, by its manifest digest. */
export function namesOf(store: LocalStore, manifestDigest: string): string[] {
  return store
    .images()
    .filter((r) => r.manifestDigest === manifestDigest)
    .map((r) => r.ref);
}

/** The image `text` names, or a user error saying there is none. */
export function requireImage(store: LocalStore, text: string): FoundImage {
  const found = findImage(store, text);
  if (!found) throw new UsageError(`no image ${text} in the local store (give a name or an image ID from \`memobuild image ls\`)`);
  return found;
}
