/**
 * The few system calls Node's fs lacks and layers need: mknod (overlay whiteouts are 0/0
 * character devices; device and FIFO entries) and extended attributes (overlay's opaque
 * directory marker). Through bun:ffi, which works inside the compiled binary.
 */
import { dlopen, FFIType, ptr, read } from "bun:ffi";

let libc: ReturnType<typeof open> | undefined;

function open() {
  return dlopen("libc.so.6", {
    mknod: { args: [FFIType.ptr, FFIType.u32, FFIType.u64], returns: FFIType.i32 },
    lsetxattr: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 },
    lgetxattr: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.u64], returns: FFIType.i64 },
    flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    mount: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
    umount2: { args: [FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
    __errno_location: { args: [], returns: FFIType.ptr },
    strerror: { args: [FFIType.i32], returns: FFIType.cstring },
  });
}

const symbols = () => (libc ??= open()).symbols;
const cString = (path: string | Buffer) => (typeof path === "string" ? Buffer.from(path + "\0") : Buffer.concat([path, Buffer.from([0])]));

function errno(): number {
  return read.i32(symbols().__errno_location()!, 0);
}

function fail(call: string, path: string | Buffer): never {
  const code = errno();
  throw new Error(`${call} ${path.toString()}: ${symbols().strerror(code)}`);
}

export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
export const S_IFIFO = 0o010000;

export function mknod(path: string | Buffer, mode: number, major = 0, minor = 0) {
  // glibc's makedev()
  const dev = (BigInt(major & 0xfff) << 8n) | BigInt(minor & 0xff) | (BigInt(minor & ~0xff) << 12n) | (BigInt(major & ~0xfff) << 32n);
  if (symbols().mknod(ptr(cString(path)), mode, dev) !== 0) fail("mknod", path);
}

export function setXattr(path: string | Buffer, name: string, value: Buffer) {
  if (symbols().lsetxattr(ptr(cString(path)), ptr(cString(name)), value.length ? ptr(value) : null, value.length, 0) !== 0) {
    fail("setxattr", path);
  }
}

/** The attribute's value, or undefined when the file does not have it. */
export function getXattr(path: string | Buffer, name: string): Buffer | undefined {
  const buffer = Buffer.alloc(256);
  const length = Number(symbols().lgetxattr(ptr(cString(path)), ptr(cString(name)), ptr(buffer), buffer.length));
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
    ptr(cString(source)),
    ptr(cString(target)),
    type === null ? null : ptr(cString(type)),
    flags,
    data === null ? null : ptr(cString(data)),
  );
  if (rc !== 0) fail("mount", target);
}

/** umount2(2); `lazy` detaches a mount that is still busy. Returns false on failure. */
export function umount(target: string, lazy = false): boolean {
  return symbols().umount2(ptr(cString(target)), lazy ? MNT_DETACH : 0) === 0;
}
