/**
 * `--ssh` of a remote build across replicas (`serve --db`): the worker's RUN talks to its agent
 * socket through replica B while the submitter, holding the agent, follows its build on replica
 * A (or on A and C in turn, behind a load balancer). The database is all they share, and agent
 * messages are as sensitive as secrets (a RUN's `ssh-add` sends a private key, a signature
 * request the data to sign), so, as in secret-relay-pg.ts, nothing crosses it in the clear:
 *
 *   1. A replica that shows a job's asks to its follower holds an X25519 key pair for that job in
 *      memory only, and publishes the public half (`job_agent_keys`, kept while it serves the
 *      follower: 2 minutes after its last poll).
 *   2. B writes each message as an ask sealed to every published key of its job (one box per
 *      replica; a replica that starts serving the follower later gets its box on B's next look),
 *      with the public half of a fresh key pair of that one ask, kept in B's memory.
 *   3. The follower's replica opens its box and shows the message; the replica the answer comes
 *      to seals the agent's reply to the ask's key; B opens it and deletes the row.
 *
 * What the database's files keep is boxes for keys that lived only in replicas' memory.
 */
import type { SQL } from "bun";
import { generateKeyPairSync, randomUUID, type KeyObject } from "node:crypto";
import type { PgJobQueue } from "./jobs-pg.ts";
import { num } from "./pg.ts";
import { open, seal, type Sealed } from "./secret-relay-pg.ts";
import { MAX_AGENT_ASKS, type AgentAsk, type AgentRelay } from "./secret-relay.ts";

type Message = Omit<AgentAsk, "id">;

/** A follower's replica keeps its key this long after its last poll (polls come every second or so). */
const KEY_TTL_MS = 120_000;
/** How often a replica in use moves its key's expiry on. */
const KEY_REFRESH_MS = 30_000;

interface FollowerKey {
  id: string;
  privateKey: KeyObject;
  /** When this replica last used it (this host's clock). */
  used: number;
  /** When its row's expiry was last moved on. */
  refreshed: number;
}

function keyPair() {
  const { publicKey, privateKey } = generateKeyPairSync("x25519");
  return { privateKey, spki: publicKey.export({ type: "spki", format: "der" }).toString("base64") };
}

export class PgAgentRelay implements AgentRelay {
  /** This replica's key per job whose follower it serves. */
  private readonly keys = new Map<string, FollowerKey>();

  constructor(
    private readonly sql: SQL,
    /** Its LISTEN wakes the asker when a reply or a new follower key lands, and the followers when an ask does. */
    private readonly queue: PgJobQueue,
  ) {}

  async ask(job: string, message: Message, timeoutMs: number): Promise<string | undefined> {
    const now = this.queue.time();
    // Asks and keys whose replicas are gone (killed while they waited) go first.
    await this.sql`DELETE FROM job_agent_asks WHERE expires < ${now}`;
    await this.sql`DELETE FROM job_agent_keys WHERE expires < ${now}`;
    const [count] = await this.sql`SELECT count(*) AS n FROM job_agent_asks WHERE job = ${job}`;
    if (num(count.n) >= MAX_AGENT_ASKS) return undefined;
    const id = randomUUID();
    const { privateKey, spki } = keyPair();
    const requests: Record<string, Sealed> = {};
    await this.sealToFollowers(job, id, message, requests);
    await this.sql`INSERT INTO job_agent_asks (id, job, public_key, requests, expires) VALUES (${id}, ${job}, ${spki}, ${JSON.stringify(requests)}, ${now + timeoutMs})`;
    await this.queue.announce(job);
    try {
      return await this.awaitReply(job, id, message, requests, privateKey, Date.now() + timeoutMs);
    } finally {
      await this.sql`DELETE FROM job_agent_asks WHERE id = ${id}`;
    }
  }

  private async awaitReply(job: string, id: string, message: Message, requests: Record<string, Sealed>, privateKey: KeyObject, deadline: number) {
    while (Date.now() < deadline) {
      const [row] = await this.sql`SELECT reply FROM job_agent_asks WHERE id = ${id}`;
      if (!row) return undefined;
      if (row.reply) return open<{ reply: string }>(JSON.parse(row.reply) as Sealed, privateKey, job, `${id} reply`).reply;
      // A replica that began serving the follower since gets a box of its own.
      if (await this.sealToFollowers(job, id, message, requests)) {
        await this.sql`UPDATE job_agent_asks SET requests = ${JSON.stringify(requests)} WHERE id = ${id}`;
        await this.queue.announce(job);
      }
      await this.queue.changed(Math.min(1000, deadline - Date.now()), job);
    }
    return undefined;
  }

  /** Adds a box for each follower key of the job not sealed to yet; whether there was one. */
  private async sealToFollowers(job: string, id: string, message: Message, requests: Record<string, Sealed>): Promise<boolean> {
    const keys = await this.sql`SELECT key_id, public_key FROM job_agent_keys WHERE job = ${job} AND expires > ${this.queue.time()}`;
    let added = false;
    for (const key of keys as { key_id: string; public_key: string }[]) {
      if (requests[key.key_id]) continue;
      requests[key.key_id] = seal(message, key.public_key, job, `${id} request`);
      added = true;
    }
    return added;
  }

  async asks(job: string): Promise<AgentAsk[] | undefined> {
    const rows = await this.sql`SELECT id, requests FROM job_agent_asks WHERE job = ${job} AND reply IS NULL AND expires > ${this.queue.time()} ORDER BY seq`;
    // Only a job with messages waiting gets a key: following a build without --ssh costs this one read.
    if (rows.length === 0) return undefined;
    const key = await this.followerKey(job);
    const asks: AgentAsk[] = [];
    for (const row of rows as { id: string; requests: string }[]) {
      const box = (JSON.parse(row.requests) as Record<string, Sealed>)[key.id];
      if (!box) continue; // sealed before this replica's key was published: its box comes on the asker's next look
      try {
        asks.push({ ...open<Message>(box, key.privateKey, job, `${row.id} request`), id: row.id });
      } catch {} // a box altered in the database is no message (and its asker's wait ends empty)
    }
    return asks.length ? asks : undefined;
  }

  /** This replica's key for the job: made and published on first use (which wakes the askers), kept fresh while used. */
  private async followerKey(job: string): Promise<FollowerKey> {
    const now = Date.now();
    for (const [other, key] of this.keys) if (now - key.used > KEY_TTL_MS) this.keys.delete(other);
    let key = this.keys.get(job);
    if (!key) {
      const { privateKey, spki } = keyPair();
      key = { id: randomUUID(), privateKey, used: now, refreshed: now };
      this.keys.set(job, key);
      await this.sql`INSERT INTO job_agent_keys VALUES (${job}, ${key.id}, ${spki}, ${this.queue.time() + KEY_TTL_MS})`;
      await this.queue.announce(job);
    } else if (now - key.refreshed > KEY_REFRESH_MS) {
      key.refreshed = now;
      await this.sql`UPDATE job_agent_keys SET expires = ${this.queue.time() + KEY_TTL_MS} WHERE job = ${job} AND key_id = ${key.id}`;
    }
    key.used = now;
    return key;
  }

  async answer(job: string, replies: Record<string, unknown>): Promise<number> {
    let taken = 0;
    for (const [id, reply] of Object.entries(replies)) {
      if (typeof reply !== "string") continue;
      const [row] = await this.sql`SELECT public_key FROM job_agent_asks WHERE id = ${id} AND job = ${job} AND reply IS NULL AND expires > ${this.queue.time()}`;
      if (!row) continue;
      const sealed = seal({ reply }, row.public_key, job, `${id} reply`);
      // Only once: an ask answered meanwhile (through another replica) is left alone.
      const changed = await this.sql`UPDATE job_agent_asks SET reply = ${JSON.stringify(sealed)} WHERE id = ${id} AND reply IS NULL RETURNING id`;
      taken += changed.length;
    }
    if (taken) await this.queue.announce(job);
    return taken;
  }
}
