/**
 * Limits on what MemoBuild reads from outside (registries, archives, ADD URLs). Each has a name
 * and a default, and an environment variable to change it: a limit that is hit says which
 * variable raises it.
 */
import { UserError } from "../errors.ts";
import { parseSize } from "./sizes.ts";

interface Limit {
  variable: string;
  fallback: number;
  unit: "bytes" | "count" | "seconds";
}

const LIMITS = {
  /** A manifest or index (registries refuse larger ones: distribution's default is 4 MiB). */
  manifestBytes: { variable: "MEMOBUILD_MAX_MANIFEST_SIZE", fallback: 4 * 1024 * 1024, unit: "bytes" },
  /** An image config (read whole and parsed). */
  configBytes: { variable: "MEMOBUILD_MAX_CONFIG_SIZE", fallback: 8 * 1024 * 1024, unit: "bytes" },
  /** One blob (a layer) from a registry or the remote cache. */
  blobBytes: { variable: "MEMOBUILD_MAX_BLOB_SIZE", fallback: 64 * 1024 * 1024 * 1024, unit: "bytes" },
  /** One file fetched by `ADD URL`. */
  downloadBytes: { variable: "MEMOBUILD_MAX_DOWNLOAD_SIZE", fallback: 64 * 1024 * 1024 * 1024, unit: "bytes" },
  /** What one layer or ADD archive decompresses to (a small gzip can claim terabytes). */
  unpackedBytes: { variable: "MEMOBUILD_MAX_UNPACKED_SIZE", fallback: 64 * 1024 * 1024 * 1024, unit: "bytes" },
  /** Layers in one image pulled or imported (overlayfs stacks at most 500: MAX_OVERLAY_LAYERS). */
  layers: { variable: "MEMOBUILD_MAX_LAYERS", fallback: 500, unit: "count" },
  /** A network connection that sends nothing for this long is given up. */
  idleSeconds: { variable: "MEMOBUILD_NETWORK_TIMEOUT", fallback: 60, unit: "seconds" },
  /** Bringing a RUN --mount=type=cache directory up to the shared version: past this, the local copy is used. */
  cacheMountFetchSeconds: { variable: "MEMOBUILD_CACHE_MOUNT_TIMEOUT", fallback: 60, unit: "seconds" },
} satisfies Record<string, Limit>;

export type LimitName = keyof typeof LIMITS;

export function limit(name: LimitName, env: NodeJS.ProcessEnv = process.env): number {
  const { variable, fallback, unit } = LIMITS[name];
  const text = env[variable];
  if (text === undefined || text === "") return fallback;
  try {
    const value = unit === "bytes" ? parseSize(text) : Number(text);
    if (!Number.isFinite(value) || value <= 0) throw new Error("must be a positive number");
    return value;
  } catch (error) {
    throw new UserError(`${variable}=${text}: ${(error as Error).message}`);
  }
}

/** How to raise a limit, for error messages. */
export function limitHint(name: LimitName): string {
  return `(the limit is ${LIMITS[name].variable}=${limit(name)})`;
}
