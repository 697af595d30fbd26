/**
 * Bearer tokens for the cache server. Each token is read-write or read-only; only their
 * BLAKE3 hashes are kept in memory (and a short prefix of the hash names them in stats).
 */
import { readFileSync } from "node:fs";
import { blake3Hex } from "../hash/blake3.ts";
import { UserError } from "../errors.ts";

/** rw writes results; ro only reads; worker writes results and runs others' builds (remote execution). */
export type Role = "rw" | "ro" | "worker";

export type AuthResult = { ok: true; role: Role; id: string } | { ok: false; status: 401; message: string };

export interface TokenEntry {
  token: string;
  role: Role;
  /** What the dashboard and webhooks call it, instead of its hash's prefix. */
  name?: string;
}

/** A token's name: a label (letters, digits, . _ - @), short, never mistaken for a hash. */
const TOKEN_NAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

export class TokenSet {
  private readonly roles = new Map<string, Role>();
  /** Names by the id a request carries (the hash's prefix). */
  private readonly names = new Map<string, string>();

  constructor(entries: TokenEntry[]) {
    for (const { token, role, name } of entries) {
      if (token.length < 8) throw new UserError("a token must be at least 8 characters long");
      const hash = blake3Hex(token);
      this.roles.set(hash, role);
      if (name !== undefined) this.names.set(hash.slice(0, 12), name);
    }
  }

  /** The name a token id (as requests carry it) was given, if any. */
  nameOf(id: string | undefined): string | undefined {
    return id === undefined ? undefined : this.names.get(id);
  }

  /**
   * A conflict as people read it: each side's token by its name too (`authorName`), when the
   * token file gives one; the id stays (two tokens may share a name).
   */
  namedSides<T extends { first: { author: string | null }; second: { author: string | null } }>(conflict: T): T {
    const side = <S extends { author: string | null }>(s: S): S => {
      const name = s.author === null ? undefined : this.nameOf(s.author);
      return name ? { ...s, authorName: name } : s;
    };
    return { ...conflict, first: side(conflict.first), second: side(conflict.second) };
  }

  /** A file of `TOKEN [rw|ro|worker] [name=NAME]` lines; `#` starts a comment; the role defaults to rw. */
  static parseFile(path: string): TokenEntry[] {
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (error) {
      throw new UserError(`cannot read token file ${path}: ${(error as Error).message}`);
    }
    return text.split("\n").flatMap((raw, index) => {
      const line = raw.replace(/#.*/, "").trim();
      if (!line) return [];
      const [token, role = "rw", named, extra] = line.split(/\s+/);
      if (extra !== undefined || (role !== "rw" && role !== "ro" && role !== "worker") || (named !== undefined && !named.startsWith("name="))) {
        throw new UserError(`${path}:${index + 1}: expected "TOKEN [rw|ro|worker] [name=NAME]"`);
      }
      const name = named?.slice("name=".length);
      if (name !== undefined && !TOKEN_NAME.test(name)) throw new UserError(`${path}:${index + 1}: a token's name is 1 to 64 letters, digits, . _ @ or -, starting with a letter or digit`);
      return [{ token, role: role as Role, ...(name !== undefined ? { name } : {}) }];
    });
  }

  get enabled(): boolean {
    return this.roles.size > 0;
  }

  /** Recent answers by header value, so a busy client is not re-hashed on every request. */
  private readonly recent = new Map<string, AuthResult>();

  check(authorization: string | null | undefined): AuthResult {
    if (!this.enabled) return { ok: true, role: "rw", id: "anonymous" };
    // The answer cache only saves hashing: a miss verifies again.
    // Stryker disable next-line StringLiteral
    const cached = this.recent.get(authorization ?? "");
    // Stryker disable next-line ConditionalExpression
    if (cached) return cached;
    const result = this.verify(authorization);
    // Bounded: each bogus token is an entry. Clearing sooner only costs hashing again.
    // Stryker disable next-line ConditionalExpression,EqualityOperator
    if (this.recent.size > 1000) this.recent.clear();
    // Stryker disable next-line StringLiteral
    this.recent.set(authorization ?? "", result);
    return result;
  }

  /** The role of the token a request id names (the id is a prefix of the token's hash, as `check` gives it). */
  roleOf(id: string): Role | undefined {
    if (!this.enabled) return id === "anonymous" ? "rw" : undefined;
    for (const [hash, role] of this.roles) if (hash.slice(0, 12) === id) return role;
    return undefined;
  }

  private verify(authorization: string | null | undefined): AuthResult {
    // Stryker disable next-line StringLiteral: any text that is no "Bearer" header fails the same
    const match = /^Bearer\s+(\S+)$/i.exec(authorization ?? "");
    if (!match) return { ok: false, status: 401, message: "a bearer token is required (Authorization: Bearer TOKEN)" };
    const hash = blake3Hex(match[1]);
    const role = this.roles.get(hash);
    if (!role) return { ok: false, status: 401, message: "the token is not valid" };
    return { ok: true, role, id: hash.slice(0, 12) };
  }
}
