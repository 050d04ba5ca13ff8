// Runs the GPU-worker processes of one endpoint like the service's autoscaler: keeps at least
// `minWorkers` and at most `maxWorkers`, starts workers when jobs queue up (each worker runs up to
// `concurrency` jobs), stops a worker that was idle for `idleTimeoutMs` (scale to zero with
// minWorkers 0), restarts a worker that exits, declares dead a worker that stops sending
// heartbeats or does not start within the cold-start limit, delivers per-job stop signals (the
// SDK's job-stop long-poll), and kills a worker that keeps spending on a job after it was
// cancelled. Each worker runs in its own process group so that its helpers (the SDK's heartbeat
// process) die with it.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';
import { redact } from './redact.js';

export type WorkerState = 'starting' | 'throttled' | 'idle' | 'running' | 'restarting' | 'stopping' | 'stopped';

export interface WorkerInfo {
  workerId: string;
  /** The endpoint the worker serves. */
  endpointId?: string;
  pid?: number;
  state: WorkerState;
  restarts: number;
  /** Whether the current process has called the endpoint yet. */
  ready: boolean;
  /** Jobs the current process is running. */
  jobs?: string[];
  /** The jobs the worker's last heartbeat reported, and when it came. */
  heartbeat?: { at: string; jobs: string[] };
  /** From when the process was asked for until its first request (its cold start). */
  coldStartMs?: number;
  /** The worker keeps exiting soon after it starts. */
  crashLooping?: boolean;
  /** How its last process ended, e.g. "exited with code 1". */
  lastExit?: string;
}

/** One process lifetime of a worker slot; its token authenticates the process's requests. */
export interface Incarnation {
  token: string;
  workerId: string;
  child: ChildProcess;
  pid?: number;
  /** When this process was asked for (before an injected cold-start delay). */
  requestedAt: number;
  startedAt: number;
  readyAt?: number;
  lastPingAt?: number;
  /** The jobs its last heartbeat said it runs. */
  pingJobs?: string[];
  /** Whether it has taken a job yet (its first job may have waited for its cold start). */
  tookJob: boolean;
  ready: boolean;
  exited: boolean;
  /** Declared dead (no heartbeat, cold start too long): its jobs were already handled. */
  lost: boolean;
  exitPromise: Promise<void>;
  pendingStops: Set<string>;
  stopWaiter?: (ids: string[]) => void;
  /** Per cancelled job: the grace timer that kills the worker and the interval re-sending the stop. */
  stopTimers: Map<string, { kill: NodeJS.Timeout; resend: NodeJS.Timeout }>;
}

/** How often a stop is re-sent until the worker lets go of the job. */
const STOP_RESEND_MS = 1_000;

interface Slot {
  workerId: string;
  current?: Incarnation;
  restarts: number;
  fastExits: number;
  restartTimer?: NodeJS.Timeout;
  /** Being scaled down: not restarted, removed once its process is gone. */
  retiring: boolean;
  /** Waiting for a free GPU (the noCapacity fault): no process yet. */
  throttled?: boolean;
  idleSince?: number;
  lastExit?: string;
}

export interface SupervisorOptions {
  minWorkers: number;
  maxWorkers: number;
  /** How long a worker may sit idle above minWorkers before it is stopped; <0: never. */
  idleTimeoutMs: number;
  /** Jobs one worker runs at once (the most job-take hands it). */
  concurrency: number;
  command: string[];
  cwd?: string;
  /** Environment for one process of the slot `workerId`, whose requests carry `token`. */
  env: (workerId: string, token: string) => NodeJS.ProcessEnv;
  logger: Logger;
  /** Strings never to log (the API key). */
  secrets: string[];
  /** Job ids an incarnation is running (from the job store). */
  runningJobs: (token: string) => string[];
  /** Jobs that want a worker: queued (not low priority) plus running. */
  demand: () => number;
  /** A worker process ended; `how` reads like "exited with signal SIGKILL". */
  onExit: (inc: Incarnation, how: string) => void;
  /** A worker is declared dead (it is killed right after); `why` reads like "stopped sending heartbeats". */
  onLost: (inc: Incarnation, why: string) => void;
  /** A worker is being stopped (scale down, shutdown): end its pending job-take long-poll. */
  onStopping: (inc: Incarnation) => void;
  /** How long a worker may keep a cancelled job before it is killed. */
  cancelGraceMs: number;
  /** Between SIGTERM and SIGKILL when a worker is scaled down. */
  stopGraceMs: number;
  /** A ready worker with no ping for this long is dead; 0: never. */
  heartbeatTimeoutMs: number;
  /** A worker that has not called the endpoint this long after its start is dead; 0: never. */
  coldStartTimeoutMs: number;
  /** Extra delay before a worker process is started (fault injection: slow cold starts). */
  coldStartDelayMs: () => number;
  /** True while no GPU is free: workers to start wait (throttled). */
  noCapacity?: () => boolean;
  /** How often scaling and liveness are checked. Default 200 ms. */
  tickMs?: number;
}

/**
 * `(read stdin to EOF; kill the group) & exec worker`: the worker keeps the shell's pid, which is
 * the group id. stdin goes through fd 3 because sh gives a background list /dev/null as stdin.
 */
const WATCHDOG_SCRIPT = 'exec 3<&0; (while read -r _; do :; done <&3; kill -KILL 0) & exec 3<&-; exec "$@"';

const RESTART_BASE_MS = 250;
const RESTART_MAX_MS = 10_000;
const FAST_EXIT_MS = 5_000;

export class Supervisor {
  private readonly slots: Slot[] = [];
  private readonly byToken = new Map<string, Incarnation>();
  private nextId = 1;
  private stopping = false;
  private ticker?: NodeJS.Timeout;
  private readonly spawnTimers = new Set<NodeJS.Timeout>();

  constructor(private readonly opts: SupervisorOptions) {}

  get minWorkers(): number {
    return this.opts.minWorkers;
  }

  start(): void {
    this.tick();
    this.ticker = setInterval(() => this.tick(), this.opts.tickMs ?? 200);
    this.ticker.unref();
  }

  /** Re-evaluates scaling now (jobs were queued). */
  poke(): void {
    if (!this.stopping) this.tick();
  }

  /** The live incarnation a worker request belongs to, or undefined (unknown or dead token). */
  incarnation(token: string | undefined, workerId: string): Incarnation | undefined {
    if (!token) return undefined;
    const inc = this.byToken.get(token);
    if (!inc || inc.exited || inc.lost || inc.workerId !== workerId) return undefined;
    if (!inc.ready) {
      inc.ready = true;
      inc.readyAt = Date.now();
      inc.lastPingAt ??= inc.readyAt;
    }
    return inc;
  }

  /** A heartbeat from the worker's ping process, with the jobs it says it runs. */
  notePing(inc: Incarnation, jobs: string[]): void {
    inc.lastPingAt = Date.now();
    inc.pingJobs = jobs;
  }

  /** How many more jobs the incarnation may take now. */
  capacity(inc: Incarnation): number {
    if (inc.exited || inc.lost || this.stopping) return 0;
    const slot = this.slotOf(inc);
    if (!slot || slot.retiring || slot.current !== inc) return 0;
    return Math.max(0, this.opts.concurrency - this.opts.runningJobs(inc.token).length);
  }

  /** The cold start the job waited for, when `token` takes its first job and the job was queued before it was ready. */
  coldStartFor(token: string, queuedAt: number): number | undefined {
    const inc = this.byToken.get(token);
    if (!inc || inc.tookJob) return undefined;
    inc.tookJob = true;
    if (inc.readyAt === undefined || queuedAt > inc.readyAt) return undefined;
    return inc.readyAt - inc.requestedAt;
  }

  /** Kills a worker's process group at once (fault injection: a crash). */
  crash(inc: Incarnation): void {
    killGroup(inc, 'SIGKILL');
  }

  workers(): WorkerInfo[] {
    return this.slots.map((slot) => {
      const inc = slot.current;
      let state: WorkerState;
      if (this.stopping) state = 'stopped';
      else if (slot.retiring) state = 'stopping';
      else if (!inc && slot.throttled) state = 'throttled';
      else if (!inc) state = 'starting'; // waiting out an injected cold-start delay
      else if (inc.exited || inc.lost) state = 'restarting';
      else if (!inc.ready) state = 'starting';
      else state = this.opts.runningJobs(inc.token).length > 0 ? 'running' : 'idle';
      const live = inc && !inc.exited;
      return {
        workerId: slot.workerId,
        ...(live && inc.pid !== undefined ? { pid: inc.pid } : {}),
        state,
        restarts: slot.restarts,
        ready: inc?.ready ?? false,
        jobs: live ? this.opts.runningJobs(inc.token) : [],
        ...(live && inc.lastPingAt !== undefined && inc.pingJobs !== undefined
          ? { heartbeat: { at: new Date(inc.lastPingAt).toISOString(), jobs: inc.pingJobs } }
          : {}),
        ...(inc?.readyAt !== undefined ? { coldStartMs: inc.readyAt - inc.requestedAt } : {}),
        crashLooping: slot.fastExits >= 2,
        ...(slot.lastExit !== undefined ? { lastExit: slot.lastExit } : {}),
      };
    });
  }

  /**
   * Asks the incarnation to stop one job through the SDK's stop channel. If the worker has not
   * shown that it let go of the job (a job-take saying it runs nothing) within the grace
   * period, its process is killed and the slot restarted: a handler that blocks the event loop
   * never sees the stop signal.
   */
  requestStop(token: string, jobId: string): void {
    const inc = this.byToken.get(token);
    if (!inc || inc.exited || inc.stopTimers.has(jobId)) return;
    const send = () => {
      inc.pendingStops.add(jobId);
      this.flushStops(inc);
    };
    send();
    // The SDK drops a stop for a job it has taken but not yet started (its task is created up to
    // 100 ms later), so the stop is repeated until the worker shows it let go of the job.
    const resend = setInterval(send, STOP_RESEND_MS);
    const kill = setTimeout(() => {
      clearInterval(resend);
      inc.stopTimers.delete(jobId);
      if (inc.exited) return;
      this.opts.logger.warn(
        { worker: inc.workerId, workerPid: inc.pid, job: jobId },
        `worker ${inc.workerId} did not stop a cancelled job within ${this.opts.cancelGraceMs} ms; killing it`,
      );
      killGroup(inc, 'SIGKILL');
    }, this.opts.cancelGraceMs);
    inc.stopTimers.set(jobId, { kill, resend });
  }

  /** The incarnation reported that it runs no job: stop signals to it are settled. */
  noteIdle(inc: Incarnation): void {
    clearStopTimers(inc);
    inc.pendingStops.clear();
  }

  /** The SDK's job-stop long-poll: resolves with job ids to stop, or [] after `timeoutMs`. */
  waitStops(inc: Incarnation, timeoutMs: number, signal?: AbortSignal): Promise<string[]> {
    if (inc.pendingStops.size > 0 || inc.exited || this.stopping) {
      const ids = [...inc.pendingStops];
      inc.pendingStops.clear();
      return Promise.resolve(ids);
    }
    inc.stopWaiter?.([]); // one poll per worker; a newer poll replaces an older one
    return new Promise((resolve) => {
      const done = (ids: string[]) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (inc.stopWaiter === done) inc.stopWaiter = undefined;
        resolve(ids);
      };
      const onAbort = () => done([]);
      const timer = setTimeout(() => done([]), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      inc.stopWaiter = done;
    });
  }

  /**
   * SIGTERM every worker, SIGKILL what is left after `graceMs`; resolves when all are gone.
   * `afterTerm` runs once the signals are sent (to end the workers' pending long-polls).
   */
  async stop(graceMs: number, afterTerm: () => void = () => {}): Promise<void> {
    this.stopping = true;
    clearInterval(this.ticker);
    for (const t of this.spawnTimers) clearTimeout(t);
    this.spawnTimers.clear();
    const live: Incarnation[] = [];
    for (const slot of this.slots) {
      clearTimeout(slot.restartTimer);
      if (slot.current && !slot.current.exited) live.push(slot.current);
    }
    for (const inc of live) {
      this.flushStops(inc);
      killGroup(inc, 'SIGTERM');
    }
    afterTerm();
    const all = Promise.all(live.map((i) => i.exitPromise));
    let graceTimer: NodeJS.Timeout | undefined;
    await Promise.race([all, new Promise((r) => (graceTimer = setTimeout(r, graceMs)))]);
    clearTimeout(graceTimer);
    for (const inc of live) if (!inc.exited) killGroup(inc, 'SIGKILL');
    await all;
  }

  private slotOf(inc: Incarnation): Slot | undefined {
    return this.slots.find((s) => s.workerId === inc.workerId);
  }

  private tick(): void {
    if (this.stopping) return;
    const now = Date.now();
    const { heartbeatTimeoutMs, coldStartTimeoutMs } = this.opts;

    // Liveness: heartbeats and the cold-start limit.
    for (const slot of this.slots) {
      const inc = slot.current;
      if (!inc || inc.exited || inc.lost) continue;
      if (!inc.ready && coldStartTimeoutMs > 0 && now - inc.startedAt > coldStartTimeoutMs) {
        this.lose(inc, `did not start within the cold-start limit (${coldStartTimeoutMs} ms)`);
      } else if (inc.ready && heartbeatTimeoutMs > 0 && now - (inc.lastPingAt ?? now) > heartbeatTimeoutMs) {
        this.lose(inc, `stopped sending heartbeats (none for ${heartbeatTimeoutMs} ms)`);
      }
    }

    // Idle bookkeeping.
    for (const slot of this.slots) {
      const inc = slot.current;
      const idle = !!inc && !inc.exited && inc.ready && this.opts.runningJobs(inc.token).length === 0;
      if (!idle) delete slot.idleSince;
      else slot.idleSince ??= now;
    }

    // Scale up to what the queue asks for.
    const active = () => this.slots.filter((s) => !s.retiring);
    const want = Math.min(
      this.opts.maxWorkers,
      Math.max(this.opts.minWorkers, Math.ceil(this.opts.demand() / Math.max(1, this.opts.concurrency))),
    );
    while (active().length < want) this.addSlot();

    // Scale down: workers idle for idleTimeoutMs (newest first), and crash-looping workers nobody needs.
    if (this.opts.idleTimeoutMs >= 0) {
      for (const slot of [...active()].reverse()) {
        if (active().length <= want) break;
        const inc = slot.current;
        const noProcess = !inc || inc.exited;
        if (noProcess && slot.restartTimer) {
          this.removeSlot(slot, 'not needed');
        } else if (slot.idleSince !== undefined && now - slot.idleSince >= this.opts.idleTimeoutMs) {
          this.retire(slot);
        }
      }
    }
  }

  private addSlot(): void {
    const slot: Slot = { workerId: `w-${this.nextId++}`, restarts: 0, fastExits: 0, retiring: false };
    this.slots.push(slot);
    this.spawnAfterColdStart(slot);
  }

  private removeSlot(slot: Slot, why: string): void {
    clearTimeout(slot.restartTimer);
    const i = this.slots.indexOf(slot);
    if (i >= 0) this.slots.splice(i, 1);
    this.opts.logger.info({ worker: slot.workerId }, `worker ${slot.workerId} removed (${why})`);
  }

  /** Scale down: SIGTERM (the SDK finishes its loop), SIGKILL after stopGraceMs; the slot goes. */
  private retire(slot: Slot): void {
    slot.retiring = true;
    const inc = slot.current;
    this.opts.logger.info({ worker: slot.workerId }, `worker ${slot.workerId} idle; scaling down`);
    if (!inc || inc.exited) {
      this.removeSlot(slot, 'scaled down');
      return;
    }
    killGroup(inc, 'SIGTERM');
    this.opts.onStopping(inc);
    const timer = setTimeout(() => {
      if (!inc.exited) killGroup(inc, 'SIGKILL');
    }, this.opts.stopGraceMs);
    timer.unref();
  }

  /** Declares a worker dead: its jobs are handled first, then its process group is killed. */
  private lose(inc: Incarnation, why: string): void {
    inc.lost = true;
    this.opts.logger.warn({ worker: inc.workerId, workerPid: inc.pid }, `worker ${inc.workerId} ${why}; declaring it dead`);
    const slot = this.slotOf(inc);
    if (slot) slot.lastExit = why;
    this.opts.onLost(inc, why);
    killGroup(inc, 'SIGKILL');
  }

  private flushStops(inc: Incarnation): void {
    if (!inc.stopWaiter) return;
    const ids = [...inc.pendingStops];
    if (ids.length === 0 && !inc.exited && !this.stopping) return;
    inc.pendingStops.clear();
    inc.stopWaiter(ids);
  }

  private spawnAfterColdStart(slot: Slot, extraDelayMs = 0): void {
    // No GPU free: the worker waits for one, asking again every second.
    slot.throttled = this.opts.noCapacity?.() === true;
    if (slot.throttled) {
      const timer = setTimeout(() => {
        this.spawnTimers.delete(timer);
        slot.restartTimer = undefined;
        if (this.slots.includes(slot) && !this.stopping) this.spawnAfterColdStart(slot, extraDelayMs);
      }, 1_000);
      slot.restartTimer = timer;
      this.spawnTimers.add(timer);
      return;
    }
    const requestedAt = Date.now();
    const delay = extraDelayMs + Math.max(0, this.opts.coldStartDelayMs());
    if (delay <= 0) {
      this.spawn(slot, requestedAt);
      return;
    }
    const timer = setTimeout(() => {
      this.spawnTimers.delete(timer);
      slot.restartTimer = undefined;
      if (this.slots.includes(slot)) this.spawn(slot, requestedAt);
    }, delay);
    slot.restartTimer = timer;
    this.spawnTimers.add(timer);
  }

  private spawn(slot: Slot, requestedAt: number): void {
    if (this.stopping) return;
    const { logger } = this.opts;
    const token = randomBytes(18).toString('base64url');
    if (this.opts.command.length === 0) throw new Error('runpod-local: workerCommand is empty');
    // The worker runs as the leader of its own process group (detached), so that its helpers
    // (the SDK's heartbeat process) are killed with it. A watchdog in that group kills the whole
    // group when our end of its stdin closes, i.e. when this process dies without stop():
    // a worker left behind would otherwise spin on connection errors forever.
    const child = spawn('/bin/sh', ['-c', WATCHDOG_SCRIPT, 'runpod-local-worker', ...this.opts.command], {
      cwd: this.opts.cwd,
      env: this.opts.env(slot.workerId, token),
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    child.stdin?.on('error', () => {}); // never written to; only its closing matters
    let markExited!: () => void;
    const inc: Incarnation = {
      token,
      workerId: slot.workerId,
      child,
      ...(child.pid !== undefined ? { pid: child.pid } : {}),
      requestedAt,
      startedAt: Date.now(),
      tookJob: false,
      ready: false,
      exited: false,
      lost: false,
      exitPromise: new Promise<void>((r) => (markExited = r)),
      pendingStops: new Set(),
      stopTimers: new Map(),
    };
    slot.current = inc;
    this.byToken.set(token, inc);
    logger.info({ worker: slot.workerId, workerPid: child.pid }, `worker ${slot.workerId} started`);

    for (const [name, stream] of [['stdout', child.stdout], ['stderr', child.stderr]] as const) {
      if (!stream) continue;
      const lines = createInterface({ input: stream, crlfDelay: Infinity });
      lines.on('line', (line) => {
        logger.info({ worker: slot.workerId, stream: name }, redact(line, this.opts.secrets));
      });
    }

    const onGone = (how: string) => {
      if (inc.exited) return;
      inc.exited = true;
      this.byToken.delete(token);
      clearStopTimers(inc);
      inc.stopWaiter?.([]);
      killGroup(inc, 'SIGKILL'); // sweep helpers left behind by the worker
      const level = this.stopping || slot.retiring ? 'info' : 'warn';
      logger[level]({ worker: slot.workerId, workerPid: inc.pid }, `worker ${slot.workerId} ${how}`);
      if (!inc.lost) slot.lastExit = how;
      this.opts.onExit(inc, how);
      markExited();
      if (this.stopping) return;
      if (slot.retiring) this.removeSlot(slot, 'scaled down');
      else this.scheduleRestart(slot, inc);
    };
    child.once('exit', (code, signal) => onGone(signal ? `exited with signal ${signal}` : `exited with code ${code}`));
    child.on('error', (err) => {
      const message = redact(err.message, this.opts.secrets);
      if (child.pid === undefined) onGone(`failed to start (${message})`);
      else logger.warn({ worker: slot.workerId, workerPid: child.pid }, `worker ${slot.workerId}: ${message}`);
    });
  }

  private scheduleRestart(slot: Slot, inc: Incarnation): void {
    slot.fastExits = Date.now() - inc.startedAt < FAST_EXIT_MS ? slot.fastExits + 1 : 0;
    const delay = Math.min(RESTART_MAX_MS, RESTART_BASE_MS * 2 ** Math.min(slot.fastExits, 6));
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = undefined;
      if (this.stopping || !this.slots.includes(slot)) return;
      slot.restarts++;
      this.spawnAfterColdStart(slot);
    }, delay);
  }
}

function killGroup(inc: Incarnation, signal: NodeJS.Signals): void {
  if (inc.pid === undefined) return;
  try {
    process.kill(-inc.pid, signal);
  } catch {
    try {
      if (!inc.exited) inc.child.kill(signal);
    } catch {
      /* already gone */
    }
  }
}

function clearStopTimers(inc: Incarnation): void {
  for (const { kill, resend } of inc.stopTimers.values()) {
    clearTimeout(kill);
    clearInterval(resend);
  }
  inc.stopTimers.clear();
}
