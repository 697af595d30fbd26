/** `memobuild graph` output formats: text, Graphviz dot, Mermaid and JSON. */
import type { Step } from "../frontend/plan.ts";
import { levels, type BuildGraph } from "./graph.ts";

export const GRAPH_FORMATS = ["text", "dot", "mermaid", "json"] as const;
export type GraphFormat = (typeof GRAPH_FORMATS)[number];

export function renderGraph(graph: BuildGraph, format: GraphFormat): string {
  switch (format) {
    case "text":
      return renderText(graph);
    case "dot":
      return renderDot(graph);
    case "mermaid":
      return renderMermaid(graph);
    case "json":
      return JSON.stringify(graphJson(graph), null, 2) + "\n";
  }
}

export function graphJson(graph: BuildGraph) {
  return {
    target: graph.target.id,
    nodes: graph.nodes.map((n) => ({
      id: n.id,
      stage: n.stage,
      instruction: n.step.text,
      level: n.level,
      deps: n.deps,
    })),
    edges: graph.edges,
  };
}

/** ARG as written, with the values used beside it (`ARG W   (W=x)`); other steps as expanded. */
function shownText(step: Step): string {
  if (step.written === undefined || step.instruction.kind !== "ARG") return step.text;
  const values = step.instruction.args.map((a) => `${a.name}=${a.value ?? "(unset)"}`).join(" ");
  return `${step.written}   (${values})`;
}

/** The first line of an instruction, with a note of how many heredoc lines follow. */
function oneLine(text: string): string {
  const lines = text.split("\n");
  return lines.length === 1 ? text : `${lines[0]}  (+${lines.length - 1} heredoc lines)`;
}

function renderText(graph: BuildGraph): string {
  const out: string[] = [];
  const steps = graph.nodes.length;
  out.push(
    `${graph.plan.file}: ${graph.stages.length} stage(s), ${steps} step(s), target ${JSON.stringify(graph.target.id)}` +
      (graph.pruned.length ? `, ${graph.pruned.length} step(s) pruned` : ""),
  );
  const width = Math.max(...graph.nodes.map((n) => n.id.length));
  levels(graph).forEach((group, level) => {
    out.push(`level ${level}${group.length > 1 ? ` (${group.length} steps may run in parallel)` : ""}`);
    for (const node of group) {
      const after = node.deps.length ? `   <- ${node.deps.join(", ")}` : "";
      out.push(`  ${node.id.padEnd(width)}  ${oneLine(shownText(node.step))}${after}`);
    }
  });
  return out.join("\n") + "\n";
}

function dotString(text: string): string {
  // Left-justified lines (\l) keep heredoc bodies readable.
  const escaped = text.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\l");
  return `"${escaped}${text.includes("\n") ? "\\l" : ""}"`;
}

const EDGE_STYLE: Record<string, string> = {
  sequence: "",
  base: ' [style=bold, label="FROM"]',
  "copy-from": ' [style=dashed, label="--from"]',
  "mount-from": ' [style=dotted, label="--mount from"]',
};

function renderDot(graph: BuildGraph): string {
  const out = ["digraph memobuild {", "  rankdir=TB;", '  node [shape=box, fontname="monospace", fontsize=10];'];
  for (const stage of graph.stages) {
    out.push(`  subgraph ${dotString(`cluster_${stage.index}`)} {`);
    out.push(`    label=${dotString(`stage ${stage.id}`)};`);
    for (const node of graph.nodes.filter((n) => n.step.stage === stage.index)) {
      out.push(`    ${dotString(node.id)} [label=${dotString(node.step.text)}];`);
    }
    out.push("  }");
  }
  for (const edge of graph.edges) out.push(`  ${dotString(edge.from)} -> ${dotString(edge.to)}${EDGE_STYLE[edge.kind]};`);
  out.push("}");
  return out.join("\n") + "\n";
}

function mermaidText(text: string): string {
  return text
    .replace(/&/g, "#amp;")
    .replace(/"/g, "#quot;")
    .replace(/</g, "#lt;")
    .replace(/>/g, "#gt;")
    .replace(/\n/g, "<br/>");
}

const MERMAID_ARROW: Record<string, string> = { sequence: "-->", base: "==>", "copy-from": "-.->", "mount-from": "-.->" };

function renderMermaid(graph: BuildGraph): string {
  const ids = new Map(graph.nodes.map((n, i) => [n.id, `n${i}`]));
  const out = ["flowchart TD"];
  for (const stage of graph.stages) {
    out.push(`  subgraph s${stage.index}["stage ${mermaidText(stage.id)}"]`);
    for (const node of graph.nodes.filter((n) => n.step.stage === stage.index)) {
      out.push(`    ${ids.get(node.id)}["${mermaidText(node.step.text)}"]`);
    }
    out.push("  end");
  }
  for (const edge of graph.edges) out.push(`  ${ids.get(edge.from)} ${MERMAID_ARROW[edge.kind]} ${ids.get(edge.to)}`);
  return out.join("\n") + "\n";
}
