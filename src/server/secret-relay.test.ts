/** The in-memory relays of a remote build: messages to the submitter's ssh agent wait here for its reply. */
import { expect, test } from "bun:test";
import { AgentRelay } from "./secret-relay.ts";

test("an agent message waits for its own job's submitter; a reply for another job's ask is not taken", async () => {
  const relay = new AgentRelay();
  let woken = 0;
  const reply = relay.ask("job-a", { agent: "default", conn: "c1", data: "AAAAAQs=" }, 5_000, () => woken++);
  expect(woken).toBe(1);
  expect(relay.asks("job-b")).toBeUndefined();
  const [ask] = relay.asks("job-a")!;
  expect(ask).toMatchObject({ agent: "default", conn: "c1", data: "AAAAAQs=" });
  expect(relay.answer("job-b", { [ask.id]: "AAAAAQw=" })).toBe(0);
  expect(relay.answer("job-a", { [ask.id]: "AAAAAQw=" })).toBe(1);
  expect(await reply).toBe("AAAAAQw=");
  expect(relay.asks("job-a")).toBeUndefined(); // answered once, gone
});

test("an ask nobody answers ends empty; a job cannot park more than 64 at once", async () => {
  const relay = new AgentRelay();
  expect(await relay.ask("job", { agent: "default", conn: "c", data: "AA==" }, 10, () => {})).toBeUndefined();
  const parked = Array.from({ length: 64 }, (_, i) => relay.ask("job", { agent: "default", conn: `c${i}`, data: "AA==" }, 5_000, () => {}));
  expect(await relay.ask("job", { agent: "default", conn: "over", data: "AA==" }, 5_000, () => {})).toBeUndefined();
  relay.answer("job", Object.fromEntries(relay.asks("job")!.map((a) => [a.id, ""])));
  expect(await Promise.all(parked)).toEqual(Array(64).fill(""));
});
