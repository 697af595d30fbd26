/**
 * Dashboard logins: a token typed once becomes a random session id in an HttpOnly cookie, so the
 * token itself never sits in the browser's storage or in a URL. Sessions expire and are bounded
 * in number. `Sessions` keeps them in memory (one server: a restart asks for the token again);
 * `PgSessions` in PostgreSQL, so a login made on one replica works on every other.
 */
import type { SQL } from "bun";
import { randomBytes } from "node:crypto";
import type { Role } from "./auth.ts";

export const SESSION_COOKIE = "memobuild_session";

export interface Session {
  role: Role;
  token: string;
  expires: number;
}

export interface SessionStore {
  create(role: Role, token: string): Promise<string>;
  get(id: string | undefined): Promise<Session | undefined>;
  delete(id: string | undefined): Promise<void>;
}

const newId = () => randomBytes(32).toString("base64url");

export class Sessions implements SessionStore {
  private readonly sessions = new Map<string, Session>();

  constructor(
    private readonly ttlMs = 12 * 3600_000,
    private readonly max = 10_000,
  ) {}

  async create(role: Role, token: string): Promise<string> {
    if (this.sessions.size >= this.max) {
      // The oldest goes first (a Map iterates in insertion order).
      this.sessions.delete(this.sessions.keys().next().value!);
    }
    const id = newId();
    this.sessions.set(id, { role, token, expires: Date.now() + this.ttlMs });
    return id;
  }

  async get(id: string | undefined): Promise<Session | undefined> {
    if (!id) return undefined;
    const session = this.sessions.get(id);
    if (!session) return undefined;
    if (session.expires < Date.now()) {
      this.sessions.delete(id);
      return undefined;
    }
    return session;
  }

  async delete(id: string | undefined) {
    if (id) this.sessions.delete(id);
  }
}

export class PgSessions implements SessionStore {
  constructor(
    private readonly sql: SQL,
    private readonly ttlMs = 12 * 3600_000,
    private readonly max = 10_000,
  ) {}

  async create(role: Role, token: string): Promise<string> {
    const id = newId();
    const now = Date.now();
    await this.sql`INSERT INTO sessions VALUES (${id}, ${role}, ${token}, ${now + this.ttlMs})`;
    // Expired ones go, and past the bound the oldest (the earliest to expire) go.
    await this.sql`DELETE FROM sessions WHERE expires < ${now} OR id IN (SELECT id FROM sessions ORDER BY expires DESC OFFSET ${this.max})`;
    return id;
  }

  async get(id: string | undefined): Promise<Session | undefined> {
    if (!id) return undefined;
    const [row] = await this.sql`SELECT role, token, expires FROM sessions WHERE id = ${id} AND expires >= ${Date.now()}`;
    return row ? { role: row.role as Role, token: row.token as string, expires: Number(row.expires) } : undefined;
  }

  async delete(id: string | undefined) {
    if (id) await this.sql`DELETE FROM sessions WHERE id = ${id}`;
  }
}
