/**
 * RUN for another architecture, as BuildKit does it: the kernel hands that architecture's
 * programs to QEMU's user-mode emulator through binfmt_misc. The handler must be registered with
 * the F flag (the kernel opens the interpreter once, at registration), so it is found from inside
 * any container root, where /usr/bin/qemu-*-static does not exist. Debian's qemu-user-static
 * ships the emulators and their binfmt_misc lines (/usr/lib/binfmt.d/qemu-ARCH.conf, flags OCF
 * or OPF); when no handler is registered, MemoBuild registers that line itself, as
 * `update-binfmts`/`systemd-binfmt` would, since the build runs as root.
 */
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { UserError } from "../errors.ts";
import { readRegularFile } from "../util/host-file.ts";
import { formatPlatform, type Platform } from "../frontend/platform.ts";
import { mount } from "../sys/libc.ts";

/** OCI architecture → QEMU's name for it (qemu-ARCH-static, binfmt entry qemu-ARCH). */
const QEMU_ARCH: Record<string, string> = {
  amd64: "x86_64",
  arm64: "aarch64",
  arm: "arm",
  "386": "i386",
  ppc64le: "ppc64le",
  s390x: "s390x",
  riscv64: "riscv64",
  mips64le: "mips64el",
  loong64: "loongarch64",
};

export interface EmulationPaths {
  binfmt: string;
  /** Where binfmt_misc lines are found, in order (a package's, then the administrator's). */
  confDirs: string[];
}

const SYSTEM: EmulationPaths = { binfmt: "/proc/sys/fs/binfmt_misc", confDirs: ["/usr/lib/binfmt.d", "/etc/binfmt.d"] };

const ready = new Set<string>();

/** Makes sure programs of `platform` run here (emulated); a UserError says what is missing. */
export function ensureEmulation(platform: Platform, paths: EmulationPaths = SYSTEM): void {
  const arch = QEMU_ARCH[platform.architecture];
  const wanted = formatPlatform(platform);
  if (!arch) throw new UserError(`RUN for ${wanted}: MemoBuild knows no QEMU emulator for the architecture ${platform.architecture}`);
  if (paths === SYSTEM && ready.has(arch)) return;
  mountBinfmt(paths.binfmt, wanted);
  const entry = join(paths.binfmt, `qemu-${arch}`);
  if (existsSync(entry)) checkEntry(entry, wanted);
  else register(paths, arch, wanted);
  if (paths === SYSTEM) ready.add(arch);
}

/** binfmt_misc is a file system of its own; a host (or container) may not have mounted it. */
function mountBinfmt(dir: string, wanted: string) {
  if (existsSync(join(dir, "register"))) return;
  try {
    mount("binfmt_misc", dir, "binfmt_misc", 0, null);
  } catch (error) {
    throw new UserError(`RUN for ${wanted} needs binfmt_misc, which is not mounted at ${dir} and could not be mounted (${(error as Error).message}): mount -t binfmt_misc binfmt_misc ${dir}`);
  }
}

/** A binfmt_misc entry or a package's binfmt line: small text files of the host's own, read bounded. */
function readSystemFile(path: string): string {
  return readRegularFile(path, { limit: 64 * 1024, follow: true }).toString("utf8");
}

/** A handler someone registered: it must be on, and carry F to work inside a container root. */
function checkEntry(entry: string, wanted: string) {
  const text = readSystemFile(entry);
  if (!/^enabled$/m.test(text)) throw new UserError(`RUN for ${wanted}: the binfmt_misc handler ${entry} is disabled (echo 1 > ${entry})`);
  const flags = /^flags: *(\S*)$/m.exec(text)?.[1] ?? "";
  if (!flags.includes("F")) {
    throw new UserError(`RUN for ${wanted}: the binfmt_misc handler ${entry} is registered without the F flag, so its interpreter cannot be found inside a container; register it again with F (echo -1 > ${entry}, then update-binfmts or systemd-binfmt with qemu-user-static's line)`);
  }
}

/** Registers qemu-user-static's line for `arch`, with F added when it lacks it. */
function register(paths: EmulationPaths, arch: string, wanted: string) {
  const conf = paths.confDirs.map((dir) => join(dir, `qemu-${arch}.conf`)).find((file) => existsSync(file));
  if (!conf) {
    throw new UserError(`RUN for ${wanted} needs QEMU user-mode emulation: install Debian's qemu-user-static (apt-get install qemu-user-static), which provides qemu-${arch}-static and its binfmt_misc line (no qemu-${arch}.conf in ${paths.confDirs.join(" or ")})`);
  }
  const line = readSystemFile(conf).split("\n").find((l) => l.startsWith(":"));
  const fields = line?.split(":");
  // :name:type:offset:magic:mask:interpreter:flags
  if (!fields || fields.length !== 8) throw new UserError(`${conf}: not a binfmt_misc line (:name:type:offset:magic:mask:interpreter:flags)`);
  if (!existsSync(fields[6]!)) throw new UserError(`RUN for ${wanted}: ${conf} names the emulator ${fields[6]}, which is not installed (apt-get install --reinstall qemu-user-static)`);
  if (!fields[7]!.includes("F")) fields[7] += "F";
  try {
    writeFileSync(join(paths.binfmt, "register"), fields.join(":"));
  } catch (error) {
    // Another build may have registered it meanwhile: then it is there.
    if (existsSync(join(paths.binfmt, `qemu-${arch}`))) return;
    throw new UserError(`RUN for ${wanted}: registering ${conf} in ${paths.binfmt} failed (${(error as Error).message}); it needs root in the host's user namespace`);
  }
}
