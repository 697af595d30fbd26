/** Signatures checked by OpenSSL, not by this code: what cosign's format promises another verifier. */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dsseEnvelope, generateEcdsaKey, loadPublicKey, loadSigningKey, openEnvelope, signBytes, simpleSigningPayload } from "./sign.ts";
import { preAuthEncoding, statement } from "./statement.ts";

const dir = mkdtempSync(join(tmpdir(), "memobuild-sign-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const openssl = (...args: string[]) => Bun.spawnSync(["openssl", ...args], { stdout: "pipe", stderr: "pipe" });

function keyFiles(name: string) {
  const { privatePem, publicPem } = generateEcdsaKey();
  writeFileSync(join(dir, `${name}.key`), privatePem);
  writeFileSync(join(dir, `${name}.pub`), publicPem);
  return { key: join(dir, `${name}.key`), pub: join(dir, `${name}.pub`) };
}

test("a simple-signing signature verifies with openssl and the right key only", () => {
  const right = keyFiles("right");
  const other = keyFiles("other");
  const payload = simpleSigningPayload("127.0.0.1:5000/demo/app", `sha256:${"1".repeat(64)}`);
  writeFileSync(join(dir, "payload"), payload);
  writeFileSync(join(dir, "sig"), signBytes(loadSigningKey(right.key), payload));
  expect(openssl("dgst", "-sha256", "-verify", right.pub, "-signature", join(dir, "sig"), join(dir, "payload")).stdout.toString()).toBe("Verified OK\n");
  expect(openssl("dgst", "-sha256", "-verify", other.pub, "-signature", join(dir, "sig"), join(dir, "payload")).exitCode).not.toBe(0);
  expect(JSON.parse(payload.toString())).toEqual({
    critical: { identity: { "docker-reference": "127.0.0.1:5000/demo/app" }, image: { "docker-manifest-digest": `sha256:${"1".repeat(64)}` }, type: "cosign container image signature" },
    optional: null,
  });
});

test("keys openssl made are read; other curves are refused by name", () => {
  openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", join(dir, "ossl.key"));
  openssl("pkey", "-in", join(dir, "ossl.key"), "-pubout", "-out", join(dir, "ossl.pub"));
  expect(loadSigningKey(join(dir, "ossl.key")).asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
  expect(loadPublicKey(join(dir, "ossl.pub")).type).toBe("public");
  openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", join(dir, "p384.key"));
  expect(() => loadSigningKey(join(dir, "p384.key"))).toThrow("an ECDSA P-256 key is needed");
});

test("a DSSE envelope: the signature over the pre-authentication encoding verifies with openssl", () => {
  const keys = keyFiles("dsse");
  const envelope = dsseEnvelope(loadSigningKey(keys.key), statement({ name: "x", digest: { sha256: "2".repeat(64) } }, "https://example.com/p", { a: 1 }));
  const payload = Buffer.from(envelope.payload, "base64");
  writeFileSync(join(dir, "pae"), preAuthEncoding(envelope.payloadType, payload));
  expect(preAuthEncoding("t", Buffer.from("ab")).toString()).toBe("DSSEv1 1 t 2 ab");
  writeFileSync(join(dir, "dsse.sig"), Buffer.from(envelope.signatures[0]!.sig, "base64"));
  expect(openssl("dgst", "-sha256", "-verify", keys.pub, "-signature", join(dir, "dsse.sig"), join(dir, "pae")).stdout.toString()).toBe("Verified OK\n");
  expect(openEnvelope(loadPublicKey(keys.pub), envelope)).toMatchObject({ predicate: { a: 1 } });
  expect(openEnvelope(loadPublicKey(keys.pub), { ...envelope, payload: Buffer.from('{"x":1}').toString("base64") })).toBeUndefined();
});

test("a key file that is not there is said to be missing, not to be something else than PEM", () => {
  const missing = join(dir, "no-such.key");
  expect(() => loadSigningKey(missing)).toThrow(`${missing}: cannot be read (ENOENT: no such file or directory`);
  expect(() => loadPublicKey(missing)).toThrow(`${missing}: cannot be read (ENOENT: no such file or directory`);
  writeFileSync(join(dir, "garbage.key"), "not a key\n");
  expect(() => loadSigningKey(join(dir, "garbage.key"))).toThrow(`${join(dir, "garbage.key")}: not a PEM private key`);
});
