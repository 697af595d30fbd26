import { describe, expect, test } from "bun:test";
import { seccompProfile } from "./seccomp.ts";
import { runtimeConfig, type ContainerSpec } from "./runtime.ts";

type Rule = { names: string[]; errnoRet: number; args?: { index: number; value: number; valueTwo: number; op: string }[] };

/** Whether the filter refuses personality(value). */
const personalityRefused = (value: bigint): boolean => verdict("personality", value) !== undefined;

/**
 * What the filter answers a call with, as the kernel would run it: the errno of the first rule
 * that names the call and whose conditions all hold, or undefined (allowed). An action or a
 * comparison the runtime does not know fails the RUN there, so it fails here.
 */
function verdict(name: string, arg0 = 0n): number | undefined {
  const rules = (seccompProfile("x64") as { syscalls: (Rule & { action: string })[] }).syscalls;
  for (const rule of rules) {
    if (rule.action !== "SCMP_ACT_ERRNO") throw new Error(`unknown action ${rule.action}`);
    if (!rule.names.includes(name)) continue;
    const holds = (rule.args ?? []).every((arg) => {
      if (arg.index !== 0) throw new Error(`a condition on argument ${arg.index}`);
      if (arg.op === "SCMP_CMP_GT") return arg0 > BigInt(arg.value);
      if (arg.op === "SCMP_CMP_MASKED_EQ") return (arg0 & BigInt(arg.value)) === BigInt(arg.valueTwo);
      throw new Error(`unknown comparison ${arg.op}`);
    });
    if (holds) return rule.errnoRet;
  }
  return undefined;
}

const EPERM = 1;
const ENOSYS = 38;
/** linux/sched.h: the namespace flags, and what fork (SIGCHLD) and pthread_create pass. */
const NAMESPACE_FLAGS = { NEWNS: 0x20000n, NEWCGROUP: 0x2000000n, NEWUTS: 0x4000000n, NEWIPC: 0x8000000n, NEWUSER: 0x10000000n, NEWPID: 0x20000000n, NEWNET: 0x40000000n };
const SIGCHLD = 17n;
const THREAD_FLAGS = 0x3d0f00n;

describe("seccompProfile", () => {
  test("the calls that escape the container or reach the whole machine are refused with EPERM, whatever their arguments", () => {
    const refused = [
      "setns", "add_key", "keyctl", "request_key", "io_uring_setup", "io_uring_enter", "io_uring_register", "userfaultfd", "bpf", "perf_event_open", "lookup_dcookie",
      "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "create_module", "query_module", "get_kernel_syms", "open_by_handle_at",
      "mount", "umount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
      "settimeofday", "stime", "clock_settime", "clock_settime64", "swapon", "swapoff", "reboot", "acct", "quotactl", "quotactl_fd", "syslog", "ioperm", "iopl", "vhangup", "nfsservctl",
      "uselib", "ustat", "sysfs", "_sysctl", "vm86", "vm86old",
    ];
    for (const name of refused) for (const arg of [0n, 1n, 0xffffffffn]) expect([name, arg, verdict(name, arg)]).toEqual([name, arg, EPERM]);
    // clone3's flags are out of the filter's sight: "not implemented" sends glibc to clone.
    expect(verdict("clone3")).toBe(ENOSYS);
    // Everything else is allowed: it is a deny list.
    for (const name of ["read", "openat", "execve", "clock_gettime", "mkdir", "chroot"]) expect([name, verdict(name)]).toEqual([name, undefined]);
  });

  test("clone and unshare: any namespace flag, alone or among others, is refused; fork, threads and unsharing files pass", () => {
    for (const [flag, value] of Object.entries(NAMESPACE_FLAGS)) {
      for (const call of ["clone", "unshare"]) {
        expect([call, flag, verdict(call, value)]).toEqual([call, flag, EPERM]);
        expect([call, flag, verdict(call, value | SIGCHLD | 0x400n)]).toEqual([call, flag, EPERM]);
      }
    }
    expect(verdict("clone", SIGCHLD)).toBeUndefined();
    expect(verdict("clone", THREAD_FLAGS)).toBeUndefined();
    expect(verdict("unshare", 0x400n)).toBeUndefined();
    // CLONE_NEWTIME is unshare's only: in clone's flags 0x80 is part of the exit signal.
    expect(verdict("unshare", 0x80n)).toBe(EPERM);
    expect(verdict("clone", 0x80n | SIGCHLD)).toBeUndefined();
  });


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
