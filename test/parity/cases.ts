/**
 * The parity cases: each a Dockerfile, a context and build flags that MemoBuild and BuildKit
 * must turn into the same image. Grouped by what they exercise; together they cover every
 * instruction and flag of the Dockerfile reference that Docker 20.10's BuildKit knows (heredocs
 * and `COPY --link` need the newer frontend: heredocCases, compared with recorded results).
 */
import { chmodSync, linkSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

export interface ParityCase {
  name: string;
  dockerfile: string;
  /** Context files (paths may have directories). */
  files?: Record<string, string | Uint8Array>;
  /** Context symlinks: name → target. */
  links?: Record<string, string>;
  /** Context hard links: new name → existing file. */
  hardlinks?: Record<string, string>;
  /** Empty context directories. */
  dirs?: string[];
  /** Modes set on context paths after they are written. */
  modes?: Record<string, number>;
  /** Flags both builders get: --build-arg, --target, --secret (SECRET_PATH: the context's secret.txt), --ssh (SSH_SOCKET: a running agent). */
  flags?: string[];
  /** Both builders must refuse it. */
  bothFail?: boolean;
  /** BuildKit's own default network for RUN (the suite otherwise gives it the host's, which MemoBuild's default is not). */
  defaultNetwork?: boolean;
  /**
   * BuildKit is wrong here (an upstream issue says so): either only `paths` differ (MemoBuild's
   * lines are `expected`), or BuildKit accepts what MemoBuild refuses with `memobuildFails`.
   */
  buildkitBug?: { issue: string; paths?: string[]; expected?: string[]; memobuildFails?: RegExp };
}

/** Writes a case's Dockerfile and context into `dir`; returns `dir`. */
export function materialize(c: ParityCase, dir: string): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "Dockerfile"), c.dockerfile);
  for (const [name, content] of Object.entries(c.files ?? {})) {
    mkdirSync(join(dir, name, ".."), { recursive: true });
    writeFileSync(join(dir, name), content);
  }
  for (const name of c.dirs ?? []) mkdirSync(join(dir, name), { recursive: true });
  for (const [name, target] of Object.entries(c.links ?? {})) {
    mkdirSync(join(dir, name, ".."), { recursive: true });
    symlinkSync(target, join(dir, name));
  }
  for (const [name, existing] of Object.entries(c.hardlinks ?? {})) linkSync(join(dir, existing), join(dir, name));
  for (const [name, mode] of Object.entries(c.modes ?? {})) chmodSync(join(dir, name), mode);
  return dir;
}

const BASE = "FROM memobuild/busybox\n";
/** This machine's platform, as both builders name it. */
const HOST_PLATFORM = `linux/${process.arch === "arm64" ? "arm64" : "amd64"}`;
const from = (lines: string) => BASE + lines.trim() + "\n";
const scratch = (lines: string) => "FROM scratch\n" + lines.trim() + "\n";
const fewFiles = { "a.txt": "a\n", "b.txt": "b\n", "c.md": "c\n", "dir/x": "x\n", "dir/sub/y": "y\n" };
/** Names that are also wildcard syntax, for the class and escape rules. */
const oddNames = { "a.txt": "a\n", "b.txt": "b\n", "!.txt": "bang\n", "^.txt": "caret\n", "-.txt": "dash\n", "a*b": "star\n" };

const linkedBase = {
  files: { "base/real/keep": "keep\n", "base/real/f": "old\n", "base/opt/app/v1": "1\n", "a.txt": "a\n", "b.txt": "b\n", "conf/app.conf": "x=1\n" },
  links: { "base/linkdir": "/real", "base/linkfile": "/real/f", "base/current": "opt/app", "base/chain": "linkdir", "base/lib": "real" },
};
const throughLinks = (name: string, instruction: string): ParityCase => ({ name, dockerfile: scratch(`COPY base/ /\n${instruction}`), ...linkedBase });

export const cases: Record<string, ParityCase[]> = {
  "COPY destinations through symlinks of the image": [
    throughLinks("a file into a directory link (trailing slash)", "COPY a.txt /linkdir/"),
    throughLinks("a file onto a link to a file", "COPY b.txt /linkfile"),
    throughLinks("a file to a new name below a directory link", "COPY a.txt /linkdir/renamed.txt"),
    throughLinks("a directory's contents into a relative directory link", "COPY conf/ /current/conf/"),
    throughLinks("through a chain of links", "COPY a.txt /chain/"),
    throughLinks("several sources into a usr-merge style link", "COPY a.txt b.txt /lib/"),
    throughLinks("WORKDIR through a directory link, then a relative COPY", "WORKDIR /linkdir/w\nCOPY a.txt ."),
  ],
  "COPY and ADD destination rules": [
    { name: "a file into a new directory (trailing slash)", dockerfile: scratch("COPY a.txt /new/dir/"), files: fewFiles },
    { name: "a file to a new name", dockerfile: scratch("COPY a.txt /etc/renamed"), files: fewFiles },
    { name: "a file onto an existing directory without a slash", dockerfile: from("COPY a.txt /etc"), files: fewFiles },
    { name: "a directory's contents, not the directory", dockerfile: scratch("COPY dir /d"), files: fewFiles },
    { name: "a directory with a trailing slash on both sides", dockerfile: scratch("COPY dir/ /d/"), files: fewFiles },
    { name: "several sources into a directory", dockerfile: scratch("COPY a.txt b.txt dir /many/"), files: fewFiles },
    { name: "relative destination under WORKDIR", dockerfile: from("WORKDIR /app\nCOPY a.txt rel/\nCOPY b.txt ."), files: fewFiles },
    { name: "the JSON form with spaces in names", dockerfile: scratch('COPY ["with space.txt", "/dst dir/"]'), files: { "with space.txt": "s\n" } },
    { name: "an empty directory to a missing destination", dockerfile: scratch("COPY emptydir /e2"), dirs: ["emptydir"] },
    { name: "an empty directory into an existing one", dockerfile: from("COPY emptydir /etc/e"), dirs: ["emptydir"] },
    { name: "the whole context to the root", dockerfile: scratch("COPY . /"), files: fewFiles },
    { name: "the whole context to a directory", dockerfile: scratch("COPY . /ctx"), files: fewFiles },
    { name: "over a file of the base image", dockerfile: from("COPY passwd /etc/passwd"), files: { passwd: "root:x:0:0::/root:/bin/sh\n" } },
    { name: "several sources to a destination without a slash", dockerfile: scratch("COPY a.txt b.txt /dst"), files: fewFiles, buildkitBug: { issue: "the Dockerfile reference: with several sources the destination must end with /", memobuildFails: /destination must be a directory and end with a \// } },
    { name: "a missing source", dockerfile: scratch("COPY nothere /x"), files: fewFiles, bothFail: true },
    { name: "a source outside the context", dockerfile: scratch("COPY ../outside /x"), files: fewFiles, bothFail: true },
    { name: "non-ASCII names given as sources", dockerfile: scratch("COPY ünïcødé.txt 日本.txt /u/"), files: { "ünïcødé.txt": "u\n", "日本.txt": "j\n" } },
    { name: "non-ASCII names found in a directory", dockerfile: scratch("COPY names /n"), files: { "names/ünïcødé.txt": "u\n", "names/Ωmega/ß": "s\n" } },
  ],
  "wildcards": [
    { name: "star", dockerfile: scratch("COPY *.txt /w/"), files: fewFiles },
    { name: "question mark and class", dockerfile: scratch("COPY [ab].tx? /w/"), files: fewFiles },
    { name: "a wildcard matching directories copies their contents", dockerfile: scratch("COPY di* /w/"), files: fewFiles },
    { name: "a wildcard in a subdirectory", dockerfile: scratch("COPY dir/s*/y /w/"), files: fewFiles },
    { name: "a wildcard matching one file to a new name", dockerfile: scratch("COPY c.* /only.md"), files: fewFiles },
    { name: "a wildcard matching nothing", dockerfile: scratch("COPY *.none /w/"), files: fewFiles },
    { name: "[!a] is a class of ! and a (only ^ negates)", dockerfile: scratch("COPY [!a].txt /w/"), files: oddNames },
    { name: "[^a] negates", dockerfile: scratch("COPY [^a].txt /w/"), files: oddNames },
    { name: "a range written backwards matches nothing", dockerfile: scratch("COPY [c-a].txt /w/"), files: oddNames },
    { name: "components after the first wildcard are patterns, escapes included", dockerfile: scratch("COPY d*/a\\\\b /w/"), files: { "dir/ab": "ab\n", "dir/a\\b": "bs\n" } },
    { name: "an escaped wildcard is a plain name", dockerfile: scratch("COPY a\\\\*b /w/"), files: oddNames, bothFail: true },
    { name: "[!a] in a source from a stage", dockerfile: "FROM memobuild/busybox AS s\nRUN mkdir /s && touch '/s/!.txt' /s/a.txt /s/b.txt\nFROM scratch\nCOPY --from=s /s/[!a].txt /w/\n" },
    { name: "a malformed wildcard", dockerfile: scratch("COPY [a-].txt /w/"), files: oddNames, buildkitBug: { issue: "BuildKit drops Go's ErrBadPattern and copies nothing (seen with dockerd 20.10); MemoBuild names the mistake", memobuildFails: /invalid wildcard in "\[a-\]\.txt"/ } },
  ],
  "context content": [
    { name: "a symlink named as a source is followed", dockerfile: scratch("COPY link.txt /l/"), files: { "target.txt": "t\n" }, links: { "link.txt": "target.txt" } },
    { name: "symlinks inside a copied directory are kept", dockerfile: scratch("COPY tree /t"), files: { "tree/f": "f\n" }, links: { "tree/rel": "f", "tree/abs": "/etc/passwd", "tree/dangling": "nowhere" } },
    { name: "hard links stay linked", dockerfile: scratch("COPY hl /h"), files: { "hl/one": "same\n" }, hardlinks: { "hl/two": "hl/one", "hl/three": "hl/one" } },
    { name: "modes from the context are kept", dockerfile: scratch("COPY m /m"), files: { "m/exec": "#!/bin/sh\n", "m/private": "p\n", "m/d/f": "f\n" }, modes: { "m/exec": 0o755, "m/private": 0o600, "m/d": 0o700 } },
    { name: ".dockerignore with exceptions", dockerfile: scratch("COPY . /c"), files: { ...fewFiles, ".dockerignore": "*.txt\n!b.txt\ndir/sub\n" } },
    { name: ".dockerignore never hides the Dockerfile from COPY", dockerfile: scratch("COPY . /c"), files: { "a.txt": "a\n", ".dockerignore": "Dockerfile\n.dockerignore\n" } },
  ],
  "ownership and modes": [
    { name: "COPY --chown with numbers", dockerfile: scratch("COPY --chown=5:6 dir /o"), files: fewFiles },
    { name: "COPY --chown with names from the image", dockerfile: from("COPY --chown=app:app a.txt /home/app/"), files: fewFiles },
    { name: "COPY --chown with a user only", dockerfile: from("COPY --chown=app dir /o"), files: fewFiles },
    { name: "COPY --chmod on files", dockerfile: scratch("COPY --chmod=0640 a.txt b.txt /m/"), files: fewFiles },
    { name: "COPY --chmod on a directory", dockerfile: scratch("COPY --chmod=700 dir /m"), files: fewFiles },
    { name: "COPY --chmod=0 (any octal number: mode 0000)", dockerfile: scratch("COPY --chmod=0 a.txt /m/"), files: fewFiles },
    { name: "COPY --chmod with leading zeros", dockerfile: scratch("COPY --chmod=00000640 a.txt /m/"), files: fewFiles },
    { name: "COPY --chmod with a setuid bit", dockerfile: scratch("COPY --chmod=4755 a.txt /s/"), files: fewFiles, buildkitBug: { issue: "moby/buildkit#3920", paths: ["/s/a.txt"], expected: ["/s/a.txt file 4755 0:0 87428fc522803d31"] } },
    { name: "ADD --chown", dockerfile: scratch("ADD --chown=7:8 a.txt /a/"), files: fewFiles },
    { name: "RUN chmod with setuid, setgid and sticky", dockerfile: from("RUN touch /su /sg && mkdir /st && chmod 4755 /su && chmod 2755 /sg && chmod 1777 /st") },
    { name: "RUN chown", dockerfile: from("RUN mkdir -p /own/d && touch /own/d/f && chown -R 1000:1000 /own") },
    { name: "COPY --from keeps the owner of files from a stage", dockerfile: "FROM memobuild/busybox AS a\nRUN mkdir /s && echo x > /s/f && chown -R 5:6 /s\nFROM scratch\nCOPY --from=a /s /s\n" },
  ],
  "ADD": [
    { name: "a local tar is extracted", dockerfile: scratch("ADD t.tar /x/"), files: { "t.tar": tarOf({ "in/f": "f\n", "in/g": "g\n" }) } },
    { name: "a local tar.gz is extracted", dockerfile: scratch("ADD t.tar.gz /x/"), files: { "t.tar.gz": gzipSync(tarOf({ "z/f": "f\n" })) } },
    { name: "a gzip file that is not a tar is copied as it is", dockerfile: scratch("ADD file.txt.gz /p/"), files: { "file.txt.gz": gzipSync(Buffer.from("plain text\n")) } },
    { name: "a file that only looks like a tar is copied", dockerfile: scratch("ADD fake.tar /p/"), files: { "fake.tar": "not a tar\n" } },
    { name: "a tar to a new name is extracted into that directory", dockerfile: scratch("ADD t.tar /newdir"), files: { "t.tar": tarOf({ f: "f\n" }) } },
    { name: "a directory", dockerfile: scratch("ADD dir /ad"), files: fewFiles },
  ],
  "RUN": [
    { name: "shell form", dockerfile: from("RUN echo hello > /out && mkdir -p /a/b/c") },
    { name: "exec form", dockerfile: from('RUN ["/bin/sh", "-c", "echo exec > /out"]') },
    { name: "removing a file of the base image", dockerfile: from("RUN rm /etc/group") },
    { name: "replacing a directory of the base image", dockerfile: from("RUN rm -rf /home && mkdir -p /home/new && echo n > /home/new/f") },
    { name: "a file replaced by a directory", dockerfile: from("RUN rm /etc/passwd && mkdir /etc/passwd && touch /etc/passwd/x") },
    { name: "symlinks and hard links made by a command", dockerfile: from("RUN echo x > /f && ln /f /f2 && ln -s /f /s && ln -s nowhere /dangling") },
    { name: "a FIFO made by a command", dockerfile: from("RUN mkfifo /fifo && mkfifo -m 600 /fifo2") },
    { name: "as a user set by USER", dockerfile: from("USER app\nRUN id > /tmp/id && touch /tmp/mine") },
    { name: "the environment a command sees", dockerfile: from("ENV A=1\nARG B=2\nRUN env | grep -E '^(A|B|PATH|HOME)=' | sort > /env") },
    { name: "in WORKDIR", dockerfile: from("WORKDIR /w\nRUN pwd > here && touch there") },
    { name: "with SHELL changed", dockerfile: from('SHELL ["/bin/sh", "-ec"]\nRUN echo $0 > /shell') },
    { name: "a command that leaves /tmp files", dockerfile: from("RUN echo t > /tmp/t && mkdir /tmp/d") },
    { name: "on an image without /dev, /proc, /sys or /etc", dockerfile: "FROM memobuild/busybox AS b\nFROM scratch\nCOPY --from=b /bin/busybox /bin/busybox\nRUN [\"/bin/busybox\", \"touch\", \"/made\"]\n" },
    { name: "a command that changes nothing", dockerfile: from("RUN true") },
    {
      name: "under a seccomp filter: a user namespace and a personality without address randomization are refused",
      dockerfile: from("RUN (grep ^Seccomp: /proc/self/status; unshare -U true || echo userns refused; linux32 -R true || echo refused; linux32 uname -m) > /out 2>&1"),
    },
    { name: "a failing command", dockerfile: from("RUN exit 3"), bothFail: true },
    { name: "line continuations and comments", dockerfile: from("RUN echo one \\\n# a comment inside\n    two > /cont") },
    { name: "the escape directive", dockerfile: "# escape=`\nFROM memobuild/busybox\nRUN echo a `\n  b > /esc\n" },
  ],
  "RUN --mount": [
    { name: "a cache mount leaves only its mount point", dockerfile: from("RUN --mount=type=cache,target=/var/cache/x echo c > /var/cache/x/c && ls /var/cache/x > /listed") },
    {
      name: "a cache mount from a stage starts with that stage's files below source",
      dockerfile:
        "FROM memobuild/busybox AS seed\nRUN mkdir -p /seed/d && echo seeded > /seed/d/f && echo top > /seed/t\nFROM memobuild/busybox\n" +
        "RUN --mount=type=cache,id=parity-seeded,from=seed,source=/seed,target=/c ls -R /c > /listed && cat /c/d/f > /content\n",
    },
    {
      name: "a cache mount's uid, gid and mode make it another cache than the plain id",
      dockerfile: from("RUN --mount=type=cache,id=parity-owned,target=/c echo plain > /c/p\nRUN --mount=type=cache,id=parity-owned,target=/c,uid=1000,gid=1001,mode=0700 ls /c > /listed && stat -c '%u %g %a' /c > /owner"),
    },
    { name: "a tmpfs mount leaves only its mount point", dockerfile: from("RUN --mount=type=tmpfs,target=/scratch echo t > /scratch/t && ls /scratch > /listed") },
    { name: "a bind of the context", dockerfile: from("RUN --mount=type=bind,source=dir,target=/src cat /src/x > /copied"), files: fewFiles },
    { name: "a bind without target= (the context at the working directory)", dockerfile: from("WORKDIR /src\nRUN --mount=type=bind cat a.txt > /copied"), files: fewFiles },
    { name: "a bind from a stage", dockerfile: "FROM memobuild/busybox AS data\nRUN echo d > /d\nFROM memobuild/busybox\nRUN --mount=from=data,target=/m cat /m/d > /copied\n" },
    { name: "a bind onto a path that does not exist in the image", dockerfile: from("RUN --mount=type=bind,source=dir,target=/new/mount/point cat /new/mount/point/x > /copied"), files: fewFiles },
    { name: "a secret as a file", dockerfile: from("RUN --mount=type=secret,id=tok wc -c < /run/secrets/tok > /len"), files: { "secret.txt": "s3cr3t" }, flags: ["--secret", "id=tok,src=SECRET_PATH"] },
    { name: "a secret mounted at a target", dockerfile: from("RUN --mount=type=secret,id=tok,target=/etc/tok wc -c < /etc/tok > /len"), files: { "secret.txt": "s3cr3t" }, flags: ["--secret", "id=tok,src=SECRET_PATH"] },
    { name: "an SSH agent at the default socket", dockerfile: from("RUN --mount=type=ssh test -S $SSH_AUTH_SOCK && echo $SSH_AUTH_SOCK > /sock"), flags: ["--ssh", "default=SSH_SOCKET"] },
    { name: "an SSH agent at a target", dockerfile: from("RUN --mount=type=ssh,target=/tmp/agent/s.sock,mode=0666 test -S /tmp/agent/s.sock && echo $SSH_AUTH_SOCK > /sock"), flags: ["--ssh", "default=SSH_SOCKET"] },
    { name: "an optional secret that is missing", dockerfile: from("RUN --mount=type=secret,id=absent ls /run/secrets > /list 2>&1 || true") },
  ],
  "metadata instructions": [
    { name: "ENV forms and expansion", dockerfile: from('ENV A=1 B="two words" C=${A}x\nENV D legacy form with spaces\nENV E=${UNSET:-dflt} F=${A:+set}\nENV PATH=/opt/bin:$PATH') },
    { name: "LABEL forms and overrides", dockerfile: from('LABEL a=1 "b c"="d e"\nLABEL a=2 multi="line\\\n continued"') },
    { name: "EXPOSE ports, protocols and ranges", dockerfile: from("EXPOSE 80 443/tcp 53/udp\nEXPOSE 9000-9002 7000-7001/udp") },
    { name: "VOLUME forms", dockerfile: from('VOLUME /data\nVOLUME ["/a", "/b"]\nVOLUME /c /d') },
    { name: "a RUN that writes into a VOLUME keeps it (BuildKit's rule)", dockerfile: from("VOLUME /vol\nRUN mkdir /vol && echo kept > /vol/f") },
    { name: "WORKDIR is created even when nothing writes there", dockerfile: from("WORKDIR /made/by/workdir") },
    { name: "WORKDIR of a directory that exists", dockerfile: from("WORKDIR /etc\nWORKDIR /") },
    { name: "relative WORKDIR chains and variables", dockerfile: from("ENV D=deep\nWORKDIR /w\nWORKDIR rel\nWORKDIR $D") },
    { name: "WORKDIR is owned by the current USER", dockerfile: from("USER app\nWORKDIR /data/wd\nRUN touch x") },
    { name: "USER forms", dockerfile: from("USER 1000:1000\nUSER app") },
    { name: "CMD and ENTRYPOINT in both forms", dockerfile: from('ENTRYPOINT ["/bin/echo"]\nCMD ["hi"]') },
    { name: "shell-form ENTRYPOINT", dockerfile: from("ENTRYPOINT exec echo hi") },
    { name: "ENTRYPOINT drops the base image's CMD", dockerfile: from('ENTRYPOINT ["/bin/ls"]') },
    { name: "CMD in shell form under a changed SHELL", dockerfile: from('SHELL ["/bin/ash", "-c"]\nCMD echo hi') },
    { name: "HEALTHCHECK with options", dockerfile: from("HEALTHCHECK --interval=5s --timeout=2s --start-period=1m --retries=4 CMD wget -q localhost || exit 1") },
    { name: "HEALTHCHECK NONE", dockerfile: from("HEALTHCHECK CMD true\nHEALTHCHECK NONE") },
    { name: "STOPSIGNAL", dockerfile: from("STOPSIGNAL SIGQUIT") },
    { name: "MAINTAINER", dockerfile: from("MAINTAINER someone <a@b.c>") },
    { name: "ONBUILD registers triggers", dockerfile: from("ONBUILD RUN echo trig > /trig\nONBUILD ENV X=1") },
    { name: "ONBUILD triggers run in the child and are cleared", dockerfile: "FROM memobuild/busybox AS parent\nONBUILD RUN echo trig > /trig\nONBUILD ENV X=1\nFROM parent\nRUN cat /trig > /seen\n" },
  ],
  "build arguments": [
    { name: "ARG default and override", dockerfile: from("ARG V=default\nARG W=keep\nRUN echo $V $W > /args"), flags: ["--build-arg", "V=given"] },
    { name: "ARG before FROM picks the base", dockerfile: "ARG IMG=memobuild/busybox\nFROM $IMG\nRUN echo ok > /ok\n" },
    { name: "ARG before FROM is redeclared to be used", dockerfile: "ARG V=outer\nFROM memobuild/busybox\nARG V\nRUN echo $V > /v\n" },
    { name: "ARG is scoped to its stage", dockerfile: "FROM memobuild/busybox AS a\nARG V=a\nRUN echo $V > /v\nFROM a\nRUN echo \"[$V]\" > /v2\n" },
    { name: "ENV wins over ARG of the same name", dockerfile: from("ARG V=arg\nENV V=env\nRUN echo $V > /v"), flags: ["--build-arg", "V=flag"] },
    { name: "ARG does not persist into the image", dockerfile: from("ARG SECRETISH=abc\nRUN echo $SECRETISH > /seen") },
    { name: "ARG without default takes the flag", dockerfile: from("ARG NODEF\nRUN echo \"$NODEF\" > /v"), flags: ["--build-arg", "NODEF=from-flag"] },
    { name: "ARG in COPY and WORKDIR", dockerfile: from("ARG DIR=dir\nARG DEST=/dest\nWORKDIR $DEST\nCOPY $DIR ./"), files: fewFiles },
    { name: "predefined TARGETARCH and friends", dockerfile: from("ARG TARGETARCH\nARG TARGETOS\nARG TARGETPLATFORM\nRUN echo $TARGETOS/$TARGETARCH $TARGETPLATFORM > /plat") },
    {
      name: "--platform (this machine's): every predefined platform ARG, and a FROM --platform=$BUILDPLATFORM stage",
      dockerfile:
        "FROM --platform=$BUILDPLATFORM memobuild/busybox AS tools\nARG TARGETARCH BUILDARCH\nRUN echo $BUILDARCH for $TARGETARCH > /cross\n" +
        'FROM memobuild/busybox\nARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM BUILDOS BUILDARCH BUILDVARIANT\nRUN echo "$TARGETPLATFORM $TARGETOS $TARGETARCH [$TARGETVARIANT] $BUILDPLATFORM $BUILDOS $BUILDARCH [$BUILDVARIANT]" > /plat\nCOPY --from=tools /cross /cross\n',
      flags: ["--platform", HOST_PLATFORM],
    },
  ],
  "multi-stage": [
    { name: "COPY --from a named stage", dockerfile: "FROM memobuild/busybox AS build\nRUN mkdir /out && echo artefact > /out/a\nFROM scratch\nCOPY --from=build /out /\n" },
    { name: "COPY --from a stage index", dockerfile: "FROM memobuild/busybox\nRUN echo zero > /z\nFROM scratch\nCOPY --from=0 /z /z\n" },
    { name: "COPY --from an image", dockerfile: scratch("COPY --from=memobuild/busybox /etc/passwd /p") },
    { name: "COPY --from keeps hard links of a stage", dockerfile: "FROM memobuild/busybox AS a\nRUN mkdir -p /s/x /s/y && echo l > /s/x/f && ln /s/x/f /s/y/g && ln /s/x/f /s/x/h\nFROM scratch\nCOPY --from=a /s /s\n" },
    { name: "hard links across directories of the context", dockerfile: scratch("COPY . /c"), files: { "p/one": "same\n", "q/keep": "k\n" }, hardlinks: { "q/two": "p/one" } },
    { name: "COPY --from a stage follows a symlink named as source", dockerfile: "FROM memobuild/busybox AS a\nRUN echo t > /target && ln -s /target /link\nFROM scratch\nCOPY --from=a /link /dst\n" },
    { name: "FROM a stage inherits its config and files", dockerfile: "FROM memobuild/busybox AS parent\nENV P=1\nWORKDIR /pw\nRUN echo p > /p\nFROM parent\nRUN echo c > /c\n" },
    { name: "stage names are case-insensitive", dockerfile: "FROM memobuild/busybox AS Builder\nRUN echo b > /b\nFROM scratch\nCOPY --from=builder /b /b\n" },
    { name: "--target stops at a middle stage", dockerfile: "FROM memobuild/busybox AS mid\nRUN echo mid > /mid\nFROM mid AS last\nRUN echo last > /last\n", flags: ["--target", "mid"] },
    // (--ulimit and --shm-size are not compared: Debian's `docker build` does not pass them to BuildKit.)
    { name: "--add-host entries in /etc/hosts", dockerfile: from("RUN cat /etc/hosts > /hosts"), flags: ["--add-host", "db:10.1.2.3", "--add-host", "cache:10.1.2.4"] },
    // BuildKit's default network is a sandbox of its own with a way out: RUN sees one interface
    // besides lo (BuildKit's eth0, MemoBuild's tap0), and a resolver in resolv.conf.
    {
      name: "RUN's default network: one interface besides lo, and a name server",
      dockerfile: from("RUN ls /sys/class/net | grep -vxc lo > /interfaces && grep -c '^nameserver ' /etc/resolv.conf > /nameservers"),
      defaultNetwork: true,
    },
    { name: "unused stages do not change the result", dockerfile: "FROM memobuild/busybox AS unused\nRUN exit 1\nFROM memobuild/busybox\nRUN echo ok > /ok\n" },
  ],
};

/** Cases that need the docker/dockerfile:1.4 frontend (heredocs, COPY --link). */
export const heredocCases: ParityCase[] = [
  { name: "RUN with a heredoc script", dockerfile: "# syntax=docker/dockerfile:1.4\n" + from("RUN <<EOF\necho one > /one\necho two > /two\nEOF") },
  { name: "RUN heredoc with an interpreter", dockerfile: "# syntax=docker/dockerfile:1.4\n" + from("RUN <<EOF sh -e\nset -e\necho i > /i\nEOF") },
  { name: "COPY of an inline file", dockerfile: "# syntax=docker/dockerfile:1.4\n" + from("COPY <<EOF /etc/inline.conf\nkey=value\nEOF") },
  { name: "COPY of two inline files", dockerfile: "# syntax=docker/dockerfile:1.4\n" + from("COPY <<A <<B /inl/\nfirst\nA\nsecond\nB") },
  { name: "a heredoc with variables expanded", dockerfile: "# syntax=docker/dockerfile:1.4\n" + from("ARG NAME=world\nCOPY <<EOF /greet\nhello $NAME\nEOF") },
  { name: "a quoted heredoc is not expanded", dockerfile: "# syntax=docker/dockerfile:1.4\n" + from("ARG NAME=world\nCOPY <<\"EOF\" /greet\nhello $NAME\nEOF") },
  { name: "RUN --network=none", dockerfile: "# syntax=docker/dockerfile:1.4\n" + from("RUN --network=none ls /sys/class/net > /nets") },
  { name: "COPY --link", dockerfile: "# syntax=docker/dockerfile:1.4\n" + from("COPY --link a.txt /linked/"), files: fewFiles },
  { name: "COPY --chmod with the 1.4 frontend", dockerfile: "# syntax=docker/dockerfile:1.4\n" + scratch("COPY --chmod=0600 a.txt /m/"), files: fewFiles },
];

/** A minimal ustar archive of regular files (for ADD cases). */
export function tarOf(files: Record<string, string>): Uint8Array {
  const blocks: Buffer[] = [];
  for (const [name, content] of Object.entries(files)) {
    const header = Buffer.alloc(512);
    header.write(name, 0);
    header.write("0000644\0", 100);
    header.write("0000000\0", 108);
    header.write("0000000\0", 116);
    header.write(content.length.toString(8).padStart(11, "0") + "\0", 124);
    header.write("00000000000\0", 136);
    header.write("        ", 148);
    header.write("0", 156);
    header.write("ustar\0" + "00", 257);
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(sum.toString(8).padStart(6, "0") + "\0 ", 148);
    blocks.push(header);
    const body = Buffer.alloc(Math.ceil(content.length / 512) * 512);
    body.write(content);
    blocks.push(body);
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}
