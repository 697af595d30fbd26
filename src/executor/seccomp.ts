/**
 * The seccomp filter of every RUN but a privileged one (--security=insecure), as BuildKit runs
 * every RUN under Docker's default profile. A RUN is root with Docker's default capabilities and
 * no user namespace, so the kernel's capability checks guard most of what is dangerous; this
 * filter refuses what no capability guards (user namespaces, kernel keyrings, io_uring, ...)
 * and, as a second wall, the capability-guarded calls that reach the whole machine.
 *
 * It is a deny list (everything not listed is allowed), written from what must be refused,
 * where Docker's is an allow list: a system call newer than this list is allowed, as it is
 * everywhere outside a container; the kernel's capability checks still apply to it.
 *
 * Architectures: the filter checks each call's ABI, so it lists every ABI a native program can
 * use (x86_64's programs may also make i386 and x32 calls). Programs of another architecture run
 * under QEMU's user-mode emulator, an ordinary native process: their calls reach the kernel, and
 * so this filter, as the host's calls QEMU makes for them, and are refused like a native
 * program's. Listing the guest's ABI would add nothing (the kernel never reports it here).
 */

export type Rule = { names: string[]; action: "SCMP_ACT_ERRNO"; errnoRet: number; args?: Condition[] };
type Condition = { index: number; value: number; valueTwo: number; op: "SCMP_CMP_MASKED_EQ" | "SCMP_CMP_GT" };

const EPERM = 1;
/** ENOSYS on x86 and on arm64/arm (asm-generic): "not implemented", so callers fall back. */
const ENOSYS = 38;

/** The namespace flags of clone and unshare (linux/sched.h). */
const CLONE_NEWNS = 0x00020000;
const CLONE_NEWCGROUP = 0x02000000;
const CLONE_NEWUTS = 0x04000000;
const CLONE_NEWIPC = 0x08000000;
const CLONE_NEWUSER = 0x10000000;
const CLONE_NEWPID = 0x20000000;
const CLONE_NEWNET = 0x40000000;
/** Only in unshare's flags: in clone's, 0x80 is part of the exit signal. */
const CLONE_NEWTIME = 0x00000080;
const CLONE_NAMESPACES = [CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET];

/** The personality() bits programs use: PER_LINUX32 and UNAME26 (the rest is 0, PER_LINUX). */
const USUAL_PERSONALITY_BITS = [3, 17];

/** The native ABIs by Node's name of this machine's architecture (libseccomp's names). */
const ARCHITECTURES: Record<string, string[]> = {
  x64: ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
  arm64: ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
};

const refuse = (names: string[], errnoRet = EPERM, args?: Condition[]): Rule => ({ names, action: "SCMP_ACT_ERRNO", errnoRet, ...(args ? { args } : {}) });

/** One rule per flag: a rule's conditions must all hold, and any one flag must refuse the call. */
const refuseFlags = (name: string, flags: number[]): Rule[] =>
  flags.map((flag) => refuse([name], EPERM, [{ index: 0, value: flag, valueTwo: flag, op: "SCMP_CMP_MASKED_EQ" }]));

/**
 * personality() is refused unless its value is one programs use: 0 (Linux), 0x8 (Linux32), each
 * with 0x20000 (UNAME26), and 0xffffffff, the query (Docker's list). The runtimes OR a rule's
 * comparisons of one argument (as runc does), so "none of these values" cannot be one rule; it
 * is a union of single comparisons instead, each refusing values that have bit k clear and bit
 * next(k) set, where next() runs through the other bits in a cycle (and from bits 3 and 17 into
 * it). No usual value matches one (they have no other bit set, or no bit clear); any other value
 * below 2^32 has a clear bit k where next(k) is set, else its clear bits would be closed under
 * next() and so hold every other bit or none of them. Above 2^32 all are refused (the kernel
 * reads 32 bits; glibc passes the query as 0xffffffff, as Docker's rule expects).
 */
export function personalityRules(): Rule[] {
  const others = [...Array(32).keys()].filter((bit) => !USUAL_PERSONALITY_BITS.includes(bit));
  const next = (bit: number) => others[(others.indexOf(bit) + 1) % others.length]!;
  return [
    refuse(["personality"], EPERM, [{ index: 0, value: 0xffffffff, valueTwo: 0, op: "SCMP_CMP_GT" }]),
    ...[...Array(32).keys()].map((bit) => {
      const set = 2 ** next(bit);
      return refuse(["personality"], EPERM, [{ index: 0, value: 2 ** bit + set, valueTwo: set, op: "SCMP_CMP_MASKED_EQ" }]);
    }),
  ];
}

const RULES: Rule[] = [
  // New namespaces. Without a user namespace the others need CAP_SYS_ADMIN, which a RUN lacks;
  // a user namespace needs nothing (Debian allows them unprivileged) and gives every capability
  // over the namespaces made with it: the kernel code behind mount, netfilter, ... opens to the
  // RUN, and its capability set no longer bounds it. Refused by flag, so fork and threads work.
  ...refuseFlags("clone", CLONE_NAMESPACES),
  ...refuseFlags("unshare", [...CLONE_NAMESPACES, CLONE_NEWTIME]),
  // clone3 passes its flags in memory, which a filter cannot read: ENOSYS makes glibc (and
  // others) fall back to clone, whose flags are checked above.
  refuse(["clone3"], ENOSYS),
  // Joining another namespace (needs CAP_SYS_ADMIN; a second wall like the ones below).
  refuse(["setns"]),
  // Kernel keyrings are not namespaced: keys are shared with the host and other containers.
  refuse(["add_key", "keyctl", "request_key"]),
  // io_uring performs calls asynchronously, out of this filter's sight, and has been a steady
  // source of kernel privilege escalations.
  refuse(["io_uring_setup", "io_uring_enter", "io_uring_register"]),
  // userfaultfd lets a program stall the kernel at a chosen page fault: the usual tool to win
  // kernel races in exploits.
  refuse(["userfaultfd"]),
  // Programs loaded into the kernel and its tracing: large attack surface, host-wide data.
  refuse(["bpf", "perf_event_open", "lookup_dcookie"]),
  // Replacing or extending the running kernel.
  refuse(["kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "create_module", "query_module", "get_kernel_syms"]),
  // A file handle names any file of a file system, outside the container's root ("shocker").
  refuse(["open_by_handle_at"]),
  // Mounts: a RUN's file systems are set up before it starts, and nodev and the read-only /proc
  // and /sys parts hold only while it cannot remount them.
  refuse(["mount", "umount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr"]),
  // The whole machine's state: its clock, swap, power, accounting, quotas, kernel log, I/O ports.
  refuse(["settimeofday", "stime", "clock_settime", "clock_settime64", "swapon", "swapoff", "reboot", "acct", "quotactl", "quotactl_fd", "syslog", "ioperm", "iopl", "vhangup", "nfsservctl"]),
  // Obsolete calls kept only for old binaries, whose kernel code few still read.
  refuse(["uselib", "ustat", "sysfs", "_sysctl", "vm86", "vm86old"]),
  // Other personalities turn off address randomization (ADDR_NO_RANDOMIZE), map page zero or
  // make readable memory executable, helping exploits; only the ordinary ones pass.
  ...personalityRules(),
];

/**
 * The OCI `linux.seccomp` section for a RUN on this machine. On an architecture not listed in
 * ARCHITECTURES the runtime filters the native ABI only.
 */
export function seccompProfile(arch: string = process.arch): object {
  return {
    defaultAction: "SCMP_ACT_ALLOW",
    architectures: ARCHITECTURES[arch] ?? [],
    syscalls: RULES,
  };
}
