// One endpoint: its job store, its workers, its rate limits and faults, and webhook delivery.
import type { Logger } from 'pino';
import { Faults, RateLimiter, RUNPOD_RATE_LIMITS, type FaultConfig, type Operation } from './faults.js';
import { JobStore, type Job, type LedgerEntry } from './jobs.js';
import { redact } from './redact.js';
import { Supervisor, type Incarnation, type WorkerInfo } from './supervisor.js';

export interface EndpointOptions {
  /** Default `local` for the main endpoint. */
  endpointId?: string;
  /** argv of one GPU worker process, e.g. [python, handler.py]. */
  workerCommand: string[];
  workerEnv?: Record<string, string>;
  workerCwd?: string;
  /** A fixed number of workers (minWorkers = maxWorkers = workers). Default 1 unless min/max are set. */
  workers?: number;
  /** Workers kept running even when idle. Default 0 when maxWorkers is set, else 1. */
  minWorkers?: number;
  /** Most workers at once. Default max(minWorkers, 1). */
  maxWorkers?: number;
  /** A worker above minWorkers idle this long is stopped. Default 5 s (the service's default). */
  idleTimeoutMs?: number;
  /** Jobs one worker is given at once. Default 1. */
  concurrency?: number;
  /** Endpoint execution timeout (a request's policy.executionTimeout overrides it); 0: none. Default 10 min. */
  executionTimeoutMs?: number;
  /** Default job lifetime (queue + execution) without policy.ttl. Default 24 h. */
  ttlMs?: number;
  /** How long a finished /run job's result stays readable (then /status answers 404). Default 30 min. */
  resultTtlMs?: number;
  /** The same for /runsync jobs. Default 60 s. */
  syncResultTtlMs?: number;
  /**
   * How often a job whose worker died is put back in the queue, under its id, before it fails.
   * The service documents "automatic retries" but not how many: by default a job is retried for as
   * long as its TTL allows (the reading that costs the user more; see README).
   */
  jobRetries?: number;
  /** A ready worker without a heartbeat this long is declared dead. Default 30 s; 0: never. */
  heartbeatTimeoutMs?: number;
  /** A worker that has not called the endpoint this long after starting is declared dead. Default 7 min. */
  coldStartTimeoutMs?: number;
  /** How long a worker may keep running a cancelled job before it is killed. Default 5 s. */
  cancelGraceMs?: number;
  /** Between SIGTERM and SIGKILL on stop() and on scale-down. Default 5 s. */
  stopGraceMs?: number;
  /** RUNPOD_PING_INTERVAL for workers, in ms (the SDK uses whole seconds). Default 10 000, the SDK's. */
  pingIntervalMs?: number;
  /** /health also answers runpod-local's own `diagnosis` and extra worker counts (not the service's). Default false. */
  healthDiagnosis?: boolean;
  /** How long job-take / job-stop long-polls are held open. Defaults 5 s / 10 s. */
  takePollMs?: number;
  stopPollMs?: number;
  /** The longest /stream holds a request open waiting for chunks. Default 5 s. */
  streamWaitMs?: number;
  /** Requests per 10 s per operation (the service's limits by default); false: none. */
  rateLimits?: false | Partial<Record<Operation, number>>;
  /** Fault injection; off by default. */
  faults?: FaultConfig;
  /** Webhook delivery: retries after a failed POST and the delay between tries. Defaults 2 and 10 s. */
  webhookRetries?: number;
  webhookRetryDelayMs?: number;
}

/** GET /health: the service's documented fields; with `healthDiagnosis`, runpod-local's own extras. */
export interface EndpointHealth {
  jobs: { completed: number; failed: number; inProgress: number; inQueue: number; retried: number };
  workers: { idle: number; running: number; initializing?: number; ready?: number; throttled?: number; unhealthy?: number };
  /**
   * Not in the service's answer (only with `healthDiagnosis`): why jobs wait. `idle` (nothing
   * queued), `running`, `waiting-for-capacity` (all workers busy at maxWorkers), `cold-starting`
   * (workers are starting for the queue), `workers-crashing` (workers keep exiting or were
   * declared dead), `no-workers` (maxWorkers is 0).
   */
  diagnosis?: { queue: string; lastWorkerFailure?: string };
}

/** The REST API's worker statuses (GET /v2/serverless/{id}/workers). */
export type RestWorkerStatus = 'RUNNING' | 'IDLE' | 'INITIALIZING' | 'THROTTLED' | 'UNHEALTHY';

export class LocalEndpoint {
  readonly id: string;
  readonly store: JobStore;
  readonly supervisor: Supervisor;
  readonly faults: Faults;
  readonly limiter: RateLimiter | undefined;
  readonly takePollMs: number;
  readonly stopPollMs: number;
  readonly streamWaitMs: number;
  private readonly maxWorkers: number;
  private lastFailure?: { at: number; what: string };
  private workerBase = '';
  private readonly webhookTimers = new Set<NodeJS.Timeout>();

  constructor(
    readonly options: EndpointOptions & { endpointId: string },
    private readonly apiKey: string,
    private readonly logger: Logger,
  ) {
    const o = options;
    this.id = o.endpointId;
    const secrets = [apiKey];
    this.faults = new Faults(o.faults ?? {});
    this.limiter = o.rateLimits === false ? undefined : new RateLimiter({ ...RUNPOD_RATE_LIMITS, ...o.rateLimits });
    this.takePollMs = o.takePollMs ?? 5_000;
    this.stopPollMs = o.stopPollMs ?? 10_000;
    this.streamWaitMs = o.streamWaitMs ?? 5_000;
    const minWorkers = o.workers ?? o.minWorkers ?? (o.maxWorkers !== undefined ? 0 : 1);
    this.maxWorkers = o.workers ?? o.maxWorkers ?? Math.max(minWorkers, 1);
    if (minWorkers > this.maxWorkers) throw new Error(`runpod-local: endpoint ${this.id}: minWorkers > maxWorkers`);
    if (o.workerCommand.length === 0 && this.maxWorkers > 0) {
      throw new Error(`runpod-local: endpoint ${this.id}: workerCommand is empty`);
    }

    // The store and the supervisor refer to each other through these callbacks.
    this.store = new JobStore({
      endpointId: this.id,
      resultTtlMs: o.resultTtlMs ?? 30 * 60_000,
      syncResultTtlMs: o.syncResultTtlMs ?? 60_000,
      executionTimeoutMs: o.executionTimeoutMs ?? 10 * 60_000,
      defaultTtlMs: o.ttlMs ?? 24 * 3_600_000,
      jobRetries: o.jobRetries ?? Number.POSITIVE_INFINITY,
      onStopRunning: (job, holder) => this.supervisor.requestStop(holder, job.id),
      onQueued: () => this.supervisor.poke(),
      paused: () => this.faults.noCapacity(),
      onFinished: (job) => {
        this.supervisor.poke();
        if (job.webhook) this.deliverWebhook(job, job.webhook);
      },
      onEvent: (event, job) => {
        const fields = { endpoint: this.id, job: job.id, ...(job.ledger.task ? { task: job.ledger.task } : {}), worker: job.workerId };
        if (event === 'finished') {
          const error = job.error ? { error: redact(job.error, secrets).slice(0, 500) } : {};
          logger.info({ ...fields, status: job.status, ...error }, `job ${job.status}`);
        } else {
          logger.info(fields, `job ${event}`);
        }
      },
    });
    this.store.coldStartOf = (holder, job) => this.supervisor.coldStartFor(holder, job.queuedAt);

    this.supervisor = new Supervisor({
      minWorkers,
      maxWorkers: this.maxWorkers,
      idleTimeoutMs: o.idleTimeoutMs ?? 5_000,
      concurrency: Math.max(1, o.concurrency ?? 1),
      command: o.workerCommand,
      ...(o.workerCwd !== undefined ? { cwd: o.workerCwd } : {}),
      logger: logger.child({ endpoint: this.id }),
      secrets,
      cancelGraceMs: o.cancelGraceMs ?? 5_000,
      stopGraceMs: o.stopGraceMs ?? 5_000,
      heartbeatTimeoutMs: o.heartbeatTimeoutMs ?? 30_000,
      coldStartTimeoutMs: o.coldStartTimeoutMs ?? 7 * 60_000,
      coldStartDelayMs: () => this.faults.coldStartDelayMs(),
      noCapacity: () => this.faults.noCapacity(),
      runningJobs: (token) => this.store.runningByHolder().get(token) ?? [],
      demand: () => this.store.queued().normal + this.store.counts().inProgress,
      onExit: (inc, how) => {
        this.store.releaseWaiters(inc.token);
        if (!inc.lost) this.workerFailed(`worker ${inc.workerId} ${how}`, inc);
        this.store.loseHolder(inc.token, `worker ${inc.workerId} ${how} while running this job`);
      },
      onLost: (inc, why) => {
        this.store.releaseWaiters(inc.token);
        this.workerFailed(`worker ${inc.workerId} ${why}`, inc);
        this.store.loseHolder(inc.token, `worker ${inc.workerId} ${why} while running this job`);
      },
      onStopping: (inc) => {
        // The SDK checks for shutdown between polls: end its job-take long-poll.
        setTimeout(() => this.store.releaseWaiters(inc.token), 100).unref();
      },
      env: (workerId, token) => this.workerEnv(workerId, token),
    });
  }

  /** Starts the workers once the server listens at `origin`. */
  start(origin: string): void {
    this.workerBase = `${origin}/worker/${encodeURIComponent(this.id)}`;
    this.supervisor.start();
  }

  async stop(graceMs: number): Promise<void> {
    for (const t of this.webhookTimers) clearTimeout(t);
    await this.supervisor.stop(graceMs, () => setTimeout(() => this.store.close(), 100).unref());
    this.store.close();
  }

  ledger(): LedgerEntry[] {
    return this.store.ledger();
  }

  workers(): WorkerInfo[] {
    return this.supervisor.workers().map((w) => ({ ...w, endpointId: this.id }));
  }

  /** Each worker as the REST API lists it. */
  restWorkers(): { summary: Record<'running' | 'idle' | 'initializing' | 'throttled' | 'unhealthy' | 'total', number>; workers: { id: string; status: RestWorkerStatus }[] } {
    const workers = this.supervisor
      .workers()
      .filter((w) => w.state !== 'stopped')
      .map((w) => {
        const status: RestWorkerStatus = w.crashLooping ? 'UNHEALTHY' : w.state === 'idle' ? (this.faults.noCapacity() ? 'THROTTLED' : 'IDLE') : w.state === 'running' ? 'RUNNING' : w.state === 'throttled' ? 'THROTTLED' : 'INITIALIZING';
        return { id: w.workerId, status };
      });
    const count = (s: RestWorkerStatus) => workers.filter((w) => w.status === s).length;
    return {
      summary: { running: count('RUNNING'), idle: count('IDLE'), initializing: count('INITIALIZING'), throttled: count('THROTTLED'), unhealthy: count('UNHEALTHY'), total: workers.length },
      workers,
    };
  }

  /** The endpoint's configuration as the REST API answers it (GET /v2/serverless/{id}). */
  restConfig() {
    const o = this.options;
    return {
      id: this.id,
      type: 'QUEUE',
      workers: { min: this.supervisor.minWorkers, max: this.maxWorkers, idleTimeout: Math.round((o.idleTimeoutMs ?? 5_000) / 1000) },
      timeout: o.executionTimeoutMs ?? 10 * 60_000,
    };
  }

  health(): EndpointHealth {
    const { summary } = this.restWorkers();
    const jobs = this.store.counts();
    if (!this.options.healthDiagnosis) return { jobs, workers: { idle: summary.idle, running: summary.running } };
    const ready = this.supervisor.workers().filter((w) => w.ready && (w.state === 'idle' || w.state === 'running')).length;
    const recentFailure = this.lastFailure && Date.now() - this.lastFailure.at < 60_000 ? this.lastFailure.what : undefined;
    let queue: string;
    if (jobs.inQueue === 0) queue = jobs.inProgress > 0 ? 'running' : 'idle';
    else if (this.maxWorkers === 0) queue = 'no-workers';
    else if (summary.unhealthy > 0 || (recentFailure && summary.idle + summary.running === 0)) queue = 'workers-crashing';
    else if (summary.initializing > 0) queue = 'cold-starting';
    else queue = 'waiting-for-capacity';
    return {
      jobs,
      workers: { idle: summary.idle, running: summary.running, initializing: summary.initializing, ready, throttled: summary.throttled, unhealthy: summary.unhealthy },
      diagnosis: { queue, ...(this.lastFailure ? { lastWorkerFailure: this.lastFailure.what } : {}) },
    };
  }

  setFaults(config: FaultConfig): void {
    this.faults.set(config);
  }

  /** Kills the worker if the fault config says so for this point of `job`. */
  maybeCrash(point: 'take' | 'progress' | 'result', inc: Incarnation, job: Job | undefined): boolean {
    if (!this.faults.crashAt(point, job?.ledger.task)) return false;
    this.logger.warn({ endpoint: this.id, worker: inc.workerId, job: job?.id }, `fault injection: crashing worker ${inc.workerId} at ${point}`);
    this.supervisor.crash(inc);
    return true;
  }

  private workerFailed(what: string, inc: Incarnation): void {
    if (this.supervisor.workers().find((w) => w.workerId === inc.workerId)?.state === 'stopping') return;
    this.lastFailure = { at: Date.now(), what };
  }

  private workerEnv(workerId: string, token: string): NodeJS.ProcessEnv {
    const o = this.options;
    const q = `?token=${token}`;
    const base = this.workerBase;
    const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RUNPOD_')));
    return {
      ...inherited,
      PYTHONUNBUFFERED: '1',
      RUNPOD_SKIP_AUTO_SYSTEM_CHECKS: 'true',
      RUNPOD_SKIP_GPU_CHECK: 'true',
      RUNPOD_PING_INTERVAL: String(o.pingIntervalMs ?? 10_000),
      ...o.workerEnv,
      RUNPOD_ENDPOINT_ID: this.id,
      RUNPOD_POD_ID: workerId,
      RUNPOD_AI_API_KEY: this.apiKey,
      // The SDK replaces $ID with the worker id here and derives job-take-batch / job-stop from it.
      RUNPOD_WEBHOOK_GET_JOB: `${base}/job-take/$ID${q}`,
      // $RUNPOD_POD_ID -> worker id, $ID -> job id; the SDK appends &isStream=...
      RUNPOD_WEBHOOK_POST_OUTPUT: `${base}/job-done/$RUNPOD_POD_ID/$ID${q}`,
      RUNPOD_WEBHOOK_POST_STREAM: `${base}/job-stream/$RUNPOD_POD_ID/$ID${q}`,
      RUNPOD_WEBHOOK_PING: `${base}/ping/$RUNPOD_POD_ID${q}`,
    };
  }

  /** POSTs the job's /status body to its webhook; retries after a failure like the service. */
  private deliverWebhook(job: Job, url: string): void {
    const body = JSON.stringify(this.store.statusBody(job));
    const retries = this.options.webhookRetries ?? 2;
    const delayMs = this.options.webhookRetryDelayMs ?? 10_000;
    const entry = job.ledger;
    entry.webhook = { attempts: 0, delivered: false };
    const attempt = async (n: number): Promise<void> => {
      entry.webhook!.attempts = n + 1;
      let status = 0;
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
          signal: AbortSignal.timeout(10_000),
        });
        status = res.status;
        await res.body?.cancel().catch(() => {});
      } catch {
        status = 0;
      }
      entry.webhook!.lastStatus = status;
      if (status >= 200 && status < 300) {
        entry.webhook!.delivered = true;
        return;
      }
      this.logger.warn(
        { endpoint: this.id, job: job.id, status, attempt: n + 1, url: redact(url) },
        `webhook delivery failed${n < retries ? '; retrying' : ''}`,
      );
      if (n < retries) {
        const timer = setTimeout(() => {
          this.webhookTimers.delete(timer);
          void attempt(n + 1);
        }, delayMs);
        timer.unref();
        this.webhookTimers.add(timer);
      }
    };
    void attempt(0);
  }
}
