/**
 * Running a remote build as several jobs (spread-plan.ts cut it): each job is submitted once the
 * jobs it reads from have succeeded, so idle workers take independent stages at once and the
 * build's own job finds their results in the shared cache. The user still sees one build: the
 * client's plan is shown once, each step's progress comes from the one job that owns its stage
 * (numbered as in the plan), and the metadata lists every step once with the worker that ran it.
 * The first job that fails fails the build with its stage's error, and every other job is
 * cancelled, as on Ctrl-C.
 */
import { UserError } from "../errors.ts";
import type { ImageBlobs, JobDefinition } from "../remote/job-definition.ts";
import type { JobsClient } from "../remote/jobs-client.ts";
import type { ProgressEvent, ProgressSink } from "../solver/progress.ts";
import type { StepResult } from "../solver/result.ts";
import type { SpreadJob } from "./spread-plan.ts";

export interface SpreadRun {
  jobs: JobsClient;
  definition: JobDefinition;
  spread: SpreadJob[];
  /** The plan event of the client's own dry run: every step the build needs, numbered. */
  plan: ProgressEvent;
  progress: ProgressSink;
  /** Follows one job to its end, its events to `sink`: its image and steps, or an error. */
  follow: (id: string, sink: ProgressSink) => Promise<Outcome>;
}

type Outcome = { image: ImageBlobs; steps: StepResult[] };

export class SpreadBuildError extends UserError {}

export async function runSpread(run: SpreadRun): Promise<Outcome> {
  const build = new SpreadBuild(run);
  const interrupt = () => void build.cancelAll().finally(() => process.exit(130));
  process.once("SIGINT", interrupt);
  try {
    run.progress(run.plan);
    const all = run.spread.map((job) => build.start(job));
    try {
      await Promise.all(all);
    } catch (error) {
      await build.cancelAll();
      await Promise.allSettled(all);
      throw error;
    }
    return { image: build.outcomes.get(run.spread.at(-1)!)!.image, steps: mergeSteps(run.spread, build.outcomes) };
  } finally {
    process.removeListener("SIGINT", interrupt);
  }
}

/** The jobs of one build as they are submitted, followed and (all at once) cancelled. */
class SpreadBuild {
  readonly outcomes = new Map<SpreadJob, Outcome>();
  private readonly started = new Map<SpreadJob, Promise<void>>();
  /** Submissions as they go out: one still in flight when the build stops is cancelled too. */
  private readonly submitted = new Map<SpreadJob, Promise<string>>();
  private readonly ended = new Set<SpreadJob>();
  private readonly byStage: Map<string, SpreadJob>;
  private readonly sink: (job: SpreadJob) => ProgressSink;
  private stopping = false;

  constructor(private readonly run: SpreadRun) {
    this.byStage = new Map(run.spread.filter((job) => job.stage !== undefined).map((job) => [job.stage!, job]));
    this.sink = showing(run);
  }

  /** The job, submitted once the jobs it reads from have succeeded, followed to its end. */
  start(job: SpreadJob): Promise<void> {
    let running = this.started.get(job);
    if (!running) {
      running = this.submitAfter(job);
      this.started.set(job, running);
    }
    return running;
  }

  async cancelAll() {
    this.stopping = true;
    const open = [...this.submitted].filter(([job]) => !this.ended.has(job));
    await Promise.all(open.map(([, id]) => id.then((i) => this.run.jobs.cancel(i)).catch(() => {})));
  }

  private async submitAfter(job: SpreadJob) {
    await Promise.all(job.after.map((stage) => this.start(this.byStage.get(stage)!)));
    if (this.stopping) throw new SpreadBuildError("the build was stopped");
    const definition = job.stage === undefined ? this.run.definition : { ...this.run.definition, target: job.stage };
    const submission = this.run.jobs.submit(definition, job.hints);
    this.submitted.set(job, submission);
    const id = await submission;
    try {
      this.outcomes.set(job, await this.run.follow(id, this.sink(job)));
    } catch (error) {
      throw job.stage === undefined ? error : new SpreadBuildError(`stage ${job.stage}: ${(error as Error).message}`);
    } finally {
      this.ended.add(job);
    }
  }
}

/**
 * A sink per job that shows what the user would see of one build: a step's events from the job
 * that owns its stage, renumbered as in the client's plan; events of no step (warnings) once.
 */
function showing(run: SpreadRun): (job: SpreadJob) => ProgressSink {
  const numbers = new Map((run.plan.steps ?? []).map((step) => [step.id, step.number]));
  const stageOf = new Map((run.plan.steps ?? []).map((step) => [step.id, step.stage]));
  const owner = new Map(run.spread.flatMap((job) => job.owns.map((stage) => [stage, job] as const)));
  const final = run.spread.at(-1)!;
  const shown = new Set<string>();
  return (job) => (event) => {
    if (event.type === "plan") return; // the client's own plan was shown
    if (event.step !== undefined) {
      const stage = stageOf.get(event.step);
      // A step the client's plan does not know (it should not happen) is the build's own job's.
      const from = (stage !== undefined ? owner.get(stage) : undefined) ?? final;
      if (from !== job) return;
      const number = numbers.get(event.step);
      run.progress(number !== undefined ? { ...event, number } : event);
      return;
    }
    const text = JSON.stringify(event);
    if (shown.has(text)) return;
    shown.add(text);
    run.progress(event);
  };
}

/**
 * Every step once, in the build's order: from the job that owns its stage (with that job's
 * worker), unless the build's own job ran it after all.
 */
export function mergeSteps(spread: SpreadJob[], outcomes: Map<SpreadJob, Outcome>): StepResult[] {
  const final = spread.at(-1)!;
  const owner = new Map(spread.flatMap((job) => job.owns.map((stage) => [stage, job] as const)));
  return outcomes.get(final)!.steps.map((step) => {
    const job = owner.get(step.stage);
    if (!job || job === final) return step;
    const theirs = outcomes.get(job)?.steps.find((s) => s.id === step.id);
    if (!theirs || theirs.status === "skipped" || (step.status === "executed" && theirs.status !== "executed")) return step;
    return theirs;
  });
}
