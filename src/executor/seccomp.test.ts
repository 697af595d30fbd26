import { describe, expect, test } from "bun:test";
import { seccompProfile } from "./seccomp.ts";
import { runtimeConfig, type ContainerSpec } from "./runtime.ts";

type Rule = { names: string[]; errnoRet: number; args?: { index: number; value: number; valueTwo: number; op: string }[] };

/** Whether the filter refuses personality(value), evaluated as the kernel's filter would. */
function personalityRefused(value: bigint): boolean {
  const rules = (seccompProfile("x64") as { syscalls: Rule[] }).syscalls.filter((rule) => rule.names.includes("personality"));
  return rules.some((rule) =>
    (rule.args ?? []).every((arg) => (arg.op === "SCMP_CMP_GT" ? value > BigInt(arg.value) : (value & BigInt(arg.value)) === BigInt(arg.valueTwo))),
  );
}

describe("seccompProfile", () => {
  test("personality: the usual values and the query pass, every other is refused", () => {
    for (const value of [0x0n, 0x8n, 0x20000n, 0x20008n, 0xffffffffn]) expect(personalityRefused(value)).toBe(false);
    const usual = new Set([0x0n, 0x8n, 0x20000n, 0x20008n, 0xffffffffn]);
    const values = [0x40000n, 0x40008n, 0x400000n, 0x20009n, 0x1_00000000n, 0x1_00000008n, 0xffffffff_ffffffffn];
    // Every value of one bit set or one bit clear, of one usual value with another bit flipped, and random ones.
    for (let bit = 0n; bit < 32n; bit++) values.push(1n << bit, 0xffffffffn ^ (1n << bit), ...[...usual].map((value) => value ^ (1n << bit)));
    for (let i = 0; i < 20_000; i++) values.push(BigInt(Math.floor(Math.random() * 2 ** 32)) & (Math.random() < 0.5 ? 0xffffffffn : 0x2000fn));
    for (const value of values) expect(personalityRefused(value)).toBe(!usual.has(value));
  });

  test("every ABI of this machine's architecture is listed; one unknown falls back to the native ABI", () => {
    expect((seccompProfile("x64") as { architectures: string[] }).architectures).toEqual(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
    expect((seccompProfile("arm64") as { architectures: string[] }).architectures).toEqual(["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]);
    expect((seccompProfile("riscv64") as { architectures: string[] }).architectures).toEqual([]);
  });

  test("an ordinary RUN's config carries the filter; a privileged RUN's does not", () => {
    const spec: ContainerSpec = { rootfs: "/r", args: ["true"], env: [], cwd: "/", uid: 0, gid: 0, mounts: [], network: "none" };
    const linux = (privileged: boolean) => (runtimeConfig({ ...spec, privileged }, "crun") as { linux: { seccomp?: { defaultAction: string } } }).linux;
    expect(linux(false).seccomp?.defaultAction).toBe("SCMP_ACT_ALLOW");
    expect(linux(true).seccomp).toBeUndefined();
  });
});
