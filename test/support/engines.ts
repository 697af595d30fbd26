/**
 * The real engines the scale-out back ends are tested against, started once per test run (a
 * bun test process) on loopback and torn down when it exits:
 *
 *   postgres()  a throwaway PostgreSQL cluster (Debian's `postgresql`): initdb -A trust as the
 *               postgres user, fsync off, a free port; each caller gets a fresh database in it.
 *
 * Nothing is skipped: an engine that cannot start fails the test that asked for it, loudly, with
 * what the engine said.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";

/** A port the kernel had free a moment ago (engines that cannot take port 0 need one). */
export async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function run(argv: string[], what: string, user?: string): string {
  const command = user ? ["runuser", "-u", user, "--", ...argv] : argv;
  const result = spawnSync(command[0], command.slice(1), { encoding: "utf8", timeout: 120_000 });
  if (result.status !== 0) {
    throw new Error(`${what} failed (${command.join(" ")}, exit ${result.status ?? result.signal}):\n${result.stdout}${result.stderr}${result.error ? String(result.error) : ""}`);
  }
  return result.stdout;
}

function postgresBin(): string {
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root) ? readdirSync(root).sort((a, b) => Number(b) - Number(a)) : [];
  const bin = versions.map((v) => join(root, v, "bin")).find((dir) => existsSync(join(dir, "initdb")));
  if (!bin) throw new Error("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run scripts/install-system-deps.sh");
  return bin;
}

interface Cluster {
  port: number;
  dir: string;
}

let cluster: Promise<Cluster> | undefined;
let databases = 0;

async function startCluster(): Promise<Cluster> {
  const bin = postgresBin();
  // Under /tmp, not the test's work directory: the postgres user must reach it.
  const dir = mkdtempSync("/tmp/memobuild-pg-");
  chmodSync(dir, 0o755);
  run(["chown", "postgres:postgres", dir], "chown of the PostgreSQL directory");
  const data = join(dir, "data");
  run([join(bin, "initdb"), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "-D", data], "initdb", "postgres");
  const port = await freePort();
  const settings = `-c listen_addresses=127.0.0.1 -p ${port} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c unix_socket_directories=${dir} -c max_connections=200`;
  run([join(bin, "pg_ctl"), "-D", data, "-o", settings, "-l", join(dir, "log"), "-w", "-t", "60", "start"], "pg_ctl start", "postgres");
  process.once("exit", () => {
    spawnSync("runuser", ["-u", "postgres", "--", join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "stop"]);
    rmSync(dir, { recursive: true, force: true });
  });
  return { port, dir };
}

/** Starts the run's PostgreSQL cluster (once; later calls wait for the same start). */
export async function startPostgres(): Promise<void> {
  cluster ??= startCluster();
  await cluster;
}

/** A fresh, empty database on the run's PostgreSQL cluster: its postgres:// URL. */
export async function postgres(): Promise<string> {
  cluster ??= startCluster();
  const { port } = await cluster;
  const name = `t${process.pid}_${++databases}`;
  const admin = new Bun.SQL(`postgres://postgres@127.0.0.1:${port}/postgres`);
  try {
    await admin.unsafe(`CREATE DATABASE ${name}`);
  } finally {
    await admin.close();
  }
  return `postgres://postgres@127.0.0.1:${port}/${name}`;
}
