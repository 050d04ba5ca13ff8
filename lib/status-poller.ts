// One status poller per endpoint per worker process: every GPU stage waiting on a job registers
// the job here, and the poller spends a fixed share of the endpoint's status limits (RunPod
// allows 2,000 status requests per 10 s and 400 at once per endpoint; a held /status-sync counts
// as one of the 400) on all of them together. Held long-polls (completion is then seen at once)
// go first to the jobs expected to finish soonest, by the ETA a training reports in its status
// output; every job is also asked in turn, round-robin at the rate share, so a failure, requeue or
// cancel of any of them is seen. A waiter is woken when its job's state or progress changes, or
// after its own wait with the latest status known. A job said to be final (RunPod's completion
// webhook, lib/completion-webhook.ts) is asked next, ahead of both, within the same budget.
import { MinHeap } from './min-heap.js';
import { isFinalState, RunpodHttpError, RunpodJobNotFound, type RunpodJobStatus } from './runpod-client.js';

/** What the poller asks an endpoint (RunpodClient has both). */
export interface StatusSource {
  status(id: string): Promise<RunpodJobStatus>;
  waitForStatus(id: string, waitMs: number): Promise<RunpodJobStatus>;
}

/** RunPod's documented per-endpoint limits for /status (a held /status-sync counts against them). */
export const RUNPOD_STATUS_LIMITS = { perTenSeconds: 2_000, concurrent: 400 } as const;

export interface StatusPollerOptions {
  /** Share of RUNPOD_STATUS_LIMITS this poller may use (LORAFLOW_STATUS_SHARE), 0 < share ≤ 1. */
  share: number;
  /** Length of a held long-poll (LORAFLOW_STATUS_WAIT_MS); 0: plain /status only. */
  longPollMs: number;
  /** The shortest gap between two plain polls of one job (LORAFLOW_POLL_MS). */
  minIntervalMs: number;
}

/** The request budget a share buys: sustained rate, a small burst, requests in flight, long-polls. */
export function budgetOf(o: StatusPollerOptions) {
  // With a burst of a tenth of a second's worth on top, no clock second sees more than the share of
  // 200/s and no 10 s window more than the share of 2,000.
  const perSecond = Math.max(1, Math.floor((o.share * RUNPOD_STATUS_LIMITS.perTenSeconds) / 10 / 1.1));
  const concurrent = Math.max(1, Math.floor(o.share * RUNPOD_STATUS_LIMITS.concurrent));
  return {
    perSecond,
    burst: Math.max(1, Math.floor(perSecond / 10)),
    concurrent,
    // A fifth of the slots stays free for plain polls, so jobs past the long-polled ones are still asked.
    longPolls: o.longPollMs > 0 ? Math.floor(concurrent * 0.8) : 0,
  };
}

/** What a waiter is woken for: a new state or new progress (not the ticking executionTime). */
const fingerprint = (s: RunpodJobStatus | undefined) => (s ? `${s.status}|${JSON.stringify(s.output ?? null)}` : '');

/** An entry that no stage has asked about for this long is dropped. */
const KEEP_MS = 30_000;

/**
 * A job expected to finish within this long is ranked by its estimate (long-polls go to the
 * soonest); later ones wait their turn with the jobs that have none. Well above a long-poll's
 * length, so a job holds one before its estimate comes.
 */
const NEAR_MS = 60_000;

/** An estimate this much earlier than the one a job is ranked at re-ranks it (see enqueue). */
const EARLIER_MS = 5_000;

/**
 * When a job expects to finish, from its status read at `readAt` (contract/gpu-job.ts GpuProgress
 * in `output` while IN_PROGRESS): the read time plus the training's etaSeconds; past training
 * (sample images, upload) the end is near, so the read time itself. Undefined without an
 * estimate (queued, loading, captioning, an output of another shape).
 */
export function expectedFinish(s: RunpodJobStatus | undefined, readAt: number): number | undefined {
  if (s?.status !== 'IN_PROGRESS' || typeof s.output !== 'object' || s.output === null) return undefined;
  const p = s.output as { phase?: unknown; etaSeconds?: unknown };
  if (p.phase === 'generating' || p.phase === 'upload') return readAt;
  const eta = p.etaSeconds;
  return typeof eta === 'number' && Number.isFinite(eta) && eta >= 0 ? readAt + eta * 1000 : undefined;
}

interface Listener {
  since: string;
  resolve: (s: RunpodJobStatus | undefined) => void;
  reject: (err: unknown) => void;
  timer: NodeJS.Timeout;
}

interface Entry {
  id: string;
  latest?: RunpodJobStatus;
  lastError?: unknown;
  listeners: Set<Listener>;
  wantedAt: number;
  /** The next plain poll of this job not before this time. */
  readyAt: number;
  /** expectedFinish of the latest status; undefined: no estimate. */
  expectedAt?: number;
  inFlight: boolean;
  /** In the round-robin queue. */
  queued: boolean;
  /** In the heap by expectedAt: the estimate its latest item was pushed at (older items are dropped when they surface). */
  heapKey?: number;
  /** Final or gone: nothing more to ask. */
  done: boolean;
  /** Said to be final (nudge): asked next, or again once the request in flight is answered. */
  nudged?: boolean;
}

export interface PollerStats {
  /** Jobs being waited on now. */
  waiting: number;
  inFlight: number;
  longPolls: number;
  /** Jobs with an estimate of when they finish (the heap, with stale items not dropped yet). */
  ranked: number;
  /** Requests sent, and answered 429, since the start. */
  sent: number;
  throttled: number;
  maxInFlight: number;
}

export class StatusPoller {
  readonly budget: ReturnType<typeof budgetOf>;
  private readonly entries = new Map<string, Entry>();
  /** Round-robin order of jobs to ask next. */
  private readonly ready: Entry[] = [];
  private head = 0;
  /** Jobs with an estimate, soonest first (stale items are dropped when they reach the top). */
  private readonly soon = new MinHeap<Entry>();
  /** Jobs said to be final, asked before any other. */
  private urgent: Entry[] = [];
  private tokens: number;
  private refilledAt = Date.now();
  private inFlight = 0;
  private longPolls = 0;
  private pausedUntil = 0;
  private throttledInARow = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly counts = { sent: 0, throttled: 0, maxInFlight: 0 };

  constructor(
    private readonly source: StatusSource,
    private readonly options: StatusPollerOptions,
  ) {
    this.budget = budgetOf(options);
    this.tokens = this.budget.burst;
  }

  /**
   * The job's status once it differs (state or progress) from `since`, or after `maxWaitMs` the
   * latest known (undefined when none was read yet). Rejects with RunpodJobNotFound when the
   * endpoint no longer knows the job, and with the last error when every poll in the wait failed.
   */
  watch(id: string, since: RunpodJobStatus | undefined, o: { maxWaitMs: number; signal?: AbortSignal }): Promise<RunpodJobStatus | undefined> {
    let e = this.entries.get(id);
    if (!e) {
      e = { id, listeners: new Set(), wantedAt: Date.now(), readyAt: 0, inFlight: false, queued: false, done: false };
      this.entries.set(id, e);
    }
    const entry = e;
    entry.wantedAt = Date.now();
    const key = fingerprint(since);
    if (entry.latest && fingerprint(entry.latest) !== key) return Promise.resolve(entry.latest);
    if (entry.done) {
      // Gone (404) or final and already delivered: ask once more, plainly.
      entry.done = false;
      entry.latest = undefined;
      entry.expectedAt = undefined;
    }
    return new Promise((resolve, reject) => {
      const listener: Listener = {
        since: key,
        resolve: (s) => (cleanup(), resolve(s)),
        reject: (err) => (cleanup(), reject(err)),
        timer: setTimeout(() => {
          const err = entry.lastError;
          if (err !== undefined && !entry.latest) listener.reject(err);
          else listener.resolve(entry.latest);
        }, o.maxWaitMs),
      };
      const onAbort = () => listener.resolve(undefined);
      const cleanup = () => {
        clearTimeout(listener.timer);
        entry.listeners.delete(listener);
        o.signal?.removeEventListener('abort', onAbort);
      };
      o.signal?.addEventListener('abort', onAbort, { once: true });
      entry.listeners.add(listener);
      this.enqueue(entry);
      this.pump();
    });
  }

  /**
   * Someone said the job is final (a webhook, which anyone could send: the job's status is asked,
   * not taken from them). It is asked ahead of every other job, within the same rate and
   * concurrency budget. False when no stage here waits on it.
   */
  nudge(id: string): boolean {
    const e = this.entries.get(id);
    if (!e || e.done) return false;
    if (!e.nudged && !e.inFlight) this.urgent.push(e);
    e.nudged = true; // in flight: that answer may predate the end, so it is asked once more after it
    // The timer set for the next turn may be far off: the pump decides again now (pauses hold).
    clearTimeout(this.timer);
    this.timer = undefined;
    this.pump();
    return true;
  }

  stats(): PollerStats {
    return { waiting: [...this.entries.values()].filter((e) => e.listeners.size > 0).length, inFlight: this.inFlight, longPolls: this.longPolls, ranked: this.soon.size, ...this.counts };
  }

  private enqueue(e: Entry): void {
    if (e.inFlight || e.done) return;
    if (!e.queued) {
      e.queued = true;
      this.ready.push(e);
    }
    // An estimate that moved earlier (a training that sped up) goes in at once: its old item, deeper
    // in the heap, would keep it from being ranked until the time it first gave. Not for the jitter
    // of reading a progress report late, which would fill the heap with items to drop.
    if (e.expectedAt !== undefined && (e.heapKey === undefined || e.expectedAt < e.heapKey - EARLIER_MS)) {
      e.heapKey = e.expectedAt;
      this.soon.push(e.expectedAt, e);
    }
  }

  /** Sends what the budget allows now, and sets a timer for when it allows more. */
  private pump(): void {
    if (this.timer) return;
    const now = Date.now();
    this.tokens = Math.min(this.budget.burst, this.tokens + ((now - this.refilledAt) / 1000) * this.budget.perSecond);
    this.refilledAt = now;
    if (now < this.pausedUntil) return this.later(this.pausedUntil - now);
    // Keep the queue array from growing without end.
    if (this.head > 1024 && this.head * 2 > this.ready.length) {
      this.ready.splice(0, this.head);
      this.head = 0;
    }
    while (this.inFlight < this.budget.concurrent) {
      const live = (e: Entry) => !e.done && this.entries.get(e.id) === e;
      const urgent = this.urgent.find((e) => live(e) && !e.inFlight);
      if (urgent) {
        if (this.tokens < 1) return this.later(((1 - this.tokens) / this.budget.perSecond) * 1000);
        this.urgent = this.urgent.filter((e) => e !== urgent && live(e));
        urgent.nudged = false;
        this.tokens -= 1;
        this.send(urgent, false);
        continue;
      }
      const soon = this.soonest(now);
      const turn = this.nextInTurn(now);
      const slotFree = this.longPolls < this.budget.longPolls;
      let pick: Entry;
      let longPoll = false;
      if (soon && slotFree) [pick, longPoll] = [soon, true];
      // A job's first question is a plain /status, so its stage hears its state at once; later ones
      // hold a long-poll where a slot is free (no job with a near estimate is waiting for it).
      else if (turn && ((turn.latest !== undefined && slotFree) || turn.readyAt <= now)) [pick, longPoll] = [turn, turn.latest !== undefined && slotFree];
      // Budget the round-robin does not need yet goes to the soonest job not long-polled.
      else if (soon && soon.readyAt <= now) pick = soon;
      else if (turn || soon) return this.later(Math.min(turn?.readyAt ?? Infinity, soon?.readyAt ?? Infinity) - now);
      else return;
      if (this.tokens < 1) return this.later(((1 - this.tokens) / this.budget.perSecond) * 1000);
      if (pick === soon) {
        this.soon.pop();
        pick.heapKey = undefined;
      } else {
        this.head++;
        pick.queued = false;
      }
      this.tokens -= 1;
      this.send(pick, longPoll);
    }
  }

  /** The waiting job expected to finish soonest, if that is near; drops stale heap items on the way. */
  private soonest(now: number): Entry | undefined {
    for (let top = this.soon.peek(); top; top = this.soon.peek()) {
      const e = top.value;
      const live = !e.inFlight && !e.done && this.entries.get(e.id) === e && this.wanted(e, now);
      if (live && top.key === e.expectedAt) return top.key <= now + NEAR_MS ? e : undefined;
      this.soon.pop();
      // An item older than the entry's latest one is only dropped.
      if (top.key !== e.heapKey) continue;
      e.heapKey = undefined;
      // Its estimate changed (later) while it was in the heap: back in at the new one.
      if (live) this.enqueue(e);
    }
    return undefined;
  }

  /** Someone waits on the job, or did within KEEP_MS (a woken waiter asks again a moment later). */
  private wanted(e: Entry, now: number): boolean {
    return e.listeners.size > 0 || now - e.wantedAt <= KEEP_MS;
  }

  /** The head of the round-robin queue, past jobs in flight, final, or no longer asked about. */
  private nextInTurn(now: number): Entry | undefined {
    for (; this.head < this.ready.length; this.head++) {
      const e = this.ready[this.head]!;
      if (!e.inFlight && !e.done && this.entries.get(e.id) === e) {
        if (this.wanted(e, now)) return e;
        this.entries.delete(e.id);
      }
      e.queued = false;
    }
    return undefined;
  }

  private later(ms: number): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.pump();
    }, Math.max(1, Math.ceil(ms)));
    this.timer.unref();
  }

  private send(e: Entry, longPoll: boolean): void {
    e.inFlight = true;
    this.inFlight++;
    if (longPoll) this.longPolls++;
    this.counts.sent++;
    this.counts.maxInFlight = Math.max(this.counts.maxInFlight, this.inFlight);
    const asked = Date.now();
    const request = longPoll ? this.source.waitForStatus(e.id, this.options.longPollMs) : this.source.status(e.id);
    request
      .then(
        (status) => this.answered(e, status),
        (err: unknown) => this.failed(e, err),
      )
      .finally(() => {
        e.inFlight = false;
        this.inFlight--;
        if (longPoll) this.longPolls--;
        e.readyAt = asked + this.options.minIntervalMs;
        if (e.nudged && !e.done) this.urgent.push(e);
        if (!e.done && this.wanted(e, Date.now())) this.enqueue(e);
        else if (!e.done) this.entries.delete(e.id);
        this.pump();
      });
  }

  private answered(e: Entry, status: RunpodJobStatus): void {
    this.throttledInARow = 0;
    e.latest = status;
    e.expectedAt = expectedFinish(status, Date.now());
    e.lastError = undefined;
    const key = fingerprint(status);
    // A waiter woken here still wants the job (it asks again a moment later): keep its place.
    if (e.listeners.size > 0) e.wantedAt = Date.now();
    for (const l of [...e.listeners]) if (l.since !== key) l.resolve(status);
    if (isFinalState(status.status)) {
      e.done = true;
      this.forgetLater(e);
    }
  }

  private failed(e: Entry, err: unknown): void {
    if (err instanceof RunpodJobNotFound) {
      e.done = true;
      e.latest = undefined;
      for (const l of [...e.listeners]) l.reject(err);
      this.forgetLater(e);
      return;
    }
    e.lastError = err;
    if (err instanceof RunpodHttpError && err.status === 429) {
      // Throttled anyway (another process shares the endpoint): stop asking for a while.
      this.counts.throttled++;
      this.throttledInARow++;
      this.pausedUntil = Date.now() + Math.min(10_000, 250 * 2 ** Math.min(this.throttledInARow, 6));
    }
  }

  /** A final or gone job is kept a while, so a stage that asks again gets the answer at once. */
  private forgetLater(e: Entry): void {
    setTimeout(() => {
      if (this.entries.get(e.id) === e && e.done && e.listeners.size === 0) this.entries.delete(e.id);
    }, KEEP_MS).unref();
  }
}
