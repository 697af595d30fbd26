/**
 * A real RPM database made by Debian's rpm (4.18, SQLite backend): packages built from
 * hand-written specs with rpmbuild and recorded with `rpm -i --justdb`. `rpm -qa` on it is the
 * independent answer the SBOM is checked against.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface RpmSpec {
  name: string;
  version: string;
  release: string;
  epoch?: number;
  arch: string;
  license: string;
}

function run(argv: string[]) {
  const result = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  if (result.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${result.stderr.toString()}`);
  return result.stdout.toString();
}

/** The database file's bytes, and what `rpm -qa` lists in it (NAME EPOCH:VERSION-RELEASE ARCH). */
export function makeRpmDatabase(work: string, specs: RpmSpec[]): { database: Buffer; listed: string[] } {
  const dir = mkdtempSync(join(work, "rpmdb-"));
  try {
    const top = join(dir, "top");
    mkdirSync(join(top, "SPECS"), { recursive: true });
    for (const spec of specs) {
      const file = join(top, "SPECS", `${spec.name}.spec`);
      const epoch = spec.epoch === undefined ? "" : `Epoch: ${spec.epoch}\n`;
      writeFileSync(file, `Name: ${spec.name}\nVersion: ${spec.version}\nRelease: ${spec.release}\n${epoch}Summary: test\nLicense: ${spec.license}\nBuildArch: ${spec.arch}\n%description\ntest\n%files\n`);
      run(["rpmbuild", "-bb", "--quiet", "--define", `_topdir ${top}`, file]);
    }
    const root = join(dir, "root");
    mkdirSync(root);
    const db = ["--root", root, "--dbpath", "/var/lib/rpm"];
    run(["rpm", ...db, "--initdb"]);
    const rpms = specs.map((s) => join(top, "RPMS", s.arch, `${s.name}-${s.version}-${s.release}.${s.arch}.rpm`));
    run(["rpm", ...db, "-i", "--justdb", "--nodeps", "--noscripts", "--ignorearch", ...rpms]);
    const listed = run(["rpm", ...db, "-qa", "--qf", "%{NAME} %{EPOCHNUM}:%{VERSION}-%{RELEASE} %{ARCH}\\n"]).trim().split("\n").sort();
    return { database: readFileSync(join(root, "var/lib/rpm/rpmdb.sqlite")), listed };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
