/**
 * The few system calls Node's fs lacks and layers need: mknod (overlay whiteouts are 0/0
 * character devices; device and FIFO entries), extended attributes (overlay's opaque
 * directory marker), and the *at() family with openat2(2), on which the root-confined file
 * system (src/rootfs) is built. Through bun:ffi, which works inside the compiled binary.
 */
import { dlopen, FFIType, ptr, read, type Pointer } from "bun:ffi";
import { constants as fsConstants } from "node:fs";
import { constants as osConstants } from "node:os";

let libc: ReturnType<typeof open> | undefined;

function open() {
  return dlopen("libc.so.6", {
    mknod: { args: [FFIType.ptr, FFIType.u32, FFIType.u64], returns: FFIType.i32 },
    lsetxattr: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 },
    lgetxattr: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
    getxattr: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
    setxattr: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 },
    flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    mount: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
    umount2: { args: [FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
    syscall: { args: [FFIType.i64, FFIType.i64, FFIType.ptr, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
    mkdirat: { args: [FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    symlinkat: { args: [FFIType.ptr, FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
    linkat: { args: [FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
    unlinkat: { args: [FFIType.i32, FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
    renameat: { args: [FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
    fchownat: { args: [FFIType.i32, FFIType.ptr, FFIType.u32, FFIType.u32, FFIType.i32], returns: FFIType.i32 },
    utimensat: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
    mknodat: { args: [FFIType.i32, FFIType.ptr, FFIType.u32, FFIType.u64], returns: FFIType.i32 },
    readlinkat: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
    statx: { args: [FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.u32, FFIType.ptr], returns: FFIType.i32 },
    copy_file_range: { args: [FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.u32], returns: FFIType.i64 },
    close: { args: [FFIType.i32], returns: FFIType.i32 },
    openat: { args: [FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.u32], returns: FFIType.i32 },
    getdents64: { args: [FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i32 },
    unshare: { args: [FFIType.i32], returns: FFIType.i32 },
    setns: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    fchdir: { args: [FFIType.i32], returns: FFIType.i32 },
    memfd_create: { args: [FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    fcntl: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    sendfile: { args: [FFIType.i32, FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
    ioctl: { args: [FFIType.i32, FFIType.u64, FFIType.u64], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
    strerror: { args: [FFIType.i32], returns: FFIType.cstring },
  });
}

const symbols = () => (libc ??= open()).symbols;
/**
 * A NUL-terminated copy of a path, passed to the call itself (not as `ptr(...)` of a
 * temporary): a Buffer only `ptr()` pointed at could be collected while the call, or the
 * making of its next argument, still needed it — that wrote a garbage symlink target once.
 */
const cString = (path: string | Buffer) => (typeof path === "string" ? Buffer.from(path + "\0") : Buffer.concat([path, Buffer.from([0])]));

function errno(): number {
  return read.i32(symbols().__errno_location()!, 0);
}

/** A failed system call, with Node's error code (`ENOENT`, `ELOOP`, ...) in `code`. */
export class SystemError extends Error {
  constructor(
    readonly call: string,
    readonly path: string,
    readonly errno: number,
  ) {
    const code = errnoName(errno);
    super(`${call} ${path}: ${symbols().strerror(errno)} (${code})`);
    this.code = code;
  }
  readonly code: string;
}

let errnoNames: Map<number, string> | undefined;
function errnoName(value: number): string {
  errnoNames ??= new Map(Object.entries(osConstants.errno).map(([name, n]) => [n as number, name]));
  return errnoNames.get(value) ?? `E${value}`;
}

function check(rc: number | bigint, call: string, path: string | Buffer): number {
  const n = Number(rc);
  if (n < 0) throw new SystemError(call, path.toString(), errno());
  return n;
}

// ---- the *at() family, for src/rootfs

export const AT_FDCWD = -100;
export const AT_SYMLINK_NOFOLLOW = 0x100;
export const AT_REMOVEDIR = 0x200;
export const AT_EMPTY_PATH = 0x1000;
export const O_PATH = 0o10000000;
export const O_CLOEXEC = 0o2000000; // the same on x86_64 and arm64; node:fs does not export it
export const RESOLVE_NO_XDEV = 0x01;
export const RESOLVE_NO_MAGICLINKS = 0x02;
export const RESOLVE_NO_SYMLINKS = 0x04;
export const RESOLVE_BENEATH = 0x08;
export const RESOLVE_IN_ROOT = 0x10;
const SYS_OPENAT2 = 437; // the same number on every architecture (new syscalls share one table)

/** openat2(2): opens `path` relative to `dirFd` under the `resolve` restrictions. */
export function openat2(dirFd: number, path: string | Buffer, flags: number, mode: number, resolve: number): number {
  const how = new BigUint64Array([BigInt(flags), BigInt(mode), BigInt(resolve)]);
  return check(symbols().syscall(SYS_OPENAT2, dirFd, cString(path), how, 24), "openat2", path);
}

export function mkdirat(dirFd: number, name: string | Buffer, mode: number) {
  check(symbols().mkdirat(dirFd, cString(name), mode), "mkdir", name);
}

export function symlinkat(target: string | Buffer, dirFd: number, name: string | Buffer) {
  check(symbols().symlinkat(cString(target), dirFd, cString(name)), "symlink", name);
}

export function linkat(oldDirFd: number, oldName: string | Buffer, newDirFd: number, newName: string | Buffer, flags = 0) {
  check(symbols().linkat(oldDirFd, cString(oldName), newDirFd, cString(newName), flags), "link", newName);
}

export function unlinkat(dirFd: number, name: string | Buffer, flags = 0) {
  check(symbols().unlinkat(dirFd, cString(name), flags), flags & AT_REMOVEDIR ? "rmdir" : "unlink", name);
}

export function renameat(oldDirFd: number, oldName: string | Buffer, newDirFd: number, newName: string | Buffer) {
  check(symbols().renameat(oldDirFd, cString(oldName), newDirFd, cString(newName)), "rename", oldName);
}

export function fchownat(dirFd: number, name: string | Buffer, uid: number, gid: number, flags: number) {
  check(symbols().fchownat(dirFd, cString(name), uid >>> 0, gid >>> 0, flags), "chown", name);
}

/** Sets access and modification times (whole seconds plus nanoseconds). */
export function utimensat(dirFd: number, name: string | Buffer, atime: [number, number], mtime: [number, number], flags: number) {
  const times = new BigInt64Array([BigInt(atime[0]), BigInt(atime[1]), BigInt(mtime[0]), BigInt(mtime[1])]);
  check(symbols().utimensat(dirFd, cString(name), times, flags), "utimes", name);
}

export function mknodat(dirFd: number, name: string | Buffer, mode: number, major = 0, minor = 0) {
  check(symbols().mknodat(dirFd, cString(name), mode, makedev(major, minor)), "mknod", name);
}

export function readlinkat(dirFd: number, name: string | Buffer): Buffer {
  const buffer = Buffer.allocUnsafe(4096);
  const n = check(symbols().readlinkat(dirFd, cString(name), buffer, buffer.length), "readlink", name);
  return Buffer.from(buffer.subarray(0, n));
}

export function closeFd(fd: number) {
  symbols().close(fd);
}

/** What statx(2) reports, in an architecture-independent layout. */
export interface RawStat {
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  size: number;
  ino: bigint;
  dev: string;
  rdevMajor: number;
  rdevMinor: number;
  atime: [number, number];
  mtime: [number, number];
}

const STATX_BASIC_STATS = 0x7ff;
const statxBuffer = new DataView(new ArrayBuffer(256));

/** statx(2) of `name` in `dirFd` (AT_EMPTY_PATH with "" for the fd itself); undefined when absent. */
export function statxAt(dirFd: number, name: string | Buffer, flags: number): RawStat | undefined {
  const rc = symbols().statx(dirFd, cString(name), flags, STATX_BASIC_STATS, ptr(statxBuffer)); // module-level: always alive
  if (rc !== 0) {
    const code = errno();
    if (code === osConstants.errno.ENOENT || code === osConstants.errno.ENOTDIR) return undefined;
    throw new SystemError("stat", name.toString(), code);
  }
  const v = statxBuffer;
  const time = (offset: number): [number, number] => [Number(v.getBigInt64(offset, true)), v.getUint32(offset + 8, true)];
  return {
    nlink: v.getUint32(16, true),
    uid: v.getUint32(20, true),
    gid: v.getUint32(24, true),
    mode: v.getUint16(28, true),
    ino: v.getBigUint64(32, true),
    size: Number(v.getBigUint64(40, true)),
    atime: time(64),
    mtime: time(112),
    rdevMajor: v.getUint32(128, true),
    rdevMinor: v.getUint32(132, true),
    dev: `${v.getUint32(136, true)}:${v.getUint32(140, true)}`,
  };
}

/** openat(2) of a directory by name, following a link there only when `follow`; throws SystemError. */
export function openDirectoryAt(dirFd: number, name: string | Buffer, follow = false): number {
  const flags = fsConstants.O_DIRECTORY | O_CLOEXEC | (follow ? 0 : fsConstants.O_NOFOLLOW);
  return check(symbols().openat(dirFd, cString(name), flags, 0), "open", name);
}

/**
 * getdents64(2): fills `buffer` with the next records of the directory (linux_dirent64: u64 ino,
 * i64 off, u16 reclen, u8 type, NUL-terminated name); 0 at the end. `buffer` must stay alive
 * while the caller reads it, so it is passed itself, not as a pointer.
 */
export function readDirectoryRecords(fd: number, buffer: Buffer, shown: string): number {
  return check(symbols().getdents64(fd, buffer, buffer.length), "read directory", shown);
}

/**
 * statx(2) with the name given as a raw address (a NUL-terminated name inside a buffer the
 * caller keeps alive, e.g. a getdents64 record): no Buffer per call, for walks of many files.
 * Returns 0, or the errno.
 */
export function statxAtAddress(dirFd: number, nameAddress: number, flags: number, out: Buffer): number {
  return symbols().statx(dirFd, nameAddress as Pointer, flags, STATX_BASIC_STATS, out) === 0 ? 0 : errno();
}

/** Copies `length` bytes between two open files in the kernel; false when it cannot (then copy by hand). */
export function copyFileRange(from: number, to: number, length: number): boolean {
  let left = length;
  while (left > 0) {
    const n = Number(symbols().copy_file_range(from, null, to, null, Math.min(left, 1 << 30), 0));
    if (n < 0) {
      if (left === length) return false;
      throw new SystemError("copy_file_range", "", errno());
    }
    if (n === 0) break;
    left -= n;
  }
  return true;
}

function fail(call: string, path: string | Buffer): never {
  const code = errno();
  throw new Error(`${call} ${path.toString()}: ${symbols().strerror(code)}`);
}

export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
export const S_IFIFO = 0o010000;

/** glibc's makedev() */
function makedev(major: number, minor: number): bigint {
  return (BigInt(major & 0xfff) << 8n) | BigInt(minor & 0xff) | (BigInt(minor & ~0xff) << 12n) | (BigInt(major & ~0xfff) << 32n);
}

export function mknod(path: string | Buffer, mode: number, major = 0, minor = 0) {
  if (symbols().mknod(cString(path), mode, makedev(major, minor)) !== 0) fail("mknod", path);
}

export function setXattr(path: string | Buffer, name: string, value: Buffer) {
  if (symbols().lsetxattr(cString(path), cString(name), value.length ? value : null, value.length, 0) !== 0) {
    fail("setxattr", path);
  }
}

/** Sets an attribute on what `path` leads to (for /proc/self/fd/N links to an open entry). */
export function setXattrFollow(path: string, name: string, value: Buffer) {
  if (symbols().setxattr(cString(path), cString(name), value.length ? value : null, value.length, 0) !== 0) {
    fail("setxattr", path);
  }
}

/** The attribute's value, or undefined when the file does not have it. `follow` for /proc/self/fd/N links. */
export function getXattr(path: string | Buffer, name: string, follow = false): Buffer | undefined {
  const buffer = Buffer.alloc(256);
  const call = follow ? symbols().getxattr : symbols().lgetxattr;
  const length = Number(call(cString(path), cString(name), buffer, buffer.length));
  if (length < 0) return undefined;
  return buffer.subarray(0, length);
}

export const OVERLAY_OPAQUE = "trusted.overlay.opaque";

const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;

/** Takes an exclusive lock on an open file without waiting; false when another holds it. */
export function tryLockExclusive(fd: number): boolean {
  return symbols().flock(fd, LOCK_EX | LOCK_NB) === 0;
}

/** Takes a shared lock without waiting; false when someone holds it exclusively. */
export function tryLockShared(fd: number): boolean {
  return symbols().flock(fd, LOCK_SH | LOCK_NB) === 0;
}

export function unlock(fd: number) {
  symbols().flock(fd, LOCK_UN);
}

const MNT_DETACH = 2;

/** mount(2). Throws with the system's reason on failure. */
export function mount(source: string, target: string, type: string | null, flags: number, data: string | null) {
  const rc = symbols().mount(
    cString(source),
    cString(target),
    type === null ? null : cString(type),
    flags,
    data === null ? null : cString(data),
  );
  if (rc !== 0) fail("mount", target);
}

// ---- namespaces, for the executor (a RUN's runtime and network)

export const CLONE_FS = 0x00000200;
export const CLONE_NEWNS = 0x00020000;
export const CLONE_NEWNET = 0x40000000;
export const MS_NODEV = 4;
export const MS_BIND = 4096;
export const MS_REC = 16384;
export const MS_PRIVATE = 1 << 18;

/** unshare(2): the calling thread, and only it, moves to new namespaces of the kinds in `flags`. */
export function unshare(flags: number) {
  check(symbols().unshare(flags), "unshare", "");
}

/** setns(2): the calling thread joins the namespace open as `fd` (of kind `type`). */
export function setns(fd: number, type: number) {
  check(symbols().setns(fd, type), "setns", "");
}

/** fchdir(2): the calling thread's working directory becomes the directory open as `fd`. */
export function fchdir(fd: number) {
  check(symbols().fchdir(fd), "fchdir", "");
}

/** open(2) of a host path of our own (a namespace file, a directory), close-on-exec. */
export function openPath(path: string, flags: number): number {
  return check(symbols().openat(AT_FDCWD, cString(path), flags | O_CLOEXEC, 0), "open", path);
}

/** umount2(2); `lazy` detaches a mount that is still busy. Returns false on failure. */
export function umount(target: string, lazy = false): boolean {
  return symbols().umount2(cString(target), lazy ? MNT_DETACH : 0) === 0;
}

/** _IOW('T', 202, int) and _IOW('T', 203, int) of linux/if_tun.h. */
const TUNSETIFF = 0x400454ca;
const TUNSETPERSIST = 0x400454cb;
const IFF_TAP = 0x0002;
const IFF_NO_PI = 0x1000;

/**
 * Makes a persistent tap device `name` (no packet-information header, as slirp4netns opens its
 * own) in the calling thread's network namespace. Persistent, so the process that later
 * attaches to it does not unregister it when it closes it: the kernel then removes the device
 * with its namespace, in its own worker.
 */
export function createPersistentTap(name: string) {
  const fd = openPath("/dev/net/tun", fsConstants.O_RDWR);
  try {
    // struct ifreq: the name in the first 16 bytes (NUL-terminated), the flags (a short) at 16.
    const request = Buffer.alloc(40);
    request.write(name, 0, 15, "latin1");
    request.writeUInt16LE(IFF_TAP | IFF_NO_PI, 16);
    // The third argument is a pointer for one request and a plain value for the other.
    check(symbols().ioctl(fd, TUNSETIFF, ptr(request)), "ioctl(TUNSETIFF)", name);
    check(symbols().ioctl(fd, TUNSETPERSIST, 1), "ioctl(TUNSETPERSIST)", name);
    void request.length; // kept alive (and so its memory) until both calls are done
  } finally {
    closeFd(fd);
  }
}

// ---- sealed in-memory files, for the executor (the runtime started from a copy in memory)

const MFD_CLOEXEC = 0x1;
const MFD_ALLOW_SEALING = 0x2;
/** Executable even where vm.memfd_noexec asks otherwise (Linux 6.3); older kernels refuse the flag. */
const MFD_EXEC = 0x10;
const F_ADD_SEALS = 1033;
/** Every seal: the file can no longer be written, grown, shrunk or have its seals changed. */
export const ALL_SEALS = 0x1 | 0x2 | 0x4 | 0x8;

/** memfd_create(2), close-on-exec and sealable: an anonymous file in memory, open as the result. */
export function memfdCreate(name: string): number {
  const rc = symbols().memfd_create(cString(name), MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
  if (rc >= 0 || errno() !== osConstants.errno.EINVAL) return check(rc, "memfd_create", name);
  return check(symbols().memfd_create(cString(name), MFD_CLOEXEC | MFD_ALLOW_SEALING), "memfd_create", name);
}

/** Copies all of the file open as `from` (from its current offset) to `to`, inside the kernel (sendfile(2)). */
export function sendAll(to: number, from: number) {
  while (check(symbols().sendfile(to, from, null, 1 << 30), "sendfile", "") > 0);
}

/** fcntl(F_ADD_SEALS). */
export function addSeals(fd: number, seals: number) {
  check(symbols().fcntl(fd, F_ADD_SEALS, seals), "fcntl(F_ADD_SEALS)", "");
}
