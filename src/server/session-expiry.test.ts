/** In-memory dashboard sessions on a clock set by the test (setSystemTime): expiry to the millisecond, eviction order. */
import { afterEach, describe, expect, test, setSystemTime } from "bun:test";
import { Sessions } from "./sessions.ts";

const T = new Date("2026-12-07T12:00:00Z").getTime();
afterEach(() => setSystemTime());

describe("Sessions", () => {
  test("a session holds its role and token under a random id", async () => {
    setSystemTime(T);
    const sessions = new Sessions(1000, 10);
    const id = await sessions.create("ro", "token-a");
    expect(id).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(await sessions.create("ro", "token-a")).not.toBe(id);
    expect(await sessions.get(id)).toEqual({ role: "ro", token: "token-a", expires: T + 1000 });
    expect(await sessions.get("not-a-session")).toBeUndefined();
    expect(await sessions.get(undefined)).toBeUndefined();
    expect(await sessions.get("")).toBeUndefined();
  });

  test("a session lasts its lifetime to the millisecond, then is gone for good", async () => {
    setSystemTime(T);
    const sessions = new Sessions(1000, 10);
    const id = await sessions.create("rw", "token-b");
    setSystemTime(T + 1000);
    expect((await sessions.get(id))?.token).toBe("token-b");
    setSystemTime(T + 1001);
    expect(await sessions.get(id)).toBeUndefined();
    // Forgotten when found expired: a clock set back does not bring it back.
    setSystemTime(T);
    expect(await sessions.get(id)).toBeUndefined();
  });

  test("logging out ends a session; ending none is harmless", async () => {
    const sessions = new Sessions();
    const id = await sessions.create("ro", "token-c");
    await sessions.delete(undefined);
    await sessions.delete("other");
    expect((await sessions.get(id))?.role).toBe("ro");
    await sessions.delete(id);
    expect(await sessions.get(id)).toBeUndefined();
  });

  test("at the limit the oldest session makes room, and only it", async () => {
    const sessions = new Sessions(60_000, 2);
    const a = await sessions.create("ro", "a");
    const b = await sessions.create("ro", "b");
    expect((await sessions.get(a))?.token).toBe("a");
    const c = await sessions.create("ro", "c");
    expect(await sessions.get(a)).toBeUndefined();
    expect((await sessions.get(b))?.token).toBe("b");
    expect((await sessions.get(c))?.token).toBe("c");
  });
});
