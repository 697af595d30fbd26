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
