// How often a GPU stage that waits on its job sends a keep-alive heartbeat. The heartbeat is what
// carries a cancel back to the activity (and so to the RunPod job, which bills until cancelled),
// so while few stages wait it goes every 2 s. Each one is also an RPC the Temporal server pays for
// (about a millisecond of its CPU: at 1,000 waiting stages, heartbeats every 2 s took the dev
// server to 0.74 cores, every 10 s to 0.32; bench/PROFILE.md), so with many waiting the process
// spreads them to about 100 a second in all, never further apart than a third of the stages' 30 s
// heartbeat timeout: a cancel then reaches a job within 10 s.
export const KEEP_ALIVE = { minMs: 2_000, maxMs: 10_000, perSecond: 100 };

/** The keep-alive interval for one of `waiting` stages of a process. */
export function keepAliveEveryMs(waiting: number, o = KEEP_ALIVE): number {
  return Math.round(Math.min(o.maxMs, Math.max(o.minMs, (waiting / o.perSecond) * 1000)));
}

/** Counts a process's waiting stages and paces their keep-alives (one per worker process, in ActivityDeps). */
export class KeepAlivePacer {
  private waiting = 0;

  constructor(private readonly o = KEEP_ALIVE) {}

  /** A stage starts waiting on its job; the returned function says it stopped (once is enough). */
  enter(): () => void {
    this.waiting++;
    let left = false;
    return () => {
      if (!left) this.waiting--;
      left = true;
    };
  }

  everyMs(): number {
    return keepAliveEveryMs(this.waiting, this.o);
  }
}
