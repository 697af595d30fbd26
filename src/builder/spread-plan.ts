/**
 * Spreading one remote build over several workers: which stages go to jobs of their own (so idle
 * workers build independent stages at once), and what each job waits for. The client planned
 * and keyed the build already; this only cuts the stage graph.
 *
 * A stage other than the target gets its own job when the shared cache lacks one of its steps
 * and it could run beside something else: another stage copies or mounts from it, more than one
 * stage is built on it (so no two jobs build it twice), or the stage built on it also reads from
 * another stage (so it does not wait for that one). Every other stage runs inside the job of the
 * stage built on it, and so does a job that is only one link of a chain. The last job is the
 * build itself; it is submitted when the jobs it reads from have succeeded and finds their
 * results in the shared cache, written by the workers.
 */
import type { Stage } from "../frontend/plan.ts";
import { neededStages, type BuildGraph } from "../graph/graph.ts";
import type { StepResult } from "../solver/result.ts";

export interface SpreadJob {
  /** The stage this job builds (its --target, the stage's id); absent for the build's own job, which is last. */
  stage?: string;
  /** Ids of the stages whose steps this job shows and reports (each stage has one owner). */
  owns: string[];
  /** The `stage` of each job that must succeed before this one is submitted. */
  after: string[];
  /** Keys of every step this job's build walks, for the server's cache affinity. */
  hints: string[];
}

/** The stages each needed stage is built on or reads from (within the build). */
function dependencies(graph: BuildGraph): Map<number, number[]> {
  const needed = new Set(graph.stages.map((s) => s.index));
  const deps = new Map<number, number[]>();
  for (const stage of graph.stages) {
    const of = new Set<number>();
    if (stage.base.kind === "stage") of.add(stage.base.index);
    for (const step of stage.steps) for (const read of step.reads) of.add(read);
    deps.set(stage.index, [...of].filter((d) => needed.has(d)));
  }
  return deps;
}

/** The stages a stage's steps copy or mount from (its FROM step lists its base stage too: not a read). */
const readsOf = (stage: Stage) => new Set(stage.steps.filter((step) => step.index > 0).flatMap((step) => step.reads));

/** Stages (not the target) that could run beside something else, by the rules above. */
function parallelCandidates(graph: BuildGraph): Set<number> {
  const deps = dependencies(graph);
  const dependents = new Map<number, number>();
  for (const of of deps.values()) for (const d of of) dependents.set(d, (dependents.get(d) ?? 0) + 1);
  const candidates = new Set<number>();
  for (const stage of graph.stages) {
    const reads = readsOf(stage);
    for (const read of reads) candidates.add(read);
    if (stage.base.kind === "stage" && (reads.size > 0 || (dependents.get(stage.base.index) ?? 0) > 1)) candidates.add(stage.base.index);
  }
  candidates.delete(graph.target.index);
  return candidates;
}

/**
 * The jobs of a build, given which stages need work; undefined when one job is as good (no
 * stage would get a job of its own). Jobs come in Dockerfile order, the build's own last.
 */
export function assignJobs(graph: BuildGraph, needsWork: ReadonlySet<number>, steps: readonly StepResult[]): SpreadJob[] | undefined {
  const own = [...parallelCandidates(graph)].filter((index) => needsWork.has(index)).sort((a, b) => a - b);
  if (own.length === 0) return undefined;
  const { plan } = graph;
  const deps = dependencies(graph);
  const owner = new Map<number, number>();
  const keysOf = (stage: Stage) => {
    const ids = new Set([...neededStages(plan, stage)].map((i) => plan.stages[i].id));
    return steps.filter((s) => ids.has(s.stage) && s.key).map((s) => s.key);
  };
  const jobOf = (root: Stage, isFinal: boolean): SpreadJob => {
    const owns: string[] = [];
    const after = new Set<string>();
    const visit = (index: number) => {
      if (owner.has(index)) return; // a fully cached stage two jobs share: the first shows it
      owner.set(index, root.index);
      owns.push(plan.stages[index].id);
      for (const d of deps.get(index) ?? []) {
        if (own.includes(d)) after.add(plan.stages[d].id);
        else visit(d);
      }
    };
    visit(root.index);
    return { ...(isFinal ? {} : { stage: root.id }), owns, after: [...after], hints: keysOf(root) };
  };
  const jobs = joinChains([...own.map((index) => jobOf(plan.stages[index], false)), jobOf(graph.target, true)]);
  return jobs.length > 1 ? jobs : undefined;
}

/**
 * A job that only one job waits for, and that job waits for nothing else, is one link of a
 * chain: it joins that job (two jobs one after the other would only add a worker's start).
 */
function joinChains(jobs: SpreadJob[]): SpreadJob[] {
  for (;;) {
    const link = jobs.find((job) => job.after.length === 1 && jobs.filter((other) => other.after.includes(job.after[0])).length === 1);
    if (!link) return jobs;
    const before = jobs.find((job) => job.stage === link.after[0])!;
    link.owns = [...before.owns, ...link.owns];
    link.after = before.after;
    jobs = jobs.filter((job) => job !== before);
  }
}

/**
 * The jobs of a build whose steps (keyed by a dry run here) are checked against the shared
 * cache: a stage whose every step is there is no job of its own (the build's job hits it).
 */
export async function spreadJobs(graph: BuildGraph, steps: readonly StepResult[], cached: (key: string) => Promise<boolean>): Promise<SpreadJob[] | undefined> {
  const candidates = parallelCandidates(graph);
  if (candidates.size === 0) return undefined;
  const needsWork = new Set<number>();
  await Promise.all(
    graph.stages
      .filter((stage) => candidates.has(stage.index))
      .map(async (stage) => {
        const keys = steps.filter((s) => s.stage === stage.id && s.key).map((s) => s.key);
        const present = await Promise.all(keys.map((key) => cached(key)));
        if (present.includes(false)) needsWork.add(stage.index);
      }),
  );
  return assignJobs(graph, needsWork, steps);
}
