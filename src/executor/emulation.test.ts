/**
 * Emulation for another architecture's RUN, against a binfmt_misc directory and binfmt.d
 * directories made here (the real ones belong to the machine): a missing package is named,
 * qemu-user-static's line is registered with the F flag, and a handler without F is refused.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureEmulation, type EmulationPaths } from "./emulation.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-emulation-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const arm64 = { os: "linux", architecture: "arm64" };
const LINE = ":qemu-aarch64:M::\\x7fELF\\x02:\\xff\\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OP";

let n = 0;
/** A binfmt_misc stand-in (its register is a plain file) and an empty binfmt.d. */
function paths(): EmulationPaths & { conf: string } {
  const dir = join(work, String(++n));
  mkdirSync(join(dir, "binfmt"), { recursive: true });
  mkdirSync(join(dir, "conf"));
  writeFileSync(join(dir, "binfmt", "register"), "");
  return { binfmt: join(dir, "binfmt"), confDirs: [join(dir, "conf")], conf: join(dir, "conf") };
}

describe("ensureEmulation", () => {
  test("without qemu-user-static: the error names the package and what it provides", () => {
    expect(() => ensureEmulation(arm64, paths())).toThrow(/RUN for linux\/arm64 needs QEMU user-mode emulation: install Debian's qemu-user-static .*qemu-aarch64-static/);
  });

  test("qemu-user-static's line is registered, with F added so the emulator is found inside a container root", () => {
    const p = paths();
    const emulator = join(p.conf, "qemu-aarch64-static");
    writeFileSync(emulator, "");
    writeFileSync(join(p.conf, "qemu-aarch64.conf"), `# a comment\n${LINE.replace("/usr/libexec/qemu-binfmt/aarch64-binfmt-P", emulator)}\n`);
    ensureEmulation(arm64, p);
    expect(readFileSync(join(p.binfmt, "register"), "utf8")).toBe(LINE.replace("/usr/libexec/qemu-binfmt/aarch64-binfmt-P", emulator) + "F");
  });

  test("a line naming an emulator that is not installed is an error naming it", () => {
    const p = paths();
    const missing = join(p.conf, "qemu-aarch64-static");
    writeFileSync(join(p.conf, "qemu-aarch64.conf"), LINE.replace("/usr/libexec/qemu-binfmt/aarch64-binfmt-P", missing));
    expect(() => ensureEmulation(arm64, p)).toThrow(`names the emulator ${missing}, which is not installed`);
  });

  test("a registered handler: enabled with F is used as it is; without F, or disabled, is refused with how to fix it", () => {
    const p = paths();
    const entry = join(p.binfmt, "qemu-aarch64");
    writeFileSync(entry, "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\noffset 0\n");
    ensureEmulation(arm64, p);
    expect(readFileSync(join(p.binfmt, "register"), "utf8")).toBe("");
    writeFileSync(entry, "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: OC\n");
    expect(() => ensureEmulation(arm64, p)).toThrow("is registered without the F flag");
    writeFileSync(entry, "disabled\nflags: F\n");
    expect(() => ensureEmulation(arm64, p)).toThrow("is disabled");
  });

  test("an architecture with no known emulator is named", () => {
    expect(() => ensureEmulation({ os: "linux", architecture: "vax" }, paths())).toThrow("knows no QEMU emulator for the architecture vax");
  });
});
