/** Stage scheduling: independent stages build at the same time, within a limit. */
import type { Stage } from "../frontend/plan.ts";

/**
 * Runs `buildStage` for every stage once the stages it reads (its base, COPY --from,
 * RUN --mount from) are built, with at most `jobs` stages at once. The first failure is
 * thrown after the stages already running have stopped.
 */
export async function scheduleStages(stages: Stage[], jobs: number, buildStage: (stage: Stage) => Promise<void>) {
  const included = new Set(stages.map((s) => s.index));
  const done = new Map<number, Promise<void>>();
  let running = 0;
  const waiting: (() => void)[] = [];
  const slot = async () => {
    while (running >= jobs) await new Promise<void>((resolve) => waiting.push(resolve));
    running++;
  };
  const release = () => {
    running--;
    waiting.shift()?.();
  };
  const dependencies = (stage: Stage) => {
    const deps = new Set<number>();
    if (stage.base.kind === "stage") deps.add(stage.base.index);
    for (const step of stage.steps) for (const read of step.reads) deps.add(read);
    return [...deps].filter((d) => included.has(d));
  };
  for (const stage of stages) {
    const deps = dependencies(stage).map((d) => done.get(d)!);
    done.set(
      stage.index,
      (async () => {
        await Promise.all(deps);
        await slot();
        try {
          await buildStage(stage);
        } finally {
          release();
        }
      })(),
    );
  }
  const results = await Promise.allSettled(done.values());
  const failure = results.find((r) => r.status === "rejected") as PromiseRejectedResult | undefined;
  if (failure) throw failure.reason;
}
