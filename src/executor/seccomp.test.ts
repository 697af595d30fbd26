import { describe, expect, test } from "bun:test";
import { rangeBlocks, seccompProfile } from "./seccomp.ts";
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
  test("rangeBlocks covers exactly its range with aligned blocks", () => {
    for (const [low, high] of [[1, 7], [9, 0x1ffff], [0x20009, 0xfffffffe], [5, 5], [0, 0xffffffff]]) {
      const blocks = rangeBlocks(low!, high!);
      let next = low!;
      for (const { mask, value } of blocks) {
        expect(value).toBe(next);
        const size = 0x100000000 - mask;
        expect(value % size).toBe(0);
        next = value + size;
      }
      expect(next).toBe(high! + 1);
    }
  });

  test("personality: the usual values and the query pass, every other is refused", () => {
    for (const value of [0x0n, 0x8n, 0x20000n, 0x20008n, 0xffffffffn]) expect(personalityRefused(value)).toBe(false);
    for (const value of [0x1n, 0x7n, 0x9n, 0x40000n, 0x40008n, 0x400000n, 0x20009n, 0xfffffffen, 0x1_00000000n, 0x1_00000008n, 0xffffffff_ffffffffn]) {
      expect(personalityRefused(value)).toBe(true);
    }
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
