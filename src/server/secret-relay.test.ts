/** The in-memory relays of a remote build: messages to the submitter's ssh agent wait here for its reply. */
import { expect, test } from "bun:test";
import { MemoryAgentRelay } from "./secret-relay.ts";

test("an agent message waits for its own job's submitter; a reply for another job's ask is not taken", async () => {
  const woken: string[] = [];
  const relay = new MemoryAgentRelay((job) => woken.push(job));
  const reply = relay.ask("job-a", { agent: "default", conn: "c1", data: "AAAAAQs=" }, 5_000);
  expect(woken).toEqual(["job-a"]);
  expect(await relay.asks("job-b")).toBeUndefined();
  const [ask] = (await relay.asks("job-a"))!;
  expect(ask).toMatchObject({ agent: "default", conn: "c1", data: "AAAAAQs=" });
  expect(await relay.answer("job-b", { [ask.id]: "AAAAAQw=" })).toBe(0);
  expect(await relay.answer("job-a", { [ask.id]: "AAAAAQw=" })).toBe(1);
  expect(await reply).toBe("AAAAAQw=");
  expect(await relay.asks("job-a")).toBeUndefined(); // answered once, gone
});

test("an ask nobody answers ends empty; a job cannot park more than 64 at once", async () => {
  const relay = new MemoryAgentRelay();
  expect(await relay.ask("job", { agent: "default", conn: "c", data: "AA==" }, 10)).toBeUndefined();
  const parked = Array.from({ length: 64 }, (_, i) => relay.ask("job", { agent: "default", conn: `c${i}`, data: "AA==" }, 5_000));
  expect(await relay.ask("job", { agent: "default", conn: "over", data: "AA==" }, 5_000)).toBeUndefined();
  await relay.answer("job", Object.fromEntries((await relay.asks("job"))!.map((a) => [a.id, ""])));
  expect(await Promise.all(parked)).toEqual(Array(64).fill(""));
});
