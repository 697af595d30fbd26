import { expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeRpmDatabase } from "../../test/support/rpmdb.ts";
import { apkPackages, dpkgPackages, goPackages, npmPackage, packagesIn, pythonPackage, rpmPackages } from "./packages.ts";

const DPKG = `Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9+deb12u4
Description: GNU C Library
 continued line: Version: 9

Package: removed-one
Status: deinstall ok config-files
Version: 1.0

Package: zlib1g
Status: install ok installed
Architecture: amd64
Version: 1:1.2.13.dfsg-1
`;

test("dpkg: installed packages only, continuation lines ignored, purl with distro and arch", () => {
  expect(dpkgPackages(DPKG, "/var/lib/dpkg/status", "debian").map((p) => p.purl)).toEqual([
    "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64",
    "pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1?arch=amd64",
  ]);
});

test("apk: P/V/A/L lines of each paragraph", () => {
  const text = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\n\nP:busybox\nV:1.36.1-r5\nA:x86_64\nL:GPL-2.0-only\n";
  expect(apkPackages(text, "/lib/apk/db/installed", "alpine").map((p) => [p.name, p.version, p.license, p.purl])).toEqual([
    ["musl", "1.2.4-r2", "MIT", "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64"],
    ["busybox", "1.36.1-r5", "GPL-2.0-only", "pkg:apk/alpine/busybox@1.36.1-r5?arch=x86_64"],
  ]);
});

test("npm: scoped names keep their scope in the purl; a broken package.json is no package", () => {
  expect(npmPackage(JSON.stringify({ name: "@types/node", version: "20.1.0", license: "MIT" }), "/x")[0]!.purl).toBe("pkg:npm/%40types/node@20.1.0");
  expect(npmPackage("{not json", "/x")).toEqual([]);
  expect(npmPackage(JSON.stringify({ name: "no-version" }), "/x")).toEqual([]);
});

test("python: METADATA headers, the name normalized in the purl, the body not read", () => {
  const text = "Metadata-Version: 2.1\nName: Foo_Bar\nVersion: 1.0\nLicense: MIT\n\nName: not-this\n";
  expect(pythonPackage(text, "/x")).toMatchObject([{ name: "Foo_Bar", version: "1.0", license: "MIT", purl: "pkg:pypi/foo-bar@1.0" }]);
});

/** Go's inline build information (Go 1.18+), as the linker lays it out. */
function goBinary(version: string, modinfo: string): Buffer {
  const header = Buffer.alloc(32);
  header.write("\xff Go buildinf:", 0, "latin1");
  header[14] = 8;
  header[15] = 2;
  const sentinel = Buffer.alloc(16, 0x30);
  const varstr = (b: Buffer) => Buffer.concat([Buffer.from([b.length]), b]);
  return Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46]), Buffer.alloc(60), header, varstr(Buffer.from(version)), varstr(Buffer.concat([sentinel, Buffer.from(modinfo), sentinel]))]);
}

test("go: the main module and dependencies from the build information, and the standard library", () => {
  const binary = goBinary("go1.22.1", "path\texample.com/app\nmod\texample.com/app\tv1.2.3\th1:x=\ndep\tgolang.org/x/sys\tv0.1.0\th1:y=\n");
  expect(goPackages(binary, "/app").map((p) => p.purl)).toEqual(["pkg:golang/stdlib@go1.22.1", "pkg:golang/example.com/app@v1.2.3", "pkg:golang/golang.org/x/sys@v0.1.0"]);
});

test("go: a real binary Debian built (docker-registry) names the Go it was built with", () => {
  const packages = goPackages(readFileSync("/usr/bin/docker-registry"), "/usr/bin/docker-registry");
  const version = Bun.spawnSync(["strings", "-n", "6", "/usr/bin/docker-registry"]).stdout.toString().match(/^go1\.\d+(\.\d+)?$/m)?.[0];
  expect(packages[0]).toMatchObject({ name: "stdlib", version });
});

test("packagesIn: each file read by its kind, sorted, os-release naming the distro", () => {
  const files = new Map([
    ["etc/os-release", Buffer.from('NAME="Ubuntu"\nID=ubuntu\n')],
    ["var/lib/dpkg/status", Buffer.from(DPKG)],
    ["app/node_modules/a/package.json", Buffer.from('{"name":"a","version":"1.0.0"}')],
  ]);
  expect(packagesIn(files).map((p) => p.purl)).toEqual(["pkg:deb/ubuntu/libc6@2.36-9%2Bdeb12u4?arch=amd64", "pkg:deb/ubuntu/zlib1g@1%3A1.2.13.dfsg-1?arch=amd64", "pkg:npm/a@1.0.0"]);
});

test("rpm: what `rpm -qa` lists in a database Debian's rpm wrote, epoch and arch in the purl", () => {
  const work = mkdtempSync(join(tmpdir(), "memobuild-rpm-"));
  try {
    const { database, listed } = makeRpmDatabase(work, [
      { name: "hand-rpm", version: "1.2.3", release: "4", arch: "noarch", license: "MIT" },
      { name: "epoch-rpm", version: "0.9", release: "1.el9", epoch: 2, arch: "x86_64", license: "GPL-2.0-only" },
    ]);
    const packages = rpmPackages(database, undefined, "/var/lib/rpm/rpmdb.sqlite", "rocky");
    const epochOf = (purl: string) => /epoch=(\d+)/.exec(purl)?.[1] ?? "0";
    expect(packages.map((p) => `${p.name} ${epochOf(p.purl)}:${p.version} ${p.arch}`).sort()).toEqual(listed);
    expect(packages.map((p) => p.purl).sort()).toEqual(["pkg:rpm/rocky/epoch-rpm@0.9-1.el9?arch=x86_64&epoch=2", "pkg:rpm/rocky/hand-rpm@1.2.3-4?arch=noarch"]);
    expect(() => rpmPackages(Buffer.from("not sqlite"), undefined, "/var/lib/rpm/rpmdb.sqlite", "x")).toThrow("/var/lib/rpm/rpmdb.sqlite in the image is not a readable RPM database");
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
