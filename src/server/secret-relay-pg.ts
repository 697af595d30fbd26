/**
 * The secret relay across replicas (`serve --db`): the submitter follows its build on replica A
 * while the worker asks replica B, and nothing but the database connects them.
 *
 * Why through the database, and why sealed: routing the worker's request to the replica that
 * holds the submitter's session would need every replica to know and reach every other's
 * address (and a load balancer that keeps a long poll where it started); the database is
 * already the one thing all replicas share. But a row (and NOTIFY's queue, which PostgreSQL
 * spills to pg_notify/ on disk) is at rest: the WAL, a base backup or a replica of the database
 * keeps it. So the secret never enters the database in the clear:
 *
 *   1. B makes a fresh X25519 key pair for this one ask, keeps the private half in this process's
 *      memory only, and writes the ask: the job, the secret ids, the public half (no values).
 *   2. A shows the ask to the submitter; the submitter answers A; A seals the values to B's
 *      public key (ephemeral X25519 + HKDF-SHA256 → AES-256-GCM, bound to the job and the ask)
 *      and writes the sealed box in the ask's row, then NOTIFY wakes B.
 *   3. B opens the box, deletes the row and forgets its private key.
 *
 * What stays behind (in the WAL, say) is a box for a key that existed only in B's memory, for
 * one request of at most a minute: nobody, the database's owner included, can open it later.
 * An ask nobody answered (B gone) expires with its row.
 */
import type { SQL } from "bun";
import { createCipheriv, createDecipheriv, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes, randomUUID, type KeyObject } from "node:crypto";
import type { PgJobQueue } from "./jobs-pg.ts";
import { askedValues, type SecretRelay } from "./secret-relay.ts";

export interface Sealed {
  /** The sealer's ephemeral X25519 public key (SPKI DER, base64). */
  epk: string;
  iv: string;
  tag: string;
  data: string;
}

const INFO = "memobuild secret relay v1";

function keyFor(secret: Buffer, job: string, ask: string): Buffer {
  return Buffer.from(hkdfSync("sha256", secret, Buffer.from(ask), `${INFO} ${job}`, 32));
}

/**
 * The values (any JSON: the agent relay seals its messages the same way), readable only by the
 * holder of the private half of `publicKey` (base64 SPKI DER).
 */
export function seal(values: unknown, publicKey: string, job: string, ask: string): Sealed {
  const ephemeral = generateKeyPairSync("x25519");
  const theirs = createPublicKey({ key: Buffer.from(publicKey, "base64"), format: "der", type: "spki" });
  const key = keyFor(diffieHellman({ privateKey: ephemeral.privateKey, publicKey: theirs }), job, ask);
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  cipher.setAAD(Buffer.from(`${job} ${ask}`));
  const data = Buffer.concat([cipher.update(JSON.stringify(values)), cipher.final()]);
  const epk = ephemeral.publicKey.export({ type: "spki", format: "der" }).toString("base64");
  return { epk, iv: iv.toString("base64"), tag: cipher.getAuthTag().toString("base64"), data: data.toString("base64") };
}

/** The values in a box sealed to `privateKey`; throws when the box was not (or was altered). */
export function open<T = Record<string, string>>(sealed: Sealed, privateKey: KeyObject, job: string, ask: string): T {
  const theirs = createPublicKey({ key: Buffer.from(sealed.epk, "base64"), format: "der", type: "spki" });
  const key = keyFor(diffieHellman({ privateKey, publicKey: theirs }), job, ask);
  const decipher = createDecipheriv("aes-256-gcm", key, Buffer.from(sealed.iv, "base64"));
  decipher.setAAD(Buffer.from(`${job} ${ask}`));
  decipher.setAuthTag(Buffer.from(sealed.tag, "base64"));
  const text = Buffer.concat([decipher.update(Buffer.from(sealed.data, "base64")), decipher.final()]).toString("utf8");
  return JSON.parse(text) as T;
}

export class PgSecretRelay implements SecretRelay {
  constructor(
    private readonly sql: SQL,
    /** Its LISTEN wakes the asker when the answer lands, and the followers when an ask does. */
    private readonly queue: PgJobQueue,
  ) {}

  async ask(job: string, ids: string[], timeoutMs: number): Promise<Record<string, string> | undefined> {
    const ask = randomUUID();
    const { publicKey, privateKey } = generateKeyPairSync("x25519");
    const spki = publicKey.export({ type: "spki", format: "der" }).toString("base64");
    // Times in the row are the database's (another replica reads them), the wait is this process's.
    const deadline = Date.now() + timeoutMs;
    const expires = this.queue.time() + timeoutMs;
    // Asks whose askers are gone (a replica killed while it waited) go first.
    await this.sql`DELETE FROM job_secret_asks WHERE expires < ${this.queue.time()}`;
    // A newer ask replaces an older one (the older one's asker then finds its ask gone).
    await this.sql`INSERT INTO job_secret_asks VALUES (${job}, ${ask}, ${JSON.stringify(ids)}, ${spki}, NULL, ${expires})
      ON CONFLICT (job) DO UPDATE SET ask = excluded.ask, ids = excluded.ids, public_key = excluded.public_key, sealed = NULL, expires = excluded.expires`;
    await this.queue.announce(job);
    try {
      while (Date.now() < deadline) {
        const [row] = await this.sql`SELECT ask, sealed FROM job_secret_asks WHERE job = ${job}`;
        if (!row || row.ask !== ask) return undefined;
        if (row.sealed) return open(JSON.parse(row.sealed) as Sealed, privateKey, job, ask);
        await this.queue.changed(Math.min(1000, deadline - Date.now()), job);
      }
      return undefined;
    } finally {
      await this.sql`DELETE FROM job_secret_asks WHERE job = ${job} AND ask = ${ask}`;
    }
  }

  async asks(job: string) {
    const [row] = await this.sql`SELECT ids FROM job_secret_asks WHERE job = ${job} AND sealed IS NULL AND expires > ${this.queue.time()}`;
    return row ? (JSON.parse(row.ids) as string[]) : undefined;
  }

  async answer(job: string, values: Record<string, unknown>) {
    const [row] = await this.sql`SELECT ask, ids, public_key FROM job_secret_asks WHERE job = ${job} AND sealed IS NULL AND expires > ${this.queue.time()}`;
    if (!row) return false;
    const sealed = seal(askedValues(JSON.parse(row.ids) as string[], values), row.public_key, job, row.ask);
    // Only that ask, and only once: a replaced or already answered ask is left alone.
    const changed = await this.sql`UPDATE job_secret_asks SET sealed = ${JSON.stringify(sealed)} WHERE job = ${job} AND ask = ${row.ask} AND sealed IS NULL RETURNING job`;
    if (changed.length) await this.queue.announce(job);
    return changed.length > 0;
  }
}
