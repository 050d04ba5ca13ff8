// The job store: the queue, each job's state machine, long-polling workers, and the ledger.
// A job is held by one worker *incarnation* (one process lifetime, identified by its token), so a
// late report from a process that was replaced can never change a job.
import { randomUUID } from 'node:crypto';

export const JOB_STATES = ['IN_QUEUE', 'IN_PROGRESS', 'COMPLETED', 'FAILED', 'CANCELLED', 'TIMED_OUT'] as const;
export type JobState = (typeof JOB_STATES)[number];
const TERMINAL: ReadonlySet<JobState> = new Set(['COMPLETED', 'FAILED', 'CANCELLED', 'TIMED_OUT']);
export const isTerminal = (s: JobState): boolean => TERMINAL.has(s);

/** One line per submitted job; never the job's input or output. */
export interface LedgerEntry {
  id: string;
  endpointId: string;
  task?: string;
  submittedAt: string;
  takenAt?: string;
  workerId?: string;
  progressUpdates: number;
  finishedAt?: string;
  status: JobState;
}

export interface Job {
  id: string;
  endpointId: string;
  input: unknown;
  webhook?: string;
  status: JobState;
  submittedAt: number;
  takenAt?: number;
  finishedAt?: number;
  workerId?: string;
  /** Token of the worker incarnation running the job. */
  holder?: string;
  output?: unknown;
  error?: string;
  /** Partial outputs a generator handler posted to job-stream. */
  stream: unknown[];
  executionTimeoutMs?: number;
  timeoutTimer?: NodeJS.Timeout;
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
  max: number;
  resolve: (jobs: Job[]) => void;
}

export interface JobStoreOptions {
  endpointId: string;
  resultTtlMs: number;
  /** Endpoint-wide execution timeout; a request's `policy.executionTimeout` overrides it. */
  executionTimeoutMs?: number;
  /** Called when a job that a worker is running is cancelled or timed out. */
  onStopRunning: (job: Job, holder: string) => void;
  /** Called on every state change worth a log line (no inputs or outputs). */
  onEvent?: (event: string, job: Job) => void;
}

export class JobStore {
  private readonly jobs = new Map<string, Job>();
  private readonly queue: Job[] = [];
  private readonly waiters: TakeWaiter[] = [];
  private readonly entries: LedgerEntry[] = [];
  private closed = false;

  constructor(private readonly opts: JobStoreOptions) {}

  submit(input: unknown, extra: { webhook?: string; executionTimeoutMs?: number } = {}): Job {
    const now = Date.now();
    const task = isRecord(input) && typeof input.task === 'string' ? input.task : undefined;
    const id = `${randomUUID()}-u1`;
    const ledger: LedgerEntry = {
      id,
      endpointId: this.opts.endpointId,
      ...(task !== undefined ? { task } : {}),
      submittedAt: new Date(now).toISOString(),
      progressUpdates: 0,
      status: 'IN_QUEUE',
    };
    const job: Job = {
      id,
      endpointId: this.opts.endpointId,
      input,
      status: 'IN_QUEUE',
      submittedAt: now,
      stream: [],
      ledger,
      ...(extra.webhook !== undefined ? { webhook: extra.webhook } : {}),
      ...(extra.executionTimeoutMs !== undefined ? { executionTimeoutMs: extra.executionTimeoutMs } : {}),
    };
    this.jobs.set(id, job);
    this.entries.push(ledger);
    this.queue.push(job);
    this.opts.onEvent?.('submitted', job);
    this.dispatch();
    return job;
  }

  get(id: string): Job | undefined {
    this.purgeExpired();
    return this.jobs.get(id);
  }

  ledger(): LedgerEntry[] {
    return this.entries.map((e) => ({ ...e }));
  }

  counts(): { completed: number; failed: number; inProgress: number; inQueue: number; retried: number } {
    const c = { completed: 0, failed: 0, inProgress: 0, inQueue: 0, retried: 0 };
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

  /**
   * Long-polls for up to `max` queued jobs for a worker: resolves at once when the queue has any,
   * otherwise when one is submitted, after `timeoutMs` (empty), or when the request is aborted.
   */
  take(holder: string, workerId: string, max: number, timeoutMs: number, signal?: AbortSignal): Promise<Job[]> {
    if (this.closed) return Promise.resolve([]);
    if (this.queue.length > 0) return Promise.resolve(this.assign(holder, workerId, max));
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
    for (const job of this.jobs.values()) clearTimeout(job.timeoutTimer);
  }

  /** A progress update or final result from the holder. Anything else (late, foreign) is ignored. */
  report(id: string, holder: string, body: DoneBody, isStream: boolean): 'progress' | 'finished' | 'ignored' {
    const job = this.jobs.get(id);
    if (!job || job.status !== 'IN_PROGRESS' || job.holder !== holder) return 'ignored';
    if (body.status === 'IN_PROGRESS') {
      job.output = body.output;
      job.ledger.progressUpdates++;
      return 'progress';
    }
    const hasError = body.error !== undefined && body.error !== null && body.error !== '' && body.error !== false;
    let output = body.output;
    if (isStream && Array.isArray(output) && output.length === 0 && job.stream.length > 0) output = job.stream;
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
    return true;
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

  /** Cancels every queued job; returns how many. */
  purgeQueue(): number {
    const queued = this.queue.splice(0);
    for (const job of queued) this.finish(job, 'CANCELLED', {});
    return queued.length;
  }

  /** Fails every job the holder is running, with `error`. */
  failHeldBy(holder: string, error: string): number {
    let n = 0;
    for (const job of this.jobs.values()) {
      if (job.status === 'IN_PROGRESS' && job.holder === holder) {
        this.finish(job, 'FAILED', { error });
        n++;
      }
    }
    return n;
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

  private dispatch(): void {
    while (this.queue.length > 0 && this.waiters.length > 0) {
      const waiter = this.waiters.shift()!;
      waiter.resolve(this.assign(waiter.holder, waiter.workerId, waiter.max));
    }
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
      const timeoutMs = job.executionTimeoutMs ?? this.opts.executionTimeoutMs;
      if (timeoutMs !== undefined && timeoutMs > 0) {
        job.timeoutTimer = setTimeout(() => this.timeOut(job, timeoutMs), timeoutMs);
        job.timeoutTimer.unref();
      }
      this.opts.onEvent?.('taken', job);
    }
    return jobs;
  }

  private timeOut(job: Job, timeoutMs: number): void {
    if (job.status !== 'IN_PROGRESS') return;
    const holder = job.holder!;
    this.finish(job, 'TIMED_OUT', { error: `execution timeout exceeded (${timeoutMs} ms)` });
    this.opts.onStopRunning(job, holder);
  }

  private finish(job: Job, status: JobState, result: { output?: unknown; error?: string }): void {
    const now = Date.now();
    clearTimeout(job.timeoutTimer);
    job.status = status;
    job.finishedAt = now;
    if (result.output !== undefined) job.output = result.output;
    if (result.error !== undefined) job.error = result.error;
    job.input = undefined; // no longer needed; do not keep presigned URLs around
    job.ledger.status = status;
    job.ledger.finishedAt = new Date(now).toISOString();
    this.opts.onEvent?.('finished', job);
  }

  private purgeExpired(now = Date.now()): void {
    for (const [id, job] of this.jobs) {
      if (job.finishedAt !== undefined && now - job.finishedAt >= this.opts.resultTtlMs) this.jobs.delete(id);
    }
  }
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
