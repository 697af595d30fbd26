/** OCI platforms (`os/arch[/variant]`), and the one this process runs on. */

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

const GO_ARCH: Record<string, string> = { x64: "amd64", arm64: "arm64", arm: "arm", ia32: "386", ppc64: "ppc64le", s390x: "s390x", riscv64: "riscv64" };

export function hostPlatform(): Platform {
  const architecture = GO_ARCH[process.arch] ?? process.arch;
  return { os: "linux", architecture, variant: architecture === "arm" ? "v7" : undefined };
}

/** Whether `candidate` (an index entry's platform) serves `wanted`: same OS and architecture, and variant when both name one. */
export function platformMatches(wanted: Platform, candidate?: { os?: string; architecture?: string; variant?: string }): boolean {
  if (!candidate) return false;
  return candidate.os === wanted.os && candidate.architecture === wanted.architecture && (!wanted.variant || !candidate.variant || candidate.variant === wanted.variant);
}

/** Whether a Linux binary of `p` runs on this machine natively (else RUN needs emulation). */
export function runsNatively(p: Platform): boolean {
  const host = hostPlatform();
  // An amd64 kernel runs 386 code itself (BuildKit counts it native too); arm on arm64 is emulated,
  // since not every arm64 CPU runs 32-bit code.
  return p.architecture === host.architecture || (host.architecture === "amd64" && p.architecture === "386");
}

/**
 * `--platform` as buildx reads it: a comma-separated list, each `os/arch[/variant]`, duplicates
 * dropped; `local` is this machine's. Variants are written as BuildKit normalizes them (arm64's
 * v8 is left out, arm without one is v7).
 */
export function parsePlatformList(text: string): Platform[] {
  const seen = new Map<string, Platform>();
  for (const item of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const platform = item === "local" ? hostPlatform() : normalizePlatform(parsePlatform(item));
    seen.set(formatPlatform(platform), platform);
  }
  if (!seen.size) throw new Error(`invalid platform list "${text}": name at least one, e.g. linux/amd64`);
  return [...seen.values()];
}

/** A platform as BuildKit spells it: arm64's default variant (v8) left out, arm's (v7) written. */
export function normalizePlatform(p: Platform): Platform {
  if (p.architecture === "arm64" && p.variant === "v8") return { os: p.os, architecture: p.architecture };
  if (p.architecture === "arm" && !p.variant) return { ...p, variant: "v7" };
  return p;
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join("/");
}

/** Parses `linux/amd64`, `linux/arm64/v8`; `os` alone is not a platform. */
export function parsePlatform(text: string): Platform {
  const parts = text.toLowerCase().split("/");
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === "")) {
    throw new Error(`invalid platform "${text}": use os/arch[/variant], e.g. linux/amd64`);
  }
  const architecture = parts[1] === "x86_64" ? "amd64" : parts[1] === "aarch64" ? "arm64" : parts[1];
  return { os: parts[0], architecture, variant: parts[2] };
}
