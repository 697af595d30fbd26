import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { blake3Hex } from "../hash/blake3.ts";
import { TokenSet } from "./auth.ts";

const work = mkdtempSync(join(tmpdir(), "memobuild-auth-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const path = join(work, name);
  writeFileSync(path, text);
  return path;
};

describe("token files", () => {
  test("TOKEN [rw|ro] per line; # comments and blank lines skipped; the role defaults to rw", () => {
    const path = file("tokens", "# team tokens\nwrite-token-123\n\n  read-token-4567   ro  # laptops\nother-token-89 rw\n   \n");
    expect(TokenSet.parseFile(path)).toEqual([
      { token: "write-token-123", role: "rw" },
      { token: "read-token-4567", role: "ro" },
      { token: "other-token-89", role: "rw" },
    ]);
  });

  test("a bad line is an error naming the file and the line", () => {
    expect(() => TokenSet.parseFile(file("bad-role", "ok-token-1234\nsome-token-1234 admin\n"))).toThrow(`${join(work, "bad-role")}:2: expected "TOKEN [rw|ro|worker] [name=NAME]"`);
    expect(() => TokenSet.parseFile(file("extra", "\n\nsome-token-1234 ro extra\n"))).toThrow(`${join(work, "extra")}:3: expected "TOKEN [rw|ro|worker] [name=NAME]"`);
    expect(() => TokenSet.parseFile(file("more", "some-token-1234 ro name=ci extra\n"))).toThrow(`${join(work, "more")}:1: expected "TOKEN [rw|ro|worker] [name=NAME]"`);
    expect(() => TokenSet.parseFile(file("bad-name", "some-token-1234 ro name=<b>\n"))).toThrow(`${join(work, "bad-name")}:1: a token's name is 1 to 64 letters`);
    expect(() => TokenSet.parseFile(join(work, "missing"))).toThrow(`cannot read token file ${join(work, "missing")}: `);
  });

  test("a line may name its token; the name is found by the id requests carry (never by the token)", () => {
    const entries = TokenSet.parseFile(file("named", "ci-token-12345 rw name=ci\nlaptop-token-123 ro\n"));
    expect(entries).toEqual([
      { token: "ci-token-12345", role: "rw", name: "ci" },
      { token: "laptop-token-123", role: "ro" },
    ]);
    const tokens = new TokenSet(entries);
    const id = (tokens.check("Bearer ci-token-12345") as { id: string }).id;
    expect(tokens.nameOf(id)).toBe("ci");
    expect(tokens.nameOf((tokens.check("Bearer laptop-token-123") as { id: string }).id)).toBeUndefined();
  });

  test("a token shorter than 8 characters is refused; 8 is enough", () => {
    expect(() => new TokenSet([{ token: "1234567", role: "rw" }])).toThrow("a token must be at least 8 characters long");
    expect(new TokenSet([{ token: "12345678", role: "rw" }]).enabled).toBe(true);
  });
});

describe("checking a request", () => {
  const tokens = new TokenSet([
    { token: "write-token-123", role: "rw" },
    { token: "read-token-4567", role: "ro" },
  ]);

  test("a known token gives its role and an id (a prefix of its hash, never the token)", () => {
    expect(tokens.check("Bearer write-token-123")).toEqual({ ok: true, role: "rw", id: blake3Hex("write-token-123").slice(0, 12) });
    expect(tokens.check("bearer   read-token-4567")).toEqual({ ok: true, role: "ro", id: blake3Hex("read-token-4567").slice(0, 12) });
  });

  test("no header, another scheme, junk around the token or an unknown token: 401 with why", () => {
    const required = { ok: false, status: 401, message: "a bearer token is required (Authorization: Bearer TOKEN)" } as const;
    for (const header of [null, undefined, "", "Basic d3JpdGU=", "Bearer", "xBearer write-token-123", "Bearer write-token-123 extra", "Bearerwrite-token-123"]) {
      expect(tokens.check(header)).toEqual(required);
    }
    expect(tokens.check("Bearer not-a-token-at-all")).toEqual({ ok: false, status: 401, message: "the token is not valid" });
  });

  test("an answer is the same when it comes from the recent answers, and the cache stays bounded", () => {
    const many = new TokenSet([{ token: "write-token-123", role: "rw" }]);
    for (let i = 0; i < 1500; i++) expect(many.check(`Bearer unknown-${i}-token`).ok).toBe(false);
    expect(many.check("Bearer write-token-123")).toMatchObject({ ok: true, role: "rw" });
    expect(many.check("Bearer write-token-123")).toMatchObject({ ok: true, role: "rw" });
    expect((many as unknown as { recent: Map<string, unknown> }).recent.size).toBeLessThanOrEqual(1001);
  });

  test("with no tokens at all, every request is anonymous read-write (loopback only: the server refuses otherwise)", () => {
    const open = new TokenSet([]);
    expect(open.enabled).toBe(false);
    expect(open.check(null)).toEqual({ ok: true, role: "rw", id: "anonymous" });
    expect(open.check("Bearer anything-at-all")).toEqual({ ok: true, role: "rw", id: "anonymous" });
  });
});

describe("the role of a token by its id (a claimed job's submitter)", () => {
  test("names the role of the token the id came from; an unknown id has none; without tokens, anonymous may write", () => {
    const tokens = new TokenSet([{ token: "writer-token", role: "rw" }, { token: "reader-token", role: "ro" }]);
    const id = (token: string) => (tokens.check(`Bearer ${token}`) as { id: string }).id;
    expect([tokens.roleOf(id("writer-token")), tokens.roleOf(id("reader-token")), tokens.roleOf("0123456789ab"), tokens.roleOf("anonymous")]).toEqual(["rw", "ro", undefined, undefined]);
    expect(new TokenSet([]).roleOf("anonymous")).toBe("rw");
  });
});
