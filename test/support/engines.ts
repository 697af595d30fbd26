/**
 * The real engines the scale-out back ends are tested against, started once per test run (a
 * bun test process) on loopback and torn down when it exits:
 *
 *   postgres()  a throwaway PostgreSQL cluster (Debian's `postgresql`): initdb -A trust as the
 *               postgres user, fsync off, a free port; each caller gets a fresh database in it.
 *   s3()        Ceph's RADOS Gateway (Debian's ceph-mon, ceph-osd, radosgw): one monitor, one
 *               OSD on memstore, auth none inside the cluster, a user with known keys and one
 *               bucket; each caller gets a fresh prefix in it.
 *
 * Nothing is skipped: an engine that cannot start fails the test that asked for it, loudly, with
 * what the engine said.
 */
import { spawnSync } from "node:child_process";
import { createHash, createHmac, randomBytes, randomUUID } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
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

/**
 * Stops an engine when this test process ends, however it ends (kill -9 included): a detached
 * shell waits for this pid to go, then runs `stop` (which names exactly the engine's processes).
 */
function reapWhenGone(stop: string) {
  // In a session of its own: a Ctrl-C (or a timeout) that stops the test run's process group
  // must not stop the watcher with it.
  const watcher = Bun.spawn(["setsid", "sh", "-c", `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; ${stop}`], { stdio: ["ignore", "ignore", "ignore"] });
  watcher.unref();
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
  reapWhenGone(`runuser -u postgres -- ${join(bin, "pg_ctl")} -D ${data} -m immediate stop >/dev/null 2>&1; rm -rf ${dir}`);
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

// ---- S3: Ceph RADOS Gateway

export interface S3Engine {
  endpoint: string;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** The --blobs URL for a fresh prefix, and the environment that carries the credentials. */
  blobs(): { url: string; env: Record<string, string> };
}

let rgw: Promise<S3Engine> | undefined;

function cephConf(dir: string, monPort: number, rgwPort: number, fsid: string): string {
  // Known traps of a one-box test cluster: crc for radosgw's monitor client; no zone names;
  // fast paxos; low free-space thresholds; immediate gc; a bounded memstore (a full one hangs).
  return `[global]
fsid = ${fsid}
mon host = v1:127.0.0.1:${monPort}
mon initial members = a
public addr = 127.0.0.1
ms bind msgr2 = false
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
mon data avail warn = 1
mon data avail crit = 0
mon allow pool size one = true
mon max pg per osd = 1000
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
paxos propose interval = 0.01
osd objectstore = memstore
memstore device bytes = ${1536 * 1024 * 1024}
osd data = ${dir}/osd
mon data = ${dir}/mon
run dir = ${dir}/run
admin socket = ${dir}/run/$name.asok
pid file = ${dir}/run/$name.pid
log file = ${dir}/$name.log
keyring = ${dir}/keyring
rgw gc obj min wait = 0
rgw frontends = beast endpoint=127.0.0.1:${rgwPort}
rgw data = ${dir}/rgw
`;
}

/**
 * Runs `step` again while it fails with `transient` in its error: a monitor just started
 * answers "EPERM: problem getting command descriptions" until it has formed its quorum.
 */
async function settled(step: () => unknown, transient: string) {
  for (let attempt = 1; ; attempt++) {
    try {
      return step();
    } catch (error) {
      if (attempt === 20 || !String(error).includes(transient)) throw error;
      await Bun.sleep(250 * Math.min(attempt, 4));
    }
  }
}

async function startRgw(): Promise<S3Engine> {
  for (const command of ["ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph"]) {
    if (spawnSync("sh", ["-c", `command -v ${command}`]).status !== 0) throw new Error(`${command} is not installed: run scripts/install-system-deps.sh (Debian: ceph-mon ceph-osd radosgw ceph-common)`);
  }
  const dir = mkdtempSync("/tmp/memobuild-ceph-");
  // The daemons' own pid files name them (written as they start, read when the run ends).
  reapWhenGone(`for f in ${dir}/run/*.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")"; done 2>/dev/null; rm -rf ${dir}`);
  for (const sub of ["mon", "osd", "run", "rgw"]) mkdirSync(join(dir, sub));
  const [monPort, rgwPort] = [await freePort(), await freePort()];
  const conf = join(dir, "ceph.conf");
  const fsid = randomUUID();
  writeFileSync(conf, cephConf(dir, monPort, rgwPort, fsid));
  run(["ceph-authtool", "--create-keyring", join(dir, "keyring"), "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"], "ceph-authtool");
  run(["monmaptool", "--create", "--addv", "a", `v1:127.0.0.1:${monPort}`, "--fsid", fsid, join(dir, "monmap")], "monmaptool");
  run(["ceph-mon", "-c", conf, "--mkfs", "-i", "a", "--monmap", join(dir, "monmap")], "ceph-mon --mkfs");
  run(["ceph-mon", "-c", conf, "-i", "a"], "ceph-mon");
  const osdUuid = randomUUID();
  run(["ceph-osd", "-c", conf, "-i", "0", "--mkfs", "--osd-uuid", osdUuid], "ceph-osd --mkfs");
  await settled(() => run(["ceph", "-c", conf, "--connect-timeout", "30", "osd", "new", osdUuid, "0"], "ceph osd new"), "EPERM");
  // A new OSD's first start sometimes meets a monitor that has not settled its entry yet.
  await settled(() => run(["ceph-osd", "-c", conf, "-i", "0"], "ceph-osd"), "wrong fsid");
  run(["radosgw", "-c", conf, "-n", "client.rgw"], "radosgw");
  const [accessKeyId, secretAccessKey] = [`AK${randomBytes(8).toString("hex").toUpperCase()}`, randomBytes(20).toString("hex")];
  run(["radosgw-admin", "-c", conf, "user", "create", "--uid", "memobuild", "--display-name", "memobuild tests", "--access-key", accessKeyId, "--secret", secretAccessKey], "radosgw-admin user create");
  const engine: Omit<S3Engine, "blobs"> = { endpoint: `http://127.0.0.1:${rgwPort}`, bucket: "memobuild", region: "us-east-1", accessKeyId, secretAccessKey };
  await waitForGateway(engine.endpoint, dir);
  await createBucket(engine);
  let prefixes = 0;
  return {
    ...engine,
    blobs() {
      const prefix = `t${process.pid}-${++prefixes}`;
      const url = `s3://${engine.bucket}/${prefix}?endpoint=${encodeURIComponent(engine.endpoint)}&region=${engine.region}`;
      return { url, env: { AWS_ACCESS_KEY_ID: accessKeyId, AWS_SECRET_ACCESS_KEY: secretAccessKey } };
    },
  };
}

async function waitForGateway(endpoint: string, dir: string) {
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(endpoint, { signal: AbortSignal.timeout(2000) })).ok) return;
    } catch {}
    await Bun.sleep(200);
  }
  const log = existsSync(join(dir, "client.rgw.log")) ? readFileSync(join(dir, "client.rgw.log"), "utf8").slice(-4000) : "(no log)";
  throw new Error(`the RADOS Gateway did not answer at ${endpoint} within 90 s:\n${log}`);
}

/**
 * Bun's S3 client cannot create buckets: this one PUT is signed here (AWS Signature V4 with
 * node:crypto; curl --aws-sigv4 gets SignatureDoesNotMatch from the gateway).
 */
async function createBucket(engine: Omit<S3Engine, "blobs">) {
  const url = new URL(`${engine.endpoint}/${engine.bucket}`);
  const amzDate = new Date().toISOString().replace(/[:-]|\.\d{3}/g, "");
  const day = amzDate.slice(0, 8);
  const payload = createHash("sha256").update("").digest("hex");
  const headers: Record<string, string> = { host: url.host, "x-amz-content-sha256": payload, "x-amz-date": amzDate };
  const names = Object.keys(headers).sort();
  const canonical = ["PUT", url.pathname, "", ...names.map((name) => `${name}:${headers[name]}`), "", names.join(";"), payload].join("\n");
  const scope = `${day}/${engine.region}/s3/aws4_request`;
  const toSign = ["AWS4-HMAC-SHA256", amzDate, scope, createHash("sha256").update(canonical).digest("hex")].join("\n");
  let key = createHmac("sha256", `AWS4${engine.secretAccessKey}`).update(day).digest();
  for (const part of [engine.region, "s3", "aws4_request"]) key = createHmac("sha256", key).update(part).digest();
  const signature = createHmac("sha256", key).update(toSign).digest("hex");
  const authorization = `AWS4-HMAC-SHA256 Credential=${engine.accessKeyId}/${scope}, SignedHeaders=${names.join(";")}, Signature=${signature}`;
  const response = await fetch(url, { method: "PUT", headers: { ...headers, authorization } });
  if (!response.ok) throw new Error(`creating bucket ${engine.bucket} on the gateway: HTTP ${response.status} ${await response.text()}`);
}

/** Starts the run's RADOS Gateway (once; later calls wait for the same start). */
export function s3(): Promise<S3Engine> {
  rgw ??= startRgw();
  return rgw;
}
