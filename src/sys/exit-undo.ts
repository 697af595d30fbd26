/**
 * What must not outlive this process however it ends short of kill -9: the overlay mounts and
 * private tmpfs of a RUN. A build interrupted by Ctrl-C or SIGTERM ends in process.exit from its
 * signal handler, where no `finally` runs; without this its overlay stayed mounted under the
 * cache dir (and its tmpfs, holding the RUN's secrets, under /run/memobuild) until the next
 * command cleaned up after it. Each undo is registered while its mount exists and runs, newest
 * first, on the process's exit event.
 */
const pending = new Set<() => void>();
let hooked = false;

/** Registers `undo` to run if the process exits before the returned release is called. */
export function undoOnExit(undo: () => void): () => void {
  if (!hooked) {
    hooked = true;
    process.on("exit", undoPending);
  }
  pending.add(undo);
  return () => void pending.delete(undo);
}

/** Runs every undo still registered, newest first; one that fails does not stop the rest. */
export function undoPending() {
  for (const undo of [...pending].reverse()) {
    pending.delete(undo);
    try {
      undo();
    } catch {
      // exiting: nothing better to do than try the next one
    }
  }
}
