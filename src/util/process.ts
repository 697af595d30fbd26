/** Whether a process still runs: what lets one process clean up after another that died. */
export function processAlive(pid: number): boolean {
  if (!(pid > 0)) return false; // 0 and negative pids name process groups; NaN is no pid
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: alive, another user's (never seen as root, which builds run as).
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
