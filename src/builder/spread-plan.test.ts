import { describe, expect, test } from "bun:test";
import { planDockerfile } from "../frontend/plan.ts";
import { buildGraph } from "../graph/graph.ts";
import type { StepResult } from "../solver/result.ts";
import { assignJobs, spreadJobs } from "./spread-plan.ts";

const platform = { os: "linux", architecture: "amd64" };

function graphOf(lines: string[], target?: string) {
  const graph = buildGraph(planDockerfile(lines.join("\n"), { platform }), target);
  const steps = graph.nodes.map((n) => ({ id: n.id, stage: n.stage, key: `key-${n.id}` }) as StepResult);
  const all = new Set(graph.stages.map((s) => s.index));
  return { graph, steps, all };
}

const THREE_STAGES = ["FROM busybox AS a", "RUN a", "FROM busybox AS b", "RUN b", "FROM busybox AS c", "RUN c", "FROM busybox", "COPY --from=a /a /a", "COPY --from=b /b /b", "COPY --from=c /c /c"];
const TWO_STAGES = ["FROM busybox AS a", "RUN sleep 2", "FROM busybox AS b", "RUN sleep 2", "FROM busybox", "COPY --from=a /a /a", "COPY --from=b /b /b"];

describe("which stages of a remote build get jobs of their own", () => {
  test("two stages the target copies from: a job each, the build's own job after both", () => {
    const { graph, steps, all } = graphOf(TWO_STAGES);
    expect(assignJobs(graph, all, steps)).toEqual([
      { stage: "a", owns: ["a"], after: [], hints: ["key-a/0", "key-a/1"] },
      { stage: "b", owns: ["b"], after: [], hints: ["key-b/0", "key-b/1"] },
      { owns: ["2"], after: ["a", "b"], hints: steps.map((s) => s.key) },
    ]);
  });

  test("a stage whose steps the shared cache holds gets no job (the build's job hits it); one left: one job", () => {
    const { graph, steps } = graphOf(THREE_STAGES);
    const jobs = assignJobs(graph, new Set([1, 2, 3]), steps)!;
    expect(jobs.map((j) => [j.stage, j.owns, j.after])).toEqual([
      ["b", ["b"], []],
      ["c", ["c"], []],
      [undefined, ["3", "a"], ["b", "c"]],
    ]);
    expect(assignJobs(graph, new Set([2, 3]), steps)).toBeUndefined();
  });

  test("a plain chain of FROM stages stays one job (nothing could run beside it)", () => {
    const { graph, steps, all } = graphOf(["FROM busybox AS base", "RUN one", "FROM base AS mid", "RUN two", "FROM mid", "RUN three"]);
    expect(assignJobs(graph, all, steps)).toBeUndefined();
  });

  test("a base shared by two stages is built once, by its own job, before both", () => {
    const { graph, steps, all } = graphOf(["FROM busybox AS common", "RUN setup", "FROM common AS a", "RUN a", "FROM common AS b", "RUN b", "FROM scratch", "COPY --from=a /a /", "COPY --from=b /b /"]);
    expect(assignJobs(graph, all, steps)!.map((j) => [j.stage, j.owns, j.after])).toEqual([
      ["common", ["common"], []],
      ["a", ["a"], ["common"]],
      ["b", ["b"], ["common"]],
      [undefined, ["3"], ["a", "b"]],
    ]);
  });

  test("the base of a stage that also mounts from another stage runs beside that stage, not after it", () => {
    const { graph, steps, all } = graphOf(["FROM busybox AS deps", "RUN fetch", "FROM busybox AS tools", "RUN tools", "FROM deps AS build", "RUN --mount=from=tools,target=/t make", "FROM busybox AS unused", "RUN no", "FROM scratch AS final", "COPY --from=build /out /"]);
    expect(assignJobs(graph, all, steps)!.map((j) => [j.stage, j.owns, j.after])).toEqual([
      ["deps", ["deps"], []],
      ["tools", ["tools"], []],
      [undefined, ["build", "final"], ["deps", "tools"]],
    ]);
  });

  test("one stage the target copies from is a chain too: one job", () => {
    const { graph, steps, all } = graphOf(["FROM busybox AS build", "RUN make", "FROM busybox", "COPY --from=build /out /out"]);
    expect(assignJobs(graph, all, steps)).toBeUndefined();
  });

  test("--target: the stages after it are not part of the build", () => {
    const { graph, steps, all } = graphOf([...TWO_STAGES, "FROM busybox AS later", "COPY --from=a /a /a"], "2");
    expect(assignJobs(graph, all, steps)!.map((j) => j.stage)).toEqual(["a", "b", undefined]);
  });

  test("spreadJobs asks the shared cache for the steps of the stages that could run apart, and only those", async () => {
    const { graph, steps } = graphOf(THREE_STAGES);
    const asked: string[] = [];
    const jobs = await spreadJobs(graph, steps, async (key) => {
      asked.push(key);
      return key !== "key-a/1" && key !== "key-c/0";
    });
    expect(asked.sort()).toEqual(["key-a/0", "key-a/1", "key-b/0", "key-b/1", "key-c/0", "key-c/1"]);
    expect(jobs!.map((j) => j.stage)).toEqual(["a", "c", undefined]);
  });
});
