// One status poller per endpoint per worker process: every GPU stage waiting on a job registers
// the job here, and the poller spends a fixed share of the endpoint's status limits (RunPod
// allows 2,000 status requests per 10 s and 400 at once per endpoint; a held /status-sync counts
// as one of the 400) on all of them together. Held long-polls go to as many jobs as the
// concurrency share allows (completion is then seen at once); every other job is asked with a
// plain /status, round-robin at the rate share. A waiter is woken when its job's state or
// progress changes, or after its own wait with the latest status known.
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
  inFlight: boolean;
  queued: boolean;
  /** Final or gone: nothing more to ask. */
  done: boolean;
}

export interface PollerStats {
  /** Jobs being waited on now. */
  waiting: number;
  inFlight: number;
  longPolls: number;
  /** Requests sent, and answered 429, since the start. */
  sent: number;
  throttled: number;
  maxInFlight: number;
}

export class StatusPoller {
  readonly budget: ReturnType<typeof budgetOf>;
  private readonly entries = new Map<string, Entry>();
  /** Round-robin order of jobs to ask next. */
  private readonly ready: string[] = [];
  private head = 0;
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

  stats(): PollerStats {
    return { waiting: [...this.entries.values()].filter((e) => e.listeners.size > 0).length, inFlight: this.inFlight, longPolls: this.longPolls, ...this.counts };
  }

  private enqueue(e: Entry): void {
    if (e.queued || e.inFlight || e.done) return;
    e.queued = true;
    this.ready.push(e.id);
  }

  /** Sends what the budget allows now, and sets a timer for when it allows more. */
  private pump(): void {
    if (this.timer) return;
    const now = Date.now();
    this.tokens = Math.min(this.budget.burst, this.tokens + ((now - this.refilledAt) / 1000) * this.budget.perSecond);
    this.refilledAt = now;
    if (now < this.pausedUntil) return this.later(this.pausedUntil - now);
    while (this.head < this.ready.length && this.inFlight < this.budget.concurrent) {
      const e = this.entries.get(this.ready[this.head]!);
      if (!e || e.inFlight || e.done) {
        this.head++;
        continue;
      }
      if (e.listeners.size === 0 && now - e.wantedAt > KEEP_MS) {
        this.head++;
        e.queued = false;
        this.entries.delete(e.id);
        continue;
      }
      // A job's first question is a plain /status, so its stage hears its state at once; later ones hold a long-poll where a slot is free.
      const longPoll = e.latest !== undefined && this.longPolls < this.budget.longPolls;
      if (!longPoll && e.readyAt > now) return this.later(e.readyAt - now);
      if (this.tokens < 1) return this.later(((1 - this.tokens) / this.budget.perSecond) * 1000);
      this.head++;
      e.queued = false;
      this.tokens -= 1;
      this.send(e, longPoll);
    }
    // Keep the queue array from growing without end.
    if (this.head > 1024 && this.head * 2 > this.ready.length) {
      this.ready.splice(0, this.head);
      this.head = 0;
    }
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
        if (!e.done && (e.listeners.size > 0 || Date.now() - e.wantedAt <= KEEP_MS)) this.enqueue(e);
        else if (!e.done) this.entries.delete(e.id);
        this.pump();
      });
  }

  private answered(e: Entry, status: RunpodJobStatus): void {
    this.throttledInARow = 0;
    e.latest = status;
    e.lastError = undefined;
    const key = fingerprint(status);
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
