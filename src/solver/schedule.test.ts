import { expect, test } from "bun:test";
import { planDockerfile } from "../frontend/plan.ts";
import { scheduleStages } from "./schedule.ts";

const plan = planDockerfile(
  ["FROM a AS one", "FROM a AS two", "FROM a AS three", "FROM one AS four", "COPY --from=two /x /x", "FROM a AS five", "RUN --mount=from=three,target=/t true"].join("\n"),
  { platform: { os: "linux", architecture: "amd64" } },
);

async function run(jobs: number, fail?: string) {
  const events: string[] = [];
  let running = 0;
  let peak = 0;
  const result = scheduleStages(plan.stages, jobs, async (stage) => {
    running++;
    peak = Math.max(peak, running);
    events.push(`start ${stage.id}`);
    await Bun.sleep(5);
    running--;
    events.push(`end ${stage.id}`);
    if (stage.id === fail) throw new Error(`${fail} failed`);
  });
  return { result, events, peak: () => peak };
}

test("a stage starts only after the stages it reads have ended", async () => {
  const { result, events } = await run(8);
  await result;
  const at = (event: string) => events.indexOf(event);
  expect(at("start four")).toBeGreaterThan(at("end one"));
  expect(at("start four")).toBeGreaterThan(at("end two"));
  expect(at("start five")).toBeGreaterThan(at("end three"));
  expect(events.filter((e) => e.startsWith("start"))).toHaveLength(5);
});

test("never more than `jobs` stages at once", async () => {
  for (const jobs of [1, 2]) {
    const { result, peak } = await run(jobs);
    await result;
    expect(peak()).toBe(jobs);
  }
});

test("a failure is thrown after the running stages stop; dependants do not start", async () => {
  const { result, events } = await run(2, "one");
  await expect(result).rejects.toThrow("one failed");
  expect(events).not.toContain("start four");
});
