/**
 * Dashboard logins: a token typed once becomes a random session id in an HttpOnly cookie, so the
 * token itself never sits in the browser's storage or in a URL. Sessions live in memory (a
 * restart asks for the token again), expire, and are bounded in number.
 */
import { randomBytes } from "node:crypto";
import type { Role } from "./auth.ts";

export const SESSION_COOKIE = "memobuild_session";

interface Session {
  role: Role;
  token: string;
  expires: number;
}

export class Sessions {
  private readonly sessions = new Map<string, Session>();

  constructor(
    private readonly ttlMs = 12 * 3600_000,
    private readonly max = 10_000,
  ) {}

  create(role: Role, token: string): string {
    if (this.sessions.size >= this.max) {
      // The oldest goes first (a Map iterates in insertion order).
      this.sessions.delete(this.sessions.keys().next().value!);
    }
    const id = randomBytes(32).toString("base64url");
    this.sessions.set(id, { role, token, expires: Date.now() + this.ttlMs });
    return id;
  }

  get(id: string | undefined): Session | undefined {
    if (!id) return undefined;
    const session = this.sessions.get(id);
    if (!session) return undefined;
    if (session.expires < Date.now()) {
      this.sessions.delete(id);
      return undefined;
    }
    return session;
  }

  delete(id: string | undefined) {
    if (id) this.sessions.delete(id);
  }
}
