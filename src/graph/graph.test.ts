import { describe, expect, test } from "bun:test";
import { planDockerfile } from "../frontend/plan.ts";
import { buildGraph, levels } from "./graph.ts";
import { graphJson, renderGraph } from "./render.ts";

const platform = { os: "linux", architecture: "amd64" };
const DOCKERFILE = [
  "FROM busybox AS deps", //        deps/0
  "RUN fetch", //                   deps/1
  "FROM busybox AS tools", //       tools/0   (independent of deps: same level)
  "RUN build-tools", //             tools/1
  "FROM deps AS build", //          build/0 <- deps/1
  "RUN --mount=from=tools,target=/t make", // build/1 <- build/0, tools/1
  "FROM busybox AS unused", //      pruned for the default target
  "RUN nothing",
  "FROM scratch AS final", //       final/0
  "COPY --from=build /out /", //    final/1 <- final/0, build/1
].join("\n");

const graphOf = (target?: string) => buildGraph(planDockerfile(DOCKERFILE, { platform }), target);

describe("build graph", () => {
  test("edges for stage order, FROM <stage>, COPY --from and RUN --mount=from", () => {
    const graph = graphOf();
    expect(graph.edges).toEqual([
      { from: "deps/0", to: "deps/1", kind: "sequence" },
      { from: "tools/0", to: "tools/1", kind: "sequence" },
      { from: "deps/1", to: "build/0", kind: "base" },
      { from: "build/0", to: "build/1", kind: "sequence" },
      { from: "tools/1", to: "build/1", kind: "mount-from" },
      { from: "final/0", to: "final/1", kind: "sequence" },
      { from: "build/1", to: "final/1", kind: "copy-from" },
    ]);
  });

  test("levels show what can run in parallel", () => {
    const ids = levels(graphOf()).map((group) => group.map((n) => n.id));
    expect(ids).toEqual([["deps/0", "tools/0", "final/0"], ["deps/1", "tools/1"], ["build/0"], ["build/1"], ["final/1"]]);
  });

  test("--target prunes the stages it does not need", () => {
    const graph = graphOf("build");
    expect(graph.stages.map((s) => s.id)).toEqual(["deps", "tools", "build"]);
    expect(graph.pruned.map((s) => s.id)).toEqual(["unused/0", "unused/1", "final/0", "final/1"]);
    expect(graphOf("unused").nodes.map((n) => n.id)).toEqual(["unused/0", "unused/1"]);
    expect(graphOf("2").target.id).toBe("build");
  });

  test("unknown --target names the stages there are", () => {
    expect(() => graphOf("nope")).toThrow(/--target nope: Dockerfile has no such stage \(stages: deps, tools, build, unused, final\)/);
  });

  test("a mistyped --target suggests the closest stage", () => {
    expect(() => graphOf("biuld")).toThrow("--target biuld: Dockerfile has no such stage (did you mean build?) (stages: deps, tools, build, unused, final)");
    expect(() => graphOf("FINL")).toThrow("(did you mean final?)");
  });

  test("json has the contract's fields", () => {
    const json = graphJson(graphOf());
    expect(json.nodes[5]).toEqual({ id: "build/1", stage: "build", instruction: "RUN --mount=type=bind,target=/t,from=tools make", level: 3, deps: ["build/0", "tools/1"] });
  });

  test("every format renders every node", () => {
    const graph = graphOf();
    for (const format of ["text", "dot", "mermaid"] as const) {
      const out = renderGraph(graph, format);
      expect(out).toContain("COPY --from=build /out /");
      expect(out).not.toContain("RUN nothing");
    }
  });
});
