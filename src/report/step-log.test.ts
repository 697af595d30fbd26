import { describe, expect, test } from "bun:test";
import { StepLogBuffer } from "./step-log.ts";

const limits = { stepLive: 100, stepTail: 60, buildLive: 250, lateTail: 20, liveChunks: 1000 };
const text = (chunks: { step: string; text: string }[]) => chunks.map((c) => c.text).join("");

describe("a build's output on its way to the hub", () => {
  test("streams a step's lines while it is under its bound, then keeps its tail for the step's end", () => {
    const logs = new StepLogBuffer([], limits);
    for (let i = 0; i < 5; i++) logs.add("a", `line ${i} ${"x".repeat(12)}`); // 20 bytes each
    expect(text(logs.take())).toBe(Array.from({ length: 5 }, (_, i) => `line ${i} ${"x".repeat(12)}\n`).join(""));
    for (let i = 5; i < 20; i++) logs.add("a", `line ${String(i).padStart(2, "0")} ${"x".repeat(11)}`);
    expect(logs.take()).toEqual([]); // past the live bound: nothing until the step ends
    const end = text(logs.take("a"));
    expect(end).toBe(`[… 240 bytes of output left out …]\nline 17 ${"x".repeat(11)}\nline 18 ${"x".repeat(11)}\nline 19 ${"x".repeat(11)}\n`);
  });

  test("past the build's bound, each later step keeps a short tail only", () => {
    const logs = new StepLogBuffer([], limits);
    for (const step of ["a", "b", "c"]) for (let i = 0; i < 4; i++) logs.add(step, `${step}${i}${"z".repeat(22)}`); // 25 bytes each, 100 per step
    const sent = logs.take();
    expect(text(sent).length).toBe(250);
    const c = text(logs.take("c"));
    // c0 and c1 went live (the build's 250 bytes); c2 and c3 only as a 20-byte tail.
    expect(text(sent)).toContain(`c1${"z".repeat(22)}\n`);
    expect(c).toBe(`[… 30 bytes of output left out …]\n${"z".repeat(19)}\n`);
  });

  test("a secret's value is masked whole and line by line; a one-line tail longer than its bound keeps its end", () => {
    const logs = new StepLogBuffer([Buffer.from("hunter2\nline-two-of-secret")], { ...limits, stepLive: 0 });
    logs.add("a", "pass=hunter2 then line-two-of-secret then more text past the tail bound of sixty bytes ....... end");
    expect(text(logs.take("a"))).toMatch(/^\[… \d+ bytes of output left out …\]\n.*bytes \.+ end\n$/);
    const whole = new StepLogBuffer(["hunter2\nline-two-of-secret"], limits);
    whole.add("a", "pass=hunter2 then line-two-of-secret");
    expect(text(whole.take())).toBe("pass=**** then ****\n");
  });

  test("past a number of chunks streamed, steps keep a short tail only (a slow printer cannot use up a build's events)", () => {
    const logs = new StepLogBuffer([], { ...limits, liveChunks: 3 });
    for (let i = 0; i < 3; i++) {
      logs.add("a", `tick ${i}`);
      expect(logs.take()).toEqual([{ step: "a", text: `tick ${i}\n` }]);
    }
    for (let i = 3; i < 10; i++) logs.add("a", `tick ${i}`);
    expect(logs.take()).toEqual([]);
    expect(text(logs.take("a"))).toBe("[… 35 bytes of output left out …]\ntick 8\ntick 9\n");
  });

  test("a line redrawn with carriage returns (a progress bar) keeps what a terminal shows last", () => {
    const logs = new StepLogBuffer(["hunter2"], limits);
    logs.add("a", "fetching 10%\rfetching 50%\rfetching 100% as hunter2\r");
    logs.add("a", "done\r");
    expect(text(logs.take())).toBe("fetching 100% as ****\ndone\n");
  });
});
