// Fault injection and the service's rate limits. Faults are off unless configured (option
// `faults` or PUT /admin/{endpointId}/faults).
import { z } from 'zod';

/** Client API operations, as named in rate limits and fault filters. */
export const OPERATIONS = ['run', 'runsync', 'status', 'status-sync', 'stream', 'cancel', 'retry', 'purge-queue', 'health'] as const;
export type Operation = (typeof OPERATIONS)[number];

export const FaultConfig = z.strictObject({
  /** Faults of the client API (/v2/...). */
  api: z
    .strictObject({
      /** Share of requests answered 429 Too Many Requests (0..1). */
      throttleRate: z.number().min(0).max(1).optional(),
      /** The next this many requests are answered 429 (a storm with an end). */
      throttleNext: z.number().int().nonnegative().optional(),
      /** The next this many /run requests create their job, then answer 503 (the client cannot know it exists). */
      errorAfterCreateNext: z.number().int().nonnegative().optional(),
      /** Share of requests answered with `errorStatus` (0..1). */
      errorRate: z.number().min(0).max(1).optional(),
      /** Status of injected errors; default 500. */
      errorStatus: z.number().int().min(500).max(599).optional(),
      /** Added to every request before it is answered. */
      latencyMs: z.number().int().nonnegative().optional(),
      /** Only these operations; default all. */
      operations: z.array(z.enum(OPERATIONS)).optional(),
    })
    .optional(),
  /**
   * Kill a worker (SIGKILL) at a point of a job: right after it `take`s the job, at its first
   * `progress` update, or when it posts its `result` (the result is lost).
   */
  workerCrash: z
    .strictObject({
      at: z.enum(['take', 'progress', 'result']),
      /** How many crashes to inject; default 1. */
      times: z.number().int().positive().optional(),
      /** Only jobs whose input.task is this. */
      task: z.string().optional(),
    })
    .optional(),
  /** Added before each worker process starts (slow cold starts). */
  coldStartDelayMs: z.number().int().nonnegative().optional(),
  /**
   * No GPU of the endpoint's type is free: workers it would start wait, workers already up are
   * handed no job, both shown `THROTTLED` in the REST API's worker list (as the service shows
   * them), and queued jobs stay IN_QUEUE.
   */
  noCapacity: z.boolean().optional(),
});
export type FaultConfig = z.infer<typeof FaultConfig>;

export class Faults {
  private config: FaultConfig = {};
  private crashesLeft = 0;
  private throttlesLeft = 0;
  private createErrorsLeft = 0;
  /** How many faults were injected, by kind. */
  readonly injected = { throttled: 0, errors: 0, crashes: 0, errorsAfterCreate: 0 };

  constructor(config: FaultConfig = {}) {
    this.set(config);
  }

  set(config: FaultConfig): void {
    this.config = FaultConfig.parse(config);
    this.crashesLeft = this.config.workerCrash ? (this.config.workerCrash.times ?? 1) : 0;
    this.throttlesLeft = this.config.api?.throttleNext ?? 0;
    this.createErrorsLeft = this.config.api?.errorAfterCreateNext ?? 0;
  }

  /**
   * Changes some faults and keeps the rest, with what is left of their counts (drills running at
   * once): `api` keys replace those given (an undefined value removes one), `workerCrash` and
   * `coldStartDelayMs` replace theirs.
   */
  patch(change: { api?: Partial<Record<keyof NonNullable<FaultConfig['api']>, unknown>>; workerCrash?: FaultConfig['workerCrash'] | null; coldStartDelayMs?: number; noCapacity?: boolean }): void {
    const api = change.api ? Object.fromEntries(Object.entries({ ...this.config.api, ...change.api }).filter(([, v]) => v !== undefined)) : this.config.api;
    const next = FaultConfig.parse({
      ...(api && Object.keys(api).length ? { api } : {}),
      ...(change.workerCrash === null ? {} : change.workerCrash ? { workerCrash: change.workerCrash } : this.config.workerCrash ? { workerCrash: this.config.workerCrash } : {}),
      ...(change.coldStartDelayMs !== undefined ? { coldStartDelayMs: change.coldStartDelayMs } : this.config.coldStartDelayMs !== undefined ? { coldStartDelayMs: this.config.coldStartDelayMs } : {}),
      ...((change.noCapacity ?? this.config.noCapacity) ? { noCapacity: true } : {}),
    });
    this.config = next;
    if (change.workerCrash !== undefined) this.crashesLeft = change.workerCrash ? (change.workerCrash.times ?? 1) : 0;
    if (change.api && 'throttleNext' in change.api) this.throttlesLeft = next.api?.throttleNext ?? 0;
    if (change.api && 'errorAfterCreateNext' in change.api) this.createErrorsLeft = next.api?.errorAfterCreateNext ?? 0;
  }

  /** Whether this /run, whose job was just created, is answered 503 anyway. */
  errorAfterCreate(): boolean {
    if (this.createErrorsLeft <= 0) return false;
    this.createErrorsLeft--;
    this.injected.errorsAfterCreate++;
    return true;
  }

  get(): FaultConfig & { crashesLeft: number; throttlesLeft: number; injected: Faults['injected'] } {
    return { ...this.config, crashesLeft: this.crashesLeft, throttlesLeft: this.throttlesLeft, injected: { ...this.injected } };
  }

  /** What to do with a client API request: delay it, then answer `status` or go on. */
  forRequest(op: Operation): { delayMs: number; status?: number } {
    const api = this.config.api;
    if (!api || (api.operations && !api.operations.includes(op))) return { delayMs: 0 };
    const delayMs = api.latencyMs ?? 0;
    if (this.throttlesLeft > 0 || (api.throttleRate && Math.random() < api.throttleRate)) {
      if (this.throttlesLeft > 0) this.throttlesLeft--;
      this.injected.throttled++;
      return { delayMs, status: 429 };
    }
    if (api.errorRate && Math.random() < api.errorRate) {
      this.injected.errors++;
      return { delayMs, status: api.errorStatus ?? 500 };
    }
    return { delayMs };
  }

  /** Whether the worker running a job of `task` should crash now, at `point`. */
  crashAt(point: 'take' | 'progress' | 'result', task: string | undefined): boolean {
    const crash = this.config.workerCrash;
    if (!crash || crash.at !== point || this.crashesLeft <= 0) return false;
    if (crash.task !== undefined && crash.task !== task) return false;
    this.crashesLeft--;
    this.injected.crashes++;
    return true;
  }

  coldStartDelayMs(): number {
    return this.config.coldStartDelayMs ?? 0;
  }

  noCapacity(): boolean {
    return this.config.noCapacity === true;
  }
}

/** RunPod's documented limits per endpoint: requests per 10 s, and requests in flight at once. */
export const RUNPOD_RATE_LIMITS: Partial<Record<Operation, number>> = {
  run: 1000,
  runsync: 2000,
  status: 2000,
  stream: 2000,
  cancel: 100,
  'purge-queue': 2,
};
export const RUNPOD_CONCURRENCY_LIMITS: Partial<Record<Operation, number>> = {
  run: 200,
  runsync: 400,
  status: 400,
  stream: 400,
  cancel: 20,
};
export const RATE_WINDOW_MS = 10_000;

/** /status-sync is a /status held open: it counts against /status's limits (a held long-poll is a
 * concurrent status request). */
const bucketOf = (op: Operation): Operation => (op === 'status-sync' ? 'status' : op);

/** What one limit bucket saw since the last reset: benchmarks report these against the limits. */
export interface LimitStats {
  /** Requests admitted, and answered 429 for the rate or the concurrency limit. */
  admitted: number;
  refusedRate: number;
  refusedConcurrency: number;
  /** The most in flight at once, the most admitted in one clock second, and in any 10 s window. */
  maxInFlight: number;
  maxPerSecond: number;
  maxPerWindow: number;
  /** The limits themselves (absent: none). */
  limitPerWindow?: number;
  limitConcurrent?: number;
}

/** A sliding-window counter and an in-flight count per operation. */
export class RateLimiter {
  private readonly hits = new Map<Operation, number[]>();
  private readonly inFlight = new Map<Operation, number>();
  private readonly seen = new Map<Operation, LimitStats & { second: number; inSecond: number }>();
  /** Requests answered 429, by reason. */
  readonly refused = { rate: 0, concurrency: 0 };

  constructor(
    private readonly limits: Partial<Record<Operation, number>>,
    private readonly concurrency: Partial<Record<Operation, number>> = RUNPOD_CONCURRENCY_LIMITS,
  ) {}

  /**
   * Admits a request: undefined when it is over a limit (answer 429), else a function to call
   * when its answer is written.
   */
  admit(op: Operation, now = Date.now()): (() => void) | undefined {
    const bucket = bucketOf(op);
    const seen = this.statsOf(bucket);
    const limit = this.limits[bucket];
    const list = this.hits.get(bucket) ?? [];
    while (list.length > 0 && list[0]! <= now - RATE_WINDOW_MS) list.shift();
    this.hits.set(bucket, list);
    if (limit !== undefined && list.length >= limit) {
      this.refused.rate++;
      seen.refusedRate++;
      return undefined;
    }
    const open = this.inFlight.get(bucket) ?? 0;
    const most = this.concurrency[bucket];
    if (most !== undefined && open >= most) {
      this.refused.concurrency++;
      seen.refusedConcurrency++;
      return undefined;
    }
    list.push(now);
    this.inFlight.set(bucket, open + 1);
    const second = Math.floor(now / 1000);
    if (second !== seen.second) {
      seen.second = second;
      seen.inSecond = 0;
    }
    seen.admitted++;
    seen.inSecond++;
    seen.maxPerSecond = Math.max(seen.maxPerSecond, seen.inSecond);
    seen.maxPerWindow = Math.max(seen.maxPerWindow, list.length);
    seen.maxInFlight = Math.max(seen.maxInFlight, open + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inFlight.set(bucket, (this.inFlight.get(bucket) ?? 1) - 1);
    };
  }

  /** Requests of `op`'s bucket in flight now (the most seen is what a test compares with the limit). */
  open(op: Operation): number {
    return this.inFlight.get(bucketOf(op)) ?? 0;
  }

  /** What `op`'s bucket (status for status-sync) saw since the last reset. */
  stats(op: Operation): LimitStats {
    const { second: _s, inSecond: _i, ...stats } = this.statsOf(bucketOf(op));
    return stats;
  }

  /** Starts the counts again (a benchmark's window); the limits' own windows go on. */
  resetStats(): void {
    this.seen.clear();
  }

  private statsOf(bucket: Operation) {
    let s = this.seen.get(bucket);
    if (!s) {
      const limitPerWindow = this.limits[bucket];
      const limitConcurrent = this.concurrency[bucket];
      s = {
        admitted: 0, refusedRate: 0, refusedConcurrency: 0, maxInFlight: this.inFlight.get(bucket) ?? 0, maxPerSecond: 0, maxPerWindow: 0,
        ...(limitPerWindow !== undefined ? { limitPerWindow } : {}),
        ...(limitConcurrent !== undefined ? { limitConcurrent } : {}),
        second: 0, inSecond: 0,
      };
      this.seen.set(bucket, s);
    }
    return s;
  }
}
