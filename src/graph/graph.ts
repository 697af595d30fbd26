/**
 * The build graph: one node per step of the stages the target needs, with edges for stage
 * order, `FROM <stage>`, `COPY --from=<stage>` and `RUN --mount=from=<stage>`. Each node's
 * level is its longest distance from a root, so nodes on one level may run in parallel.
 */
import { targetStage, type Plan, type Stage, type Step } from "../frontend/plan.ts";

export type EdgeKind = "sequence" | "base" | "copy-from" | "mount-from";

export interface GraphEdge {
  from: string;
  to: string;
  kind: EdgeKind;
}

export interface GraphNode {
  id: string;
  /** The stage's name, or its index when unnamed. */
  stage: string;
  level: number;
  deps: string[];
  step: Step;
}

export interface BuildGraph {
  plan: Plan;
  target: Stage;
  /** The stages the target needs, in Dockerfile order. */
  stages: Stage[];
  /** Nodes in a topological order (Dockerfile order is one). */
  nodes: GraphNode[];
  edges: GraphEdge[];
  /** Steps of stages the target does not need. */
  pruned: Step[];
}

/** The stages `target` needs: itself, its base stage and every stage it reads, transitively. */
export function neededStages(plan: Plan, target: Stage): Set<number> {
  const needed = new Set<number>();
  const visit = (index: number) => {
    if (needed.has(index)) return;
    needed.add(index);
    const stage = plan.stages[index];
    if (stage.base.kind === "stage") visit(stage.base.index);
    for (const step of stage.steps) for (const read of step.reads) visit(read);
  };
  visit(target.index);
  return needed;
}

export function buildGraph(plan: Plan, targetName?: string): BuildGraph {
  const target = targetStage(plan, targetName);
  const needed = neededStages(plan, target);
  const nodes: GraphNode[] = [];
  const edges: GraphEdge[] = [];
  const pruned: Step[] = [];
  const byId = new Map<string, GraphNode>();
  const lastStepId = (index: number) => plan.stages[index].steps.at(-1)!.id;

  for (const stage of plan.stages) {
    if (!needed.has(stage.index)) {
      pruned.push(...stage.steps);
      continue;
    }
    for (const step of stage.steps) {
      const incoming: GraphEdge[] = [];
      if (step.index > 0) incoming.push({ from: stage.steps[step.index - 1].id, to: step.id, kind: "sequence" });
      else if (stage.base.kind === "stage") incoming.push({ from: lastStepId(stage.base.index), to: step.id, kind: "base" });
      if (step.index > 0) {
        const kind: EdgeKind = step.instruction.kind === "RUN" ? "mount-from" : "copy-from";
        for (const read of new Set(step.reads)) incoming.push({ from: lastStepId(read), to: step.id, kind });
      }
      const deps = [...new Set(incoming.map((e) => e.from))];
      const level = deps.length === 0 ? 0 : 1 + Math.max(...deps.map((d) => byId.get(d)!.level));
      const node: GraphNode = { id: step.id, stage: stage.id, level, deps, step };
      nodes.push(node);
      byId.set(node.id, node);
      edges.push(...incoming);
    }
  }
  return { plan, target, stages: plan.stages.filter((s) => needed.has(s.index)), nodes, edges, pruned };
}

/** Nodes grouped by level: each group may run in parallel once the previous ones are done. */
export function levels(graph: BuildGraph): GraphNode[][] {
  const groups: GraphNode[][] = [];
  for (const node of graph.nodes) (groups[node.level] ??= []).push(node);
  return groups;
}
