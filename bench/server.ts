/**
 * Remote cache server benchmark, in one run on loopback:
 *  - cache hits (GET /v1/blobs/…) for a 4 KiB and a 4 MiB blob: requests per second and
 *    latency from wrk, beside nginx serving the same files from disk (goal: at least nginx's
 *    requests per second). nginx runs a worker per core (2 here), as deployed; `serve` answers
 *    on one JavaScript thread, so nginx with one worker is measured too, for the comparison
 *    process for process;
 *  - uploading a 1 GB blob (verified while streaming): MB/s, and the server's peak memory.
 *
 *   bun run bench/server.ts [--duration 10] [--connections 32]
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { blake3Hex, hashFile } from "../src/hash/blake3.ts";
import { memobuildBinary, REPO_ROOT } from "../test/support/binary.ts";

const { values } = parseArgs({ options: { duration: { type: "string", default: "10" }, connections: { type: "string", default: "32" } } });
const work = mkdtempSync(join(tmpdir(), "memobuild-bench-server-"));
const TOKEN = "bench-token-0123456789";
const children: ReturnType<typeof Bun.spawn>[] = [];

function need(command: string, pkg: string) {
  if (Bun.which(command) || Bun.which(command, { PATH: "/usr/sbin:/usr/bin" })) return;
  const result = Bun.spawnSync(["bash", join(REPO_ROOT, "scripts/install-system-deps.sh"), pkg], { stderr: "inherit" });
  if (result.exitCode !== 0) throw new Error(`${command} is missing`);
}

async function waitFor(url: string) {
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(url)).status < 500) return;
    } catch {
      // not yet
    }
    await Bun.sleep(50);
  }
  throw new Error(`${url} did not answer`);
}

interface WrkResult {
  rps: number;
  p50: string;
  p99: string;
  transfer: string;
}

function wrk(url: string, auth: boolean): WrkResult {
  const args = ["wrk", "-t2", `-c${values.connections}`, `-d${values.duration}s`, "--latency", ...(auth ? ["-H", `Authorization: Bearer ${TOKEN}`] : []), url];
  const out = Bun.spawnSync(args, { stdout: "pipe", stderr: "pipe" }).stdout.toString();
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
  const p50 = /^\s+50%\s+(\S+)/m.exec(out)?.[1] ?? "?";
  const p99 = /^\s+99%\s+(\S+)/m.exec(out)?.[1] ?? "?";
  const transfer = /Transfer\/sec:\s+(\S+)/.exec(out)?.[1] ?? "?";
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  if (non2xx) throw new Error(`wrk saw ${non2xx[1]} error responses from ${url}`);
  return { rps, p50, p99, transfer };
}

try {
  need("wrk", "wrk");
  need("nginx", "nginx");
  const port = 18000 + (process.pid % 500);
  const data = join(work, "server-data");
  const server = Bun.spawn([memobuildBinary(), "serve", "--listen", `127.0.0.1:${port}`, "--data", data, "--token", TOKEN], { stdout: "ignore", stderr: "ignore", env: { ...process.env, MEMOBUILD_LOG: "warn" } });
  children.push(server);
  const base = `http://127.0.0.1:${port}`;
  await waitFor(`${base}/healthz`);

  // The same blobs in the cache and in nginx's root, at the same paths.
  const root = join(work, "nginx-root");
  mkdirSync(join(root, "v1/blobs"), { recursive: true });
  const blobs: Record<string, string> = {};
  for (const [name, size] of [["4KiB", 4096], ["4MiB", 4 * 1024 * 1024]] as const) {
    const body = new Uint8Array(size).map((_, i) => (i * 31 + size) % 251);
    const hash = blake3Hex(body);
    const put = await fetch(`${base}/v1/blobs/${hash}`, { method: "PUT", body, headers: { authorization: `Bearer ${TOKEN}` } });
    if (put.status !== 201) throw new Error(`upload failed: ${put.status}`);
    writeFileSync(join(root, "v1/blobs", hash), body);
    blobs[name] = hash;
  }
  // nginx as deployed (a worker per core), and with one worker (serve's one JavaScript thread).
  const nginxPorts = { 2: port + 1, 1: port + 2 };
  for (const [workers, nginxPort] of Object.entries(nginxPorts)) {
    const conf = join(work, `nginx-${workers}.conf`);
    writeFileSync(
      conf,
      `user root; daemon off; worker_processes ${workers}; pid ${join(work, `nginx-${workers}.pid`)}; error_log ${join(work, "nginx-error.log")};
events { worker_connections 1024; }
http { access_log off; sendfile on; tcp_nopush on; client_body_temp_path ${work}/nb; proxy_temp_path ${work}/np; fastcgi_temp_path ${work}/nf; uwsgi_temp_path ${work}/nu; scgi_temp_path ${work}/ns;
  server { listen 127.0.0.1:${nginxPort}; root ${root}; } }\n`,
    );
    children.push(Bun.spawn([Bun.which("nginx") ?? "/usr/sbin/nginx", "-c", conf, "-e", join(work, "nginx-error.log")], { stdout: "ignore", stderr: "ignore" }));
    await waitFor(`http://127.0.0.1:${nginxPort}/`);
  }

  console.log(`cache hits, wrk -t2 -c${values.connections} -d${values.duration}s on loopback (memobuild with token auth; nginx static files)`);
  for (const name of ["4KiB", "4MiB"]) {
    const path = `/v1/blobs/${blobs[name]}`;
    const mb = wrk(`${base}${path}`, true);
    const ng = wrk(`http://127.0.0.1:${nginxPorts[2]}${path}`, false);
    const one = wrk(`http://127.0.0.1:${nginxPorts[1]}${path}`, false);
    console.log(
      `  ${name.padEnd(5)} memobuild ${mb.rps.toFixed(0).padStart(7)} req/s (p50 ${mb.p50}, p99 ${mb.p99}, ${mb.transfer}/s)   ` +
        `nginx ${ng.rps.toFixed(0).padStart(7)} req/s (p50 ${ng.p50}, p99 ${ng.p99})   ratio ${(mb.rps / ng.rps).toFixed(2)} (goal >= 1)   ` +
        `nginx with 1 worker ${one.rps.toFixed(0).padStart(7)} req/s (ratio ${(mb.rps / one.rps).toFixed(2)})`,
    );
  }

  // A 1 GB upload, verified while it streams.
  const big = join(work, "big.bin");
  const chunk = new Uint8Array(16 * 1024 * 1024).map((_, i) => (i * 7) % 251);
  const fd = Bun.file(big).writer();
  for (let i = 0; i < 64; i++) {
    chunk[0] = i;
    fd.write(chunk);
  }
  await fd.end();
  const hash = hashFile(big).digest.toString("hex");
  const statusFile = `/proc/${server.pid}/status`;
  const rssBefore = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(statusFile, "utf8"))?.[1] ?? 0);
  const started = performance.now();
  const upload = await fetch(`${base}/v1/blobs/${hash}`, { method: "PUT", body: Bun.file(big), headers: { authorization: `Bearer ${TOKEN}` } });
  const seconds = (performance.now() - started) / 1000;
  if (upload.status !== 201) throw new Error(`1 GB upload failed: ${upload.status} ${await upload.text()}`);
  const peak = Number(/VmHWM:\s+(\d+)/.exec(readFileSync(statusFile, "utf8"))?.[1] ?? 0);
  console.log(`1 GiB upload: ${(1024 / seconds).toFixed(0)} MB/s (${seconds.toFixed(2)} s, BLAKE3-verified while streaming); server RSS before ${(rssBefore / 1024).toFixed(0)} MiB, peak ${(peak / 1024).toFixed(0)} MiB`);
} finally {
  for (const child of children) child.kill("SIGTERM");
  await Promise.all(children.map((c) => c.exited));
  rmSync(work, { recursive: true, force: true });
}
