/**
 * An untrusted repository built on a CI machine must not reach the host: each case below is a
 * way a Dockerfile, a context or a layer once read or wrote the host's files. A host directory
 * full of marker files sits outside every root; each build points links at it, and the test
 * proves it unchanged (same names, same contents, same link counts) and that nothing of it
 * reached the image.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { memobuildBinary, REPO_ROOT, runMemobuild, type RunResult } from "./support/binary.ts";
import { TarWriter, type TarEntry } from "../src/sys/tar.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-confine-"));
const cacheDir = join(work, "cache");
const host = join(work, "host");
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Every entry under the host directory with its type, content and link count. */
function hostState(): string {
  return readdirSync(host, { recursive: true })
    .map(String)
    .sort()
    .map((name) => {
      const stat = lstatSync(join(host, name));
      return `${name} ${stat.mode.toString(8)} ${stat.nlink} ${stat.isFile() ? readFileSync(join(host, name), "utf8") : ""}`;
    })
    .join("\n");
}

beforeEach(() => {
  rmSync(host, { recursive: true, force: true });
  mkdirSync(join(host, "dir"), { recursive: true });
  writeFileSync(join(host, "marker"), "host marker");
  writeFileSync(join(host, "shadow"), "host secret");
  writeFileSync(join(host, "dir/file"), "host file");
});

let count = 0;
function project(files: Record<string, string>, links: Record<string, string> = {}): string {
  const dir = join(work, `p${++count}`);
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(join(dir, name, ".."), { recursive: true });
    writeFileSync(join(dir, name), content);
  }
  for (const [name, target] of Object.entries(links)) {
    mkdirSync(join(dir, name, ".."), { recursive: true });
    symlinkSync(target, join(dir, name));
  }
  return dir;
}

function build(dir: string, ...args: string[]): RunResult {
  return runMemobuild(["build", dir, "--cache-dir", cacheDir, "--progress", "plain", ...args]);
}

function run(ref: string, ...command: string[]): RunResult {
  return runMemobuild(["run", ref, "--cache-dir", cacheDir, "--", ...command]);
}

/** The build either fails or succeeds; either way the host is exactly as it was. */
function expectHostUntouched(result: RunResult, before: string) {
  expect(hostState()).toBe(before);
  return result;
}

beforeAll(() => {
  const prepare = Bun.spawnSync(["bash", join(REPO_ROOT, "scripts/prepare-base-rootfs.sh")], { stderr: "pipe" });
  if (prepare.exitCode !== 0) throw new Error(prepare.stderr.toString());
  memobuildBinary();
  const base = build(join(REPO_ROOT, "examples/base"), "-t", "memobuild/busybox:latest");
  if (base.exitCode !== 0) throw new Error(base.stderr);
}, 120_000);

describe("escapes from the issue, each kept inside the image", () => {
  test("a rw bind mount of a stage's link to a host directory writes into the stage, not the host", () => {
    const before = hostState();
    const dir = project({
      Dockerfile: [
        "FROM memobuild/busybox AS evil",
        `RUN ln -s ${host} /esc && ln -s / /root-link`,
        "FROM memobuild/busybox",
        "RUN --mount=type=bind,from=evil,source=/esc,target=/h,rw sh -c 'echo pwned > /h/marker; echo new > /h/created; ls /h > /listing' || true",
        "RUN --mount=type=bind,from=evil,source=/root-link/etc,target=/e cat /e/hostname > /seen-hostname 2>&1 || true",
      ].join("\n"),
    });
    expectHostUntouched(build(dir, "-t", "bind-escape:test"), before);
    // The bind source resolved inside the stage: nothing of the host was listed or read.
    const listing = run("bind-escape:test", "cat", "/listing").stdout;
    expect(listing).not.toContain("shadow");
    expect(run("bind-escape:test", "cat", "/seen-hostname").stdout).not.toBe(readFileSync("/etc/hostname", "utf8"));
  });

  test("COPY a/ b/ /dst/ with a/s -> host dir and b/s/file writes inside the image", () => {
    const before = hostState();
    const dir = project(
      { Dockerfile: "FROM memobuild/busybox\nCOPY a/ b/ /dst/\n", "b/s/marker": "evil", "b/s/file": "evil" },
      { "a/s": host },
    );
    expectHostUntouched(build(dir, "-t", "copy-escape:test"), before);
  });

  test("ADD of a tar with l -> host dir and a hard link x -> l/shadow never links the host file", () => {
    const before = hostState();
    const dir = project({ Dockerfile: "FROM memobuild/busybox\nADD evil.tar /\nRUN cat /x > /stolen 2>&1 || true\n" });
    writeFileSync(join(dir, "evil.tar"), tar([[{ name: "l", type: "symlink", linkname: host }], [{ name: "x", type: "hardlink", linkname: "l/shadow" }]]));
    const result = expectHostUntouched(build(dir, "-t", "hardlink-escape:test"), before);
    if (result.exitCode === 0) expect(run("hardlink-escape:test", "cat", "/stolen").stdout).not.toContain("host secret");
    else expect(result.stderr).toContain('hardlink "x"');
  });

  test("a write through a layer's link to a host directory lands inside the image", () => {
    const before = hostState();
    const dir = project({ Dockerfile: "FROM memobuild/busybox\nADD evil.tar /\n" });
    writeFileSync(join(dir, "evil.tar"), tar([[{ name: "l", type: "symlink", linkname: host }], [{ name: "l/marker" }, "evil"]]));
    const result = expectHostUntouched(build(dir, "-t", "layer-write:test"), before);
    expect(result.exitCode).toBe(0);
    expect(run("layer-write:test", "cat", `${host}/marker`).stdout).toBe("evil\n");
  });

  test("COPY --from a stage's link to a host file copies nothing of the host", () => {
    const before = hostState();
    const dir = project({
      Dockerfile: [`FROM memobuild/busybox AS evil`, `RUN ln -s ${host} /esc`, "FROM memobuild/busybox", "COPY --from=evil /esc/shadow /x"].join("\n"),
    });
    const result = expectHostUntouched(build(dir, "-t", "from-escape:test"), before);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain("/esc/shadow: no such file or directory in the source");
  });

  const mountTargets: [string, string][] = [
    ["WORKDIR", `WORKDIR /esc/wd\nRUN true`],
    ["a tmpfs mount target", `RUN --mount=type=tmpfs,target=/esc/tmp true`],
    ["a cache mount target", `RUN --mount=type=cache,target=/esc/cache true`],
    ["a secret mount target", `RUN --mount=type=secret,id=s,target=/esc/secret true`],
    ["a context bind mount target", `RUN --mount=type=bind,source=Dockerfile,target=/esc/bound true`],
  ];
  for (const [name, instruction] of mountTargets) {
    test(`${name} through a link to a host directory makes nothing on the host`, () => {
      const before = hostState();
      const secret = join(work, "secret.txt");
      writeFileSync(secret, "value");
      const dir = project({ Dockerfile: `FROM memobuild/busybox\nRUN ln -s ${host} /esc\n${instruction}\n` });
      const result = expectHostUntouched(build(dir, "--secret", `id=s,src=${secret}`), before);
      expect(result.exitCode).toBe(0);
    });
  }
});

describe("symlinked destinations are written through, as BuildKit does", () => {
  test("COPY into a linked directory and onto a link to a file", () => {
    const dir = project({
      Dockerfile: [
        "FROM memobuild/busybox",
        "RUN mkdir /real && ln -s /real /linkdir && echo old > /real/f && ln -s /real/f /linkfile",
        "COPY a.txt /linkdir/",
        "COPY b.txt /linkfile",
      ].join("\n"),
      "a.txt": "a\n",
      "b.txt": "b\n",
    });
    const result = build(dir, "-t", "linkdest:test");
    expect(result.exitCode).toBe(0);
    const view = run("linkdest:test", "sh", "-c", "readlink /linkdir; readlink /linkfile; cat /real/a.txt /real/f").stdout;
    expect(view).toBe("/real\n/real/f\na\nb\n");
  });

  test("a usr-merged base keeps /lib a link when COPY writes below it", () => {
    const dir = project({
      Dockerfile: ["FROM memobuild/busybox", "RUN mkdir -p /usr/lib && echo keep > /usr/lib/libkeep.so && ln -s usr/lib /lib", "COPY libnew.so /lib/"].join("\n"),
      "libnew.so": "new\n",
    });
    expect(build(dir, "-t", "usrmerge:test").exitCode).toBe(0);
    expect(run("usrmerge:test", "sh", "-c", "readlink /lib; ls /usr/lib").stdout).toBe("usr/lib\nlibkeep.so\nlibnew.so\n");
  });
});

describe("layer stacks and mount sources the overlay used to refuse", () => {
  test("the same layer twice in a stack", () => {
    const dir = project({ Dockerfile: "FROM memobuild/busybox\nCOPY f /f\nRUN rm /f\nCOPY f /f\nRUN rm /f\nRUN test ! -e /f\n", f: "x" });
    const result = build(dir);
    expect(result.stderr).not.toContain("Too many levels");
    expect(result.exitCode).toBe(0);
  });

  test("a single-layer stage as a COPY --from source and as a bind-mount source", () => {
    const dir = project({
      Dockerfile: ["FROM scratch AS one", "COPY f /f", "FROM memobuild/busybox", "COPY --from=one /f /g", "RUN --mount=type=bind,from=one,target=/m cat /m/f /g > /both"].join("\n"),
      f: "one\n",
    });
    expect(build(dir, "-t", "onelayer:test").exitCode).toBe(0);
    expect(run("onelayer:test", "cat", "/both").stdout).toBe("one\none\n");
  });

  test("a bind mount of a single file, from the context and from a stage", () => {
    const dir = project({
      Dockerfile: [
        "FROM memobuild/busybox AS mod",
        "RUN echo from-stage > /stage.mod",
        "FROM memobuild/busybox",
        "WORKDIR /src",
        "RUN --mount=type=bind,source=go.mod,target=go.mod --mount=type=bind,from=mod,source=/stage.mod,target=/src/stage.mod cat go.mod stage.mod > /out",
      ].join("\n"),
      "go.mod": "module x\n",
    });
    expect(build(dir, "-t", "filebind:test").exitCode).toBe(0);
    expect(run("filebind:test", "sh", "-c", "cat /out; ls -A /src").stdout).toBe("module x\nfrom-stage\n");
  });
});

/** Each path opened for writing: "PATH opened" or "PATH refused" (the shell's error kept aside). */
const tryOpen = (paths: string[]) => `for n in ${paths.join(" ")}; do if (echo x > $n) 2>/dev/null; then echo "$n opened"; else echo "$n refused"; fi; done`;

/** The char and block device entries of every layer of an image exported to `oci` (uncompressed). */
function layerDevices(oci: string): string[] {
  const index = JSON.parse(readFileSync(join(oci, "index.json"), "utf8"));
  const blob = (digest: string) => join(oci, "blobs", ...digest.split(":"));
  const manifest = JSON.parse(readFileSync(blob(index.manifests[0].digest), "utf8"));
  return manifest.layers.flatMap((layer: { digest: string }) => {
    const listing = Bun.spawnSync(["tar", "-tvf", blob(layer.digest)], { stdout: "pipe" }).stdout.toString();
    return listing.split("\n").filter((line) => /^[cb]/.test(line)).map((line) => `${line.slice(0, 10)} ${line.split(/\s+/)[2]} ${line.split(/\s+/).at(-1)}`);
  });
}

describe("device nodes: a RUN is root with CAP_MKNOD and no device cgroup", () => {
  test("a node a RUN makes, in the root, /dev, a cache or a rw bind mount, cannot be opened (nor remounted openable)", () => {
    const dir = project({
      Dockerfile: [
        "FROM memobuild/busybox",
        "RUN --mount=type=cache,target=/cache --mount=type=bind,target=/ctx,rw sh -c 'for n in /tmp/n /dev/n /cache/n /ctx/n; do mknod $n c 1 3; done; mount -o remount,dev / 2>/dev/null; " + tryOpen(["/tmp/n", "/dev/n", "/cache/n", "/ctx/n"]) + " > /result'",
      ].join("\n"),
    });
    expect(build(dir, "-t", "mknod-run:test").exitCode).toBe(0);
    expect(run("mknod-run:test", "cat", "/result").stdout).toBe("/tmp/n refused\n/dev/n refused\n/cache/n refused\n/ctx/n refused\n");
  });

  test("a char device an image's layer carries cannot be opened in a RUN", () => {
    const base = project({ Dockerfile: "FROM memobuild/busybox\nADD dev.tar /\n" });
    writeFileSync(join(base, "dev.tar"), tar([[{ name: "n", type: "char", mode: 0o666, devmajor: 1, devminor: 3 }]]));
    expect(build(base, "-t", "devbase:test").exitCode).toBe(0);
    const dir = project({ Dockerfile: `FROM devbase:test\nRUN ls -l /n > /result; ${tryOpen(["/n"])} >> /result\n` });
    expect(build(dir, "-t", "devlayer:test").exitCode).toBe(0);
    const result = run("devlayer:test", "cat", "/result").stdout;
    expect(result).toMatch(/^crw-rw-rw- .* 1, +3 .*\/n\n/);
    expect(result).toEndWith("/n refused\n");
  });

  test("the standard devices still work", () => {
    const dir = project({
      Dockerfile: [
        "FROM memobuild/busybox",
        `RUN (echo x > /dev/null && head -c1 /dev/zero | od -An -tx1 && head -c1 /dev/urandom | wc -c && head -c1 /dev/random | wc -c; ` +
          `echo x > /dev/full || echo full refused; true > /dev/tty; (exec 3<>/dev/ptmx && ls /dev/pts)) > /result 2>&1`,
      ].join("\n"),
    });
    expect(build(dir, "-t", "stddev:test").exitCode).toBe(0);
    const result = run("stddev:test", "cat", "/result").stdout;
    // /dev/full: ENOSPC on write; /dev/tty: ENXIO without a terminal, as in Docker; a pts appears.
    expect(result.replace(/[ \t]+/g, " ")).toMatch(/^ 00\n1\n1\n.*No space left on device\nfull refused\n.*No such device or address\n0\nptmx\n$/);
  });

  test("mknod in a RUN and a node in a base layer are kept in the image's layers, as in BuildKit", () => {
    const base = project({ Dockerfile: "FROM memobuild/busybox\nADD dev.tar /\n" });
    writeFileSync(join(base, "dev.tar"), tar([[{ name: "n", type: "char", mode: 0o666, devmajor: 1, devminor: 3 }]]));
    expect(build(base, "-t", "devbase2:test").exitCode).toBe(0);
    const dir = project({ Dockerfile: "FROM devbase2:test\nRUN mknod /made c 1 5 && mknod /blk b 7 0\n" });
    const oci = join(work, "devices-oci");
    expect(build(dir, "-o", `type=oci,dest=${oci},compression=uncompressed`).exitCode).toBe(0);
    expect(layerDevices(oci)).toEqual(["crw-rw-rw- 1,3 n", "brw-r--r-- 7,0 blk", "crw-r--r-- 1,5 made"]);
  });
});

/**
 * A static x86_64 program that makes one system call and exits with its errno (0 when it
 * succeeded): the base's busybox has no keyctl, io_uring or userfaultfd applet.
 */
function syscallProbe(nr: number, ...args: number[]): Buffer {
  const code = Buffer.concat([
    Buffer.from([0x48, 0xc7, 0xc0]), imm32(nr), // mov rax, nr
    ...[0xc7, 0xc6, 0xc2].map((reg, i) => Buffer.concat([Buffer.from([0x48, 0xc7, reg]), imm32(args[i] ?? 0)])), // mov rdi/rsi/rdx, arg
    Buffer.from([0x0f, 0x05]), // syscall
    Buffer.from([0x48, 0x89, 0xc7, 0x48, 0xf7, 0xdf, 0x48, 0x85, 0xc0, 0x78, 0x02, 0x31, 0xff]), // rdi = -rax; if rax >= 0, rdi = 0
    Buffer.from([0xb8, 0x3c, 0, 0, 0, 0x0f, 0x05]), // exit(rdi)
  ]);
  return elf(64, code);
}

/** The same through the i386 ABI (int 0x80, i386 numbers), which a filter must cover too. */
function syscallProbe32(nr: number, arg: number): Buffer {
  const code = Buffer.concat([
    Buffer.from([0xb8]), imm32(nr), Buffer.from([0xbb]), imm32(arg), // mov eax, nr; mov ebx, arg
    Buffer.from([0x31, 0xc9, 0x31, 0xd2, 0xcd, 0x80]), // ecx = edx = 0; int 0x80
    Buffer.from([0x89, 0xc3, 0xf7, 0xdb, 0x85, 0xc0, 0x78, 0x02, 0x31, 0xdb]), // ebx = -eax; if eax >= 0, ebx = 0
    Buffer.from([0xb8, 1, 0, 0, 0, 0xcd, 0x80]), // exit(ebx)
  ]);
  return elf(32, code);
}

/** An executable of one loaded segment: the headers, then `code`, its entry point. */
function elf(bits: 32 | 64, code: Buffer): Buffer {
  const wide = bits === 64;
  const [ehsize, phsize, base] = wide ? [64, 56, 0x400000] : [52, 32, 0x8048000];
  const header = Buffer.alloc(ehsize + phsize);
  const word = (value: number, at: number) => (wide ? header.writeBigUInt64LE(BigInt(value), at) : header.writeUInt32LE(value, at));
  header.set([0x7f, 0x45, 0x4c, 0x46, wide ? 2 : 1, 1, 1]); // ELF, its class, little-endian, version 1
  header.writeUInt16LE(2, 16); // an executable
  header.writeUInt16LE(wide ? 0x3e : 3, 18); // x86_64 or i386
  header.writeUInt32LE(1, 20);
  word(base + header.length, 24); // entry: the code after the headers
  word(ehsize, wide ? 32 : 28); // the program header follows this one
  header.writeUInt16LE(ehsize, wide ? 52 : 40);
  header.writeUInt16LE(phsize, wide ? 54 : 42);
  header.writeUInt16LE(1, wide ? 56 : 44);
  const size = header.length + code.length;
  header.writeUInt32LE(1, ehsize); // PT_LOAD of the whole file, readable and executable
  if (wide) {
    header.writeUInt32LE(5, ehsize + 4);
    [0, base, base, size, size, 0x1000].forEach((value, i) => word(value, ehsize + 8 + 8 * i));
  } else {
    [0, base, base, size, size, 5, 0x1000].forEach((value, i) => word(value, ehsize + 4 + 4 * i));
  }
  return Buffer.concat([header, code]);
}

function imm32(value: number): Buffer {
  const bytes = Buffer.alloc(4);
  bytes.writeInt32LE(value);
  return bytes;
}

describe("system calls: every RUN but an insecure one is under a seccomp filter, as in BuildKit", () => {
  test("a user namespace, new namespaces by clone, and personalities off the usual ones are refused; ordinary work goes on", () => {
    const dir = project({
      Dockerfile: [
        "FROM memobuild/busybox",
        "RUN (grep ^Seccomp /proc/self/status; unshare -U true || echo userns refused; unshare -U -r -m true || echo userns mount refused; " +
          "linux32 -R true || echo no-randomize refused; linux32 uname -m; " +
          "mkdir /d && chown 1:2 /d && stat -c '%u:%g' /d && mknod /n c 1 3 && echo mknod; echo x | sh -c 'cat' & wait) > /result 2>&1",
      ].join("\n"),
    });
    expect(build(dir, "-t", "seccomp:test").exitCode).toBe(0);
    const result = run("seccomp:test", "cat", "/result").stdout;
    expect(result).toStartWith("Seccomp:\t2\nSeccomp_filters:\t1\n");
    expect(result).toContain("unshare(0x10000000): Operation not permitted\nuserns refused\n");
    expect(result).toContain("userns mount refused\n");
    expect(result).toContain("personality(0x40008): Operation not permitted\nno-randomize refused\n");
    expect(result).toEndWith("1:2\nmknod\nx\n");
  });

  test.skipIf(process.arch !== "x64")("keyrings, io_uring, userfaultfd and bpf are refused (EPERM), clone3 is not implemented (ENOSYS), through the i386 ABI too", () => {
    const probes: Record<string, Buffer> = {
      keyctl: syscallProbe(250, 0, -3, 0), // KEYCTL_GET_KEYRING_ID of the session keyring
      io_uring_setup: syscallProbe(425, 1, 0), // EFAULT unfiltered: no parameters
      userfaultfd: syscallProbe(323, 1), // UFFD_USER_MODE_ONLY: allowed to anyone unfiltered
      bpf: syscallProbe(321, 0, 0, 0), // EPERM unfiltered too here (no CAP_BPF): kept for the record
      clone3: syscallProbe(435, 0, 0), // EINVAL unfiltered: size 0
      request_key32: syscallProbe32(287, 0), // EFAULT unfiltered: no type
      unshare32: syscallProbe32(310, 0x10000000), // CLONE_NEWUSER: allowed to anyone unfiltered
    };
    const dir = project({ Dockerfile: "FROM memobuild/busybox\nCOPY probes/ /probes/\nRUN for p in keyctl io_uring_setup userfaultfd bpf clone3 request_key32 unshare32; do /probes/$p; echo $p $?; done > /result\n" });
    mkdirSync(join(dir, "probes"));
    for (const [name, binary] of Object.entries(probes)) writeFileSync(join(dir, "probes", name), binary, { mode: 0o755 });
    expect(build(dir, "-t", "seccomp-probes:test").exitCode).toBe(0);
    expect(run("seccomp-probes:test", "cat", "/result").stdout).toBe("keyctl 1\nio_uring_setup 1\nuserfaultfd 1\nbpf 1\nclone3 38\nrequest_key32 1\nunshare32 1\n");
  });

  test("an insecure RUN is unfiltered, as in BuildKit's insecure mode; the next ordinary RUN is filtered again", () => {
    const dir = project({
      Dockerfile: [
        "FROM memobuild/busybox",
        "RUN --security=insecure grep ^Seccomp /proc/self/status > /result && unshare -U true && echo userns >> /result",
        "RUN grep ^Seccomp: /proc/self/status >> /result",
      ].join("\n"),
    });
    expect(build(dir, "-t", "seccomp-insecure:test", "--allow", "security.insecure").exitCode).toBe(0);
    expect(run("seccomp-insecure:test", "cat", "/result").stdout).toBe("Seccomp:\t0\nSeccomp_filters:\t0\nuserns\nSeccomp:\t2\n");
  });
});

function tar(entries: [Partial<TarEntry> & { name: string }, string?][]): Buffer {
  const chunks: Uint8Array[] = [];
  const writer = new TarWriter((c) => chunks.push(c));
  for (const [entry, content] of entries) {
    const body = Buffer.from(content ?? "");
    writer.add({ type: "file", mode: 0o644, uid: 0, gid: 0, mtime: 0, ...entry, size: entry.type && entry.type !== "file" ? 0 : body.length });
    if (body.length) {
      writer.content(body);
      writer.pad(body.length);
    }
  }
  writer.finish();
  return Buffer.concat(chunks);
}

describe("cache gc killed while it deletes", () => {
  test("20 kill -9s during prune: every later build sees complete snapshots", async () => {
    const files = 5000;
    const crashCache = join(work, "crash-cache");
    const crashBuild = (n: number) =>
      // SOURCE_DATE_EPOCH makes the files layer reproducible: a re-run meets the directory a
      // killed gc was deleting, which is where a half-deleted snapshot used to be adopted.
      runMemobuild(["build", dir, "--cache-dir", crashCache, "--progress", "plain", "--build-arg", `N=${n}`, "--build-arg", "SOURCE_DATE_EPOCH=0"]);
    const dir = project({
      Dockerfile: [
        "FROM memobuild/busybox",
        `RUN mkdir /many && cd /many && seq 1 ${files} | xargs touch`,
        "ARG N",
        // Runs every time (N changes): counts what the layer below really holds.
        `RUN echo "round $N" && test "$(ls /many | wc -l)" -eq ${files}`,
      ].join("\n"),
    });
    const base = runMemobuild(["build", join(REPO_ROOT, "examples/base"), "-t", "memobuild/busybox:latest", "--cache-dir", crashCache]);
    expect(base.exitCode).toBe(0);
    let killedMidway = 0;
    for (let round = 0; round < 20; round++) {
      const result = crashBuild(round);
      if (result.exitCode !== 0) throw new Error(`round ${round}: ${result.stderr}`);
      const gc = Bun.spawn([memobuildBinary(), "cache", "prune", "--cache-dir", crashCache], { stdout: "ignore", stderr: "ignore" });
      await Bun.sleep(5 + Math.floor(Math.random() * 60));
      gc.kill("SIGKILL");
      if ((await gc.exited) !== 0) killedMidway++;
    }
    expect(crashBuild(99).exitCode).toBe(0);
    // Most kills landed before prune finished; each one was followed by a correct build.
    expect(killedMidway).toBeGreaterThan(0);
    const staging = readdirSync(join(crashCache, "tmp"));
    expect(staging).toEqual([]);
  }, 240_000);
});
