/**
 * Staging directories of finished steps, removed while the build waits on something else (a
 * RUN's container, slirp4netns exiting at the end) rather than between one step and the next:
 * removing a step's few directories cost 1-4 ms on this VM's shared disk, on the build's
 * critical path, five times in the example project. A timer runs them once the event loop is
 * idle; what is left when the build ends is removed then, so nothing outlives the build.
 */
import { removeTree } from "../rootfs/root.ts";

export class IdleRemovals {
  private readonly pending: string[] = [];
  private timer?: Timer;
  /** The first removal that failed in a timer, thrown by `flush` (a timer has no caller to tell). */
  private failure?: unknown;

  add(directory: string) {
    this.pending.push(directory);
    this.schedule();
  }

  /** One directory per turn of the event loop, so a RUN's events (its exit, say) wait for one at most. */
  private schedule() {
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.remove(this.pending.shift());
      if (this.pending.length) this.schedule();
    }, 0);
  }

  /** Removes what is still pending, now; throws the first failure of any removal. */
  flush() {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.removePending();
    const failure = this.failure;
    this.failure = undefined;
    if (failure !== undefined) throw failure;
  }

  private removePending() {
    while (this.pending.length) this.remove(this.pending.shift());
  }

  private remove(directory: string | undefined) {
    if (directory === undefined) return;
    try {
      removeTree(directory);
    } catch (error) {
      this.failure ??= error;
    }
  }
}
