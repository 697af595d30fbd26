/**
 * What a worker grants a job and the build flags it makes of the job's definition: entitlements
 * only those the job asks for, the worker was started with and a trusted (read-write) submitter
 * may have; every value joined to its flag.
 */
import { expect, test } from "bun:test";
import { parseAddHost } from "../executor/sandbox.ts";
import { parseJobDefinition } from "../remote/job-definition.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { askedFlags, buildFailure, grantedEntitlements, refuseUntrustedLimits, Worker } from "./worker.ts";

const job = (extra: Record<string, unknown>) =>
  parseJobDefinition({ version: 1, dockerfile: { text: "FROM scratch\n", path: "Dockerfile" }, buildArgs: {}, noCache: false, context: { manifest: "a".repeat(64), digest: "b".repeat(64) }, images: {}, labels: {}, secrets: [], ...extra });
const trusted = { id: "0123456789ab", trusted: true };
const untrusted = { id: "0123456789ab", trusted: false };
const granting = { name: "w1", allow: ["network.host", "security.insecure"] };

test("a job gets the entitlements it asks for, not every one its worker may grant", () => {
  expect(grantedEntitlements(job({}), trusted, granting)).toEqual([]);
  expect(grantedEntitlements(job({ allow: ["security.insecure"] }), trusted, granting)).toEqual(["security.insecure"]);
});

test("an untrusted submitter's job, or one asking what the worker does not grant, fails saying why", () => {
  expect(() => grantedEntitlements(job({ allow: ["network.host"] }), untrusted, granting)).toThrow("--allow network.host: a job of a read-only token is never granted an entitlement");
  expect(() => grantedEntitlements(job({ allow: ["network.host"] }), undefined, granting)).toThrow("never granted an entitlement");
  expect(() => grantedEntitlements(job({ allow: ["network.host"] }), trusted, { name: "w2", allow: ["security.insecure"] })).toThrow("--allow network.host: worker w2 does not grant it (start it with memobuild worker --allow network.host)");
});

test("--add-host NAME:host-gateway needs network.host asked for and granted: it reaches the worker's loopback", () => {
  const gateway = { sandbox: { addHost: ["gw:host-gateway"] } };
  expect(() => grantedEntitlements(job(gateway), trusted, granting)).toThrow("--add-host NAME:host-gateway reaches the worker's loopback");
  expect(() => grantedEntitlements(job({ ...gateway, allow: ["network.host"] }), untrusted, granting)).toThrow("never granted an entitlement");
  expect(grantedEntitlements(job({ ...gateway, allow: ["network.host"] }), trusted, granting)).toEqual(["network.host"]);
});

test("host-gateway in brackets (as an IPv6 address may be written) is host-gateway too: it needs network.host", () => {
  // The attack: a read-only token's job (no --allow, so no 403) sent by hand with this spelling,
  // which the build reads as host-gateway and so opens the worker's loopback to its RUN.
  expect(parseAddHost("gw:[host-gateway]")).toEqual(["gw", "host-gateway"]);
  for (const spec of ["gw:[host-gateway]", "gw=[host-gateway]"]) {
    expect(() => grantedEntitlements(job({ sandbox: { addHost: [spec] } }), untrusted, granting)).toThrow("--add-host NAME:host-gateway reaches the worker's loopback");
    expect(() => grantedEntitlements(job({ sandbox: { addHost: [spec] }, allow: ["network.host"] }), untrusted, granting)).toThrow("never granted an entitlement");
  }
  // An address is still no gateway, bracketed or not.
  expect(grantedEntitlements(job({ sandbox: { addHost: ["db:[::1]", "db2:10.0.2.2"] } }), untrusted, granting)).toEqual([]);
});

test("the carried flags become the build's own, each value joined to its flag", () => {
  const definition = job({ network: "none", sandbox: { addHost: ["db:10.1.2.3"], shmSize: "8m", ulimit: ["nofile=777:777"] }, noCacheFilter: ["a"], pull: true, annotations: { "org.example.k": "v=w" } });
  expect(askedFlags(definition)).toEqual(["--network=none", "--add-host=db:10.1.2.3", "--shm-size=8m", "--ulimit=nofile=777:777", "--no-cache-filter=a", "--pull", "--annotation=manifest:org.example.k=v=w"]);
  expect(askedFlags(job({}))).toEqual([]);
});

test("an untrusted submitter's job sets only limits that bound its own RUNs: the worker refuses the rest at claim", () => {
  // The attack: limits that give the RUN power over the shared worker (real-time scheduling that
  // starves it, pinned memory, a better nice), by a read-only token's job.
  for (const spec of ["rtprio=99", "rttime=-1", "memlock=-1", "nice=40", "nofile=-1", "nofile=1024:2000000", "msgqueue=100000000", "sigpending=-1", "bogus=1"]) {
    const definition = job({ sandbox: { addHost: [], ulimit: ["nofile=777:777", spec] } });
    expect(() => refuseUntrustedLimits(definition, untrusted)).toThrow(`--ulimit ${spec}: a read-only token's build may set only limits that bound its own RUNs (core, cpu, data, fsize, locks, nproc, rss, stack, nofile up to 1048576, msgqueue up to 819200, sigpending up to 65536)`);
    expect(() => refuseUntrustedLimits(definition, undefined)).toThrow(`--ulimit ${spec}`);
    // A read-write token's job keeps every limit.
    expect(() => refuseUntrustedLimits(definition, trusted)).not.toThrow();
  }
  const bounded = job({ sandbox: { addHost: [], ulimit: ["nofile=777:777", "nproc=-1", "core=0", "stack=8388608", "fsize=-1", "cpu=60:120", "msgqueue=819200", "sigpending=1024"] } });
  expect(() => refuseUntrustedLimits(bounded, untrusted)).not.toThrow();
});

test("a failed build's error is its stderr's last lines without the build's own 'memobuild: ' prefix (the client prints its own before it)", () => {
  const stderr = "warning: pulling x: it is not in the local image store\nmemobuild: Dockerfile:1:1: FROM x: cannot reach registry\n";
  expect(buildFailure(stderr, 1)).toBe("warning: pulling x: it is not in the local image store Dockerfile:1:1: FROM x: cannot reach registry");
  expect(buildFailure("", 3)).toBe("the build exited with 3");
  expect(buildFailure(Array.from({ length: 30 }, (_, i) => `line ${i}`).join("\n"), 1)).toStartWith("line 10 line 11");
});

test("stop() ends an idle worker at once: its pending claim (a long poll) is abandoned, not waited out", async () => {
  let claimed!: () => void;
  const claimSeen = new Promise<void>((resolve) => (claimed = resolve));
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  // A server that holds every claim until the test ends, as a queue with no work holds it for seconds.
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: async () => (claimed(), await released, new Response(null, { status: 204 })) });
  const cacheDir = mkdtempSync(join(tmpdir(), "memobuild-worker-stop-"));
  try {
    const worker = new Worker({ server: `http://127.0.0.1:${server.port}`, token: "worker-token-0123", name: "w", jobs: 1, cacheDir, trust: [], labels: {}, allow: [], binary: "/bin/false", log: () => {} });
    const running = worker.run();
    await claimSeen;
    await worker.stop();
    const ended = await Promise.race([running.then(() => "stopped"), Bun.sleep(3_000).then(() => "still claiming")]);
    expect(ended).toBe("stopped");
  } finally {
    release();
    server.stop(true);
    rmSync(cacheDir, { recursive: true, force: true });
  }
});
