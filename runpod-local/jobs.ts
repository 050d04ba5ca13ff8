// The job store of one endpoint: the queue (FIFO, low-priority jobs after normal ones), each
// job's state machine, long-polling workers and clients, result retention, and the ledger.
// A job is held by one worker *incarnation* (one process lifetime, identified by its token), so a
// late report from a process that was replaced can never change a job.
import { randomUUID } from 'node:crypto';
import { redact } from './redact.js';

export const JOB_STATES = ['IN_QUEUE', 'IN_PROGRESS', 'COMPLETED', 'FAILED', 'CANCELLED', 'TIMED_OUT'] as const;
export type JobState = (typeof JOB_STATES)[number];
const TERMINAL: ReadonlySet<JobState> = new Set(['COMPLETED', 'FAILED', 'CANCELLED', 'TIMED_OUT']);
export const isTerminal = (s: JobState): boolean => TERMINAL.has(s);

/** One run of a job on a worker. */
export interface LedgerAttempt {
  workerId: string;
  takenAt: string;
  /** Set when the worker that took the job had just started for it (a cold start). */
  coldStartMs?: number;
  endedAt?: string;
  /** How the attempt ended: a final state, or "requeued: <why>". */
  outcome?: string;
}

/** One line per submitted job; never the job's input or output. */
export interface LedgerEntry {
  id: string;
  endpointId: string;
  task?: string;
  submittedAt: string;
  takenAt?: string;
  workerId?: string;
  progressUpdates: number;
  /** Chunks a generator handler streamed. */
  streamChunks: number;
  finishedAt?: string;
  /** When a /status or /status-sync first answered with the final state: the first a client could know. */
  finalAnsweredAt?: string;
  cancelledAt?: string;
  /** Set when the job's TTL ran out: it was removed (/status answers 404). */
  expiredAt?: string;
  /** Why it FAILED or TIMED_OUT, as /status says (the worker's `[CLASS] message`), cut to 300 characters. */
  error?: string;
  status: JobState;
  /** /runsync instead of /run. */
  sync: boolean;
  lowPriority: boolean;
  /** Every time a worker took the job (more than one after a requeue or /retry). */
  attempts: LedgerAttempt[];
  /** Requeues after a lost worker plus /retry calls. */
  retries: number;
  webhook?: { attempts: number; delivered: boolean; lastStatus?: number };
}

export interface Job {
  id: string;
  endpointId: string;
  input: unknown;
  webhook?: string;
  status: JobState;
  submittedAt: number;
  /** When the current attempt was queued (submission, requeue or /retry). */
  queuedAt: number;
  takenAt?: number;
  finishedAt?: number;
  workerId?: string;
  /** Token of the worker incarnation running the job. */
  holder?: string;
  output?: unknown;
  error?: string;
  /** Partial outputs a generator handler posted to job-stream. */
  stream: unknown[];
  /** How many of `stream` /stream has handed out. */
  streamRead: number;
  executionTimeoutMs?: number;
  ttlMs?: number;
  lowPriority: boolean;
  sync: boolean;
  /** Requeues after a lost worker (not /retry). */
  lossRetries: number;
  timeoutTimer?: NodeJS.Timeout;
  ttlTimer?: NodeJS.Timeout;
  /** Called on every change of the job (long-polling clients). */
  watchers: Set<() => void>;
  ledger: LedgerEntry;
}

/** The body of GET /status, shaped like RunPod's. */
export interface StatusBody {
  id: string;
  status: JobState;
  delayTime: number;
  executionTime: number;
  output?: unknown;
  error?: string;
  workerId?: string;
}

/** What the SDK posts to job-done: a progress update, a result, or an error. */
export interface DoneBody {
  status?: unknown;
  output?: unknown;
  error?: unknown;
  stopPod?: unknown;
}

interface TakeWaiter {
  holder: string;
  workerId: string;
  max: () => number;
  resolve: (jobs: Job[]) => void;
}

export interface SubmitOptions {
  webhook?: string;
  executionTimeoutMs?: number;
  ttlMs?: number;
  lowPriority?: boolean;
  sync?: boolean;
}

export interface JobStoreOptions {
  endpointId: string;
  /** Retention of an async (/run) job's result after it finishes. */
  resultTtlMs: number;
  /** Retention of a /runsync job's result. Default 60 s. */
  syncResultTtlMs?: number;
  /** Endpoint-wide execution timeout (0: none); a request's `policy.executionTimeout` overrides it. */
  executionTimeoutMs?: number;
  /** Default job lifetime (queue + execution) when the request sets no `policy.ttl`. 0: none. */
  defaultTtlMs?: number;
  /** How often a job whose worker was lost is put back in the queue before it fails. */
  jobRetries?: number;
  /** Called when a job that a worker is running is cancelled or timed out. */
  onStopRunning: (job: Job, holder: string) => void;
  /** Called on every state change worth a log line (no inputs or outputs). */
  onEvent?: (event: string, job: Job) => void;
  /** Called when a job reaches a final state. */
  onFinished?: (job: Job) => void;
  /** Called when jobs are queued (to scale workers up). */
  onQueued?: () => void;
  /** No GPU is free (the noCapacity fault): queued jobs are handed to no worker, not even one already waiting. */
  paused?: () => boolean;
}

export class JobStore {
  private readonly jobs = new Map<string, Job>();
  private readonly queue: Job[] = [];
  private readonly waiters: TakeWaiter[] = [];
  private readonly entries: LedgerEntry[] = [];
  private retried = 0;
  private closed = false;

  constructor(private readonly opts: JobStoreOptions) {}

  submit(input: unknown, extra: SubmitOptions = {}): Job {
    const now = Date.now();
    const task = isRecord(input) && typeof input.task === 'string' ? input.task : undefined;
    const id = `${extra.sync ? 'sync-' : ''}${randomUUID()}-u1`;
    const ledger: LedgerEntry = {
      id,
      endpointId: this.opts.endpointId,
      ...(task !== undefined ? { task } : {}),
      submittedAt: new Date(now).toISOString(),
      progressUpdates: 0,
      streamChunks: 0,
      status: 'IN_QUEUE',
      sync: extra.sync ?? false,
      lowPriority: extra.lowPriority ?? false,
      attempts: [],
      retries: 0,
    };
    const job: Job = {
      id,
      endpointId: this.opts.endpointId,
      input,
      status: 'IN_QUEUE',
      submittedAt: now,
      queuedAt: now,
      stream: [],
      streamRead: 0,
      lowPriority: extra.lowPriority ?? false,
      sync: extra.sync ?? false,
      lossRetries: 0,
      watchers: new Set(),
      ledger,
      ...(extra.webhook !== undefined ? { webhook: extra.webhook } : {}),
      ...(extra.executionTimeoutMs !== undefined ? { executionTimeoutMs: extra.executionTimeoutMs } : {}),
    };
    const ttlMs = extra.ttlMs ?? this.opts.defaultTtlMs;
    if (ttlMs !== undefined && ttlMs > 0) {
      job.ttlMs = ttlMs;
      job.ttlTimer = setTimeout(() => this.expire(job), ttlMs);
      job.ttlTimer.unref();
    }
    this.jobs.set(id, job);
    this.entries.push(ledger);
    this.enqueue(job);
    this.opts.onEvent?.('submitted', job);
    this.dispatch();
    this.opts.onQueued?.();
    return job;
  }

  get(id: string): Job | undefined {
    this.purgeExpired();
    return this.jobs.get(id);
  }

  ledger(): LedgerEntry[] {
    return this.entries.map((e) => structuredClone(e));
  }

  /** Queued jobs: all, and those that may trigger scaling (not low priority). */
  queued(): { all: number; normal: number } {
    return { all: this.queue.length, normal: this.queue.filter((j) => !j.lowPriority).length };
  }

  counts(): { completed: number; failed: number; inProgress: number; inQueue: number; retried: number } {
    const c = { completed: 0, failed: 0, inProgress: 0, inQueue: 0, retried: this.retried };
    for (const e of this.entries) {
      if (e.status === 'COMPLETED') c.completed++;
      else if (e.status === 'FAILED' || e.status === 'TIMED_OUT') c.failed++;
      else if (e.status === 'IN_PROGRESS') c.inProgress++;
      else if (e.status === 'IN_QUEUE') c.inQueue++;
    }
    return c;
  }

  /** Job ids each holder is running. */
  runningByHolder(): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const job of this.jobs.values()) {
      if (job.status !== 'IN_PROGRESS' || !job.holder) continue;
      const list = out.get(job.holder) ?? [];
      list.push(job.id);
      out.set(job.holder, list);
    }
    return out;
  }

  heldBy(holder: string): Job[] {
    return [...this.jobs.values()].filter((j) => j.status === 'IN_PROGRESS' && j.holder === holder);
  }

  /**
   * Long-polls for up to `max()` queued jobs for a worker: resolves at once when the queue has any,
   * otherwise when one is submitted, after `timeoutMs` (empty), or when the request is aborted.
   */
  take(holder: string, workerId: string, max: () => number, timeoutMs: number, signal?: AbortSignal): Promise<Job[]> {
    if (this.closed || max() <= 0) return Promise.resolve([]);
    if (this.queue.length > 0 && !this.opts.paused?.()) return Promise.resolve(this.assign(holder, workerId, max()));
    return new Promise<Job[]>((resolve) => {
      const waiter: TakeWaiter = {
        holder,
        workerId,
        max,
        resolve: (jobs) => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          resolve(jobs);
        },
      };
      const drop = () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        waiter.resolve([]);
      };
      const onAbort = () => drop();
      const timer = setTimeout(drop, timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** Ends every pending long-poll of one holder (its process is gone) or of all (shutdown). */
  releaseWaiters(holder?: string): void {
    for (const w of [...this.waiters]) {
      if (holder !== undefined && w.holder !== holder) continue;
      this.waiters.splice(this.waiters.indexOf(w), 1);
      w.resolve([]);
    }
  }

  close(): void {
    this.closed = true;
    this.releaseWaiters();
    for (const job of this.jobs.values()) {
      clearTimeout(job.timeoutTimer);
      clearTimeout(job.ttlTimer);
      notify(job);
    }
  }

  /** A progress update or final result from the holder. Anything else (late, foreign) is ignored. */
  report(id: string, holder: string, body: DoneBody, isStream: boolean): 'progress' | 'finished' | 'ignored' {
    const job = this.jobs.get(id);
    if (!job || job.status !== 'IN_PROGRESS' || job.holder !== holder) return 'ignored';
    if (body.status === 'IN_PROGRESS') {
      job.output = body.output;
      job.ledger.progressUpdates++;
      notify(job);
      return 'progress';
    }
    const hasError = body.error !== undefined && body.error !== null && body.error !== '' && body.error !== false;
    let output = body.output;
    // A generator handler without return_aggregate_stream posts an empty list: the service
    // answers /status with the streamed chunks.
    if (isStream && Array.isArray(output) && output.length === 0 && job.stream.length > 0) output = [...job.stream];
    if (hasError) {
      this.finish(job, 'FAILED', { error: typeof body.error === 'string' ? body.error : JSON.stringify(body.error), output });
    } else {
      this.finish(job, 'COMPLETED', { output });
    }
    return 'finished';
  }

  /** A partial output a generator handler streamed. */
  streamChunk(id: string, holder: string, body: DoneBody): boolean {
    const job = this.jobs.get(id);
    if (!job || job.status !== 'IN_PROGRESS' || job.holder !== holder) return false;
    job.stream.push(body.output);
    job.ledger.streamChunks++;
    notify(job);
    return true;
  }

  /** Chunks /stream has not handed out yet (each is handed out once, like the service). */
  readStream(job: Job): unknown[] {
    const chunks = job.stream.slice(job.streamRead);
    job.streamRead = job.stream.length;
    return chunks;
  }

  /** Resolves when `cond(job)` holds, the job changes after `cond` fails and `untilChange`, or after `ms`. */
  waitFor(job: Job, cond: (j: Job) => boolean, ms: number, signal?: AbortSignal): Promise<void> {
    if (cond(job) || this.closed || ms <= 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        job.watchers.delete(check);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const check = () => {
        if (cond(job) || this.closed) done();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      job.watchers.add(check);
    });
  }

  cancel(id: string): Job | undefined {
    const job = this.get(id);
    if (!job) return undefined;
    if (job.status === 'IN_QUEUE') {
      this.queue.splice(this.queue.indexOf(job), 1);
      this.finish(job, 'CANCELLED', {});
    } else if (job.status === 'IN_PROGRESS') {
      const holder = job.holder!;
      this.finish(job, 'CANCELLED', {});
      this.opts.onStopRunning(job, holder);
    }
    return job;
  }

  /** /retry: a FAILED or TIMED_OUT job goes back in the queue with its input, under the same id. */
  retry(id: string): { job?: Job; error?: string } {
    const job = this.get(id);
    if (!job) return {};
    if (job.status !== 'FAILED' && job.status !== 'TIMED_OUT') {
      return { job, error: `job ${id} has status ${job.status}; only FAILED or TIMED_OUT jobs can be retried` };
    }
    job.ledger.retries++;
    this.retried++;
    this.requeue(job);
    this.opts.onEvent?.('retried', job);
    this.dispatch();
    this.opts.onQueued?.();
    return { job };
  }

  /** Cancels every queued job; returns how many. */
  purgeQueue(): number {
    const queued = this.queue.splice(0);
    for (const job of queued) this.finish(job, 'CANCELLED', {});
    return queued.length;
  }

  /** Fails every job the holder is running, with `error`. */
  failHeldBy(holder: string, error: string): number {
    let n = 0;
    for (const job of this.heldBy(holder)) {
      this.finish(job, 'FAILED', { error });
      n++;
    }
    return n;
  }

  /**
   * The holder's worker is gone (exited, or stopped sending heartbeats): each job it ran goes back
   * in the queue while it has retries left (`jobRetries`), else it fails with `why`.
   */
  loseHolder(holder: string, why: string): { requeued: number; failed: number } {
    const out = { requeued: 0, failed: 0 };
    for (const job of this.heldBy(holder)) {
      if (job.lossRetries < (this.opts.jobRetries ?? 0)) {
        job.lossRetries++;
        job.ledger.retries++;
        this.retried++;
        const attempt = job.ledger.attempts.at(-1);
        if (attempt) {
          attempt.endedAt = new Date().toISOString();
          attempt.outcome = `requeued: ${why}`;
        }
        this.requeue(job, true);
        this.opts.onEvent?.('requeued', job);
        out.requeued++;
      } else {
        this.finish(job, 'FAILED', { error: why });
        out.failed++;
      }
    }
    if (out.requeued > 0) {
      this.dispatch();
      this.opts.onQueued?.();
    }
    return out;
  }

  statusBody(job: Job, now = Date.now()): StatusBody {
    const body: StatusBody = {
      id: job.id,
      status: job.status,
      delayTime: (job.takenAt ?? job.finishedAt ?? now) - job.submittedAt,
      executionTime: job.takenAt === undefined ? 0 : (job.finishedAt ?? now) - job.takenAt,
    };
    if (job.output !== undefined) body.output = job.output;
    if (job.error !== undefined) body.error = job.error;
    if (job.workerId !== undefined) body.workerId = job.workerId;
    return body;
  }

  /** Hands queued jobs to waiting workers (also after a worker's capacity grew). */
  dispatch(): void {
    if (this.opts.paused?.()) return;
    for (const waiter of [...this.waiters]) {
      if (this.queue.length === 0) break;
      const max = waiter.max();
      if (max <= 0) continue;
      this.waiters.splice(this.waiters.indexOf(waiter), 1);
      waiter.resolve(this.assign(waiter.holder, waiter.workerId, max));
    }
  }

  /** Hook for the endpoint: the cold start a job waited for when `holder` takes it, if any. */
  coldStartOf: (holder: string, job: Job) => number | undefined = () => undefined;

  private enqueue(job: Job, front = false): void {
    if (front) {
      this.queue.unshift(job);
    } else if (job.lowPriority) {
      this.queue.push(job);
    } else {
      const firstLow = this.queue.findIndex((j) => j.lowPriority);
      if (firstLow < 0) this.queue.push(job);
      else this.queue.splice(firstLow, 0, job);
    }
  }

  private requeue(job: Job, front = false): void {
    clearTimeout(job.timeoutTimer);
    job.status = 'IN_QUEUE';
    job.queuedAt = Date.now();
    delete job.holder;
    delete job.takenAt;
    delete job.finishedAt;
    delete job.output;
    delete job.error;
    job.stream = [];
    job.streamRead = 0;
    job.ledger.status = 'IN_QUEUE';
    delete job.ledger.finishedAt;
    delete job.ledger.error;
    this.enqueue(job, front);
    notify(job);
  }

  private assign(holder: string, workerId: string, max: number): Job[] {
    const jobs = this.queue.splice(0, Math.max(1, max));
    const now = Date.now();
    for (const job of jobs) {
      job.status = 'IN_PROGRESS';
      job.takenAt = now;
      job.workerId = workerId;
      job.holder = holder;
      job.ledger.status = 'IN_PROGRESS';
      job.ledger.takenAt = new Date(now).toISOString();
      job.ledger.workerId = workerId;
      const coldStartMs = this.coldStartOf(holder, job);
      job.ledger.attempts.push({
        workerId,
        takenAt: new Date(now).toISOString(),
        ...(coldStartMs !== undefined ? { coldStartMs } : {}),
      });
      const timeoutMs = job.executionTimeoutMs ?? this.opts.executionTimeoutMs;
      if (timeoutMs !== undefined && timeoutMs > 0) {
        job.timeoutTimer = setTimeout(() => this.timeOut(job, timeoutMs), timeoutMs);
        job.timeoutTimer.unref();
      }
      this.opts.onEvent?.('taken', job);
      notify(job);
    }
    return jobs;
  }

  private timeOut(job: Job, timeoutMs: number): void {
    if (job.status !== 'IN_PROGRESS') return;
    const holder = job.holder!;
    this.finish(job, 'TIMED_OUT', { error: `execution timeout exceeded (${timeoutMs} ms)` });
    this.opts.onStopRunning(job, holder);
  }

  /** policy.ttl: the job's whole lifetime (queue + execution) is over. Like the service, the job
   * is removed at once: /status answers 404 (the ledger keeps it, TIMED_OUT with `expiredAt`). */
  private expire(job: Job): void {
    if (isTerminal(job.status)) return;
    const holder = job.holder;
    if (job.status === 'IN_QUEUE') this.queue.splice(this.queue.indexOf(job), 1);
    this.finish(job, 'TIMED_OUT', { error: `job ttl exceeded (${job.ttlMs} ms)` });
    job.ledger.expiredAt = job.ledger.finishedAt;
    job.input = undefined;
    this.jobs.delete(job.id);
    if (holder !== undefined) this.opts.onStopRunning(job, holder);
  }

  private finish(job: Job, status: JobState, result: { output?: unknown; error?: string }): void {
    const now = Date.now();
    clearTimeout(job.timeoutTimer);
    clearTimeout(job.ttlTimer);
    job.status = status;
    job.finishedAt = now;
    if (result.output !== undefined) job.output = result.output;
    if (result.error !== undefined) job.error = result.error;
    // Only FAILED/TIMED_OUT jobs can be retried; drop other inputs (presigned URLs) at once.
    if (status === 'COMPLETED' || status === 'CANCELLED') job.input = undefined;
    job.ledger.status = status;
    job.ledger.finishedAt = new Date(now).toISOString();
    if (result.error !== undefined) job.ledger.error = redact(result.error, []).slice(0, 300);
    if (status === 'CANCELLED') job.ledger.cancelledAt = job.ledger.finishedAt;
    const attempt = job.holder !== undefined ? job.ledger.attempts.at(-1) : undefined;
    if (attempt && attempt.endedAt === undefined) {
      attempt.endedAt = job.ledger.finishedAt;
      attempt.outcome = status;
    }
    this.opts.onEvent?.('finished', job);
    notify(job);
    this.opts.onFinished?.(job);
  }

  private purgeExpired(now = Date.now()): void {
    for (const [id, job] of this.jobs) {
      if (job.finishedAt === undefined || !isTerminal(job.status)) continue;
      const ttl = job.sync ? (this.opts.syncResultTtlMs ?? 60_000) : this.opts.resultTtlMs;
      if (now - job.finishedAt >= ttl) {
        clearTimeout(job.ttlTimer);
        job.input = undefined;
        this.jobs.delete(id);
      }
    }
  }
}

function notify(job: Job): void {
  for (const w of [...job.watchers]) w();
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
