// Runs the GPU-worker processes: spawns `count` of them, restarts any that exits, delivers
// per-job stop signals (the SDK's job-stop long-poll), and kills a worker that keeps spending on
// a job after it was cancelled. Each worker runs in its own process group so that its helpers
// (the SDK's heartbeat process) die with it.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';
import { redact } from './redact.js';

export type WorkerState = 'starting' | 'idle' | 'running' | 'restarting' | 'stopped';

export interface WorkerInfo {
  workerId: string;
  pid?: number;
  state: WorkerState;
  restarts: number;
  /** Whether the current process has called the endpoint yet. */
  ready: boolean;
}

/** One process lifetime of a worker slot; its token authenticates the process's requests. */
export interface Incarnation {
  token: string;
  workerId: string;
  child: ChildProcess;
  pid?: number;
  startedAt: number;
  ready: boolean;
  exited: boolean;
  exitPromise: Promise<void>;
  pendingStops: Set<string>;
  stopWaiter?: (ids: string[]) => void;
  stopTimers: Map<string, NodeJS.Timeout>;
}

interface Slot {
  workerId: string;
  current?: Incarnation;
  restarts: number;
  fastExits: number;
  restartTimer?: NodeJS.Timeout;
}

export interface SupervisorOptions {
  count: number;
  command: string[];
  cwd?: string;
  /** Environment for one process of the slot `workerId`, whose requests carry `token`. */
  env: (workerId: string, token: string) => NodeJS.ProcessEnv;
  logger: Logger;
  /** Strings never to log (the API key). */
  secrets: string[];
  /** Job ids an incarnation is running (from the job store). */
  runningJobs: (token: string) => string[];
  /** A worker process ended; `how` reads like "exited with signal SIGKILL". */
  onExit: (inc: Incarnation, how: string) => void;
  /** How long a worker may keep a cancelled job before it is killed. */
  cancelGraceMs: number;
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
  private readonly slots: Slot[];
  private readonly byToken = new Map<string, Incarnation>();
  private stopping = false;

  constructor(private readonly opts: SupervisorOptions) {
    this.slots = Array.from({ length: opts.count }, (_, i) => ({ workerId: `w-${i + 1}`, restarts: 0, fastExits: 0 }));
  }

  start(): void {
    for (const slot of this.slots) this.spawn(slot);
  }

  /** The live incarnation a worker request belongs to, or undefined (unknown or dead token). */
  incarnation(token: string | undefined, workerId: string): Incarnation | undefined {
    if (!token) return undefined;
    const inc = this.byToken.get(token);
    if (!inc || inc.exited || inc.workerId !== workerId) return undefined;
    inc.ready = true;
    return inc;
  }

  workers(): WorkerInfo[] {
    return this.slots.map((slot) => {
      const inc = slot.current;
      let state: WorkerState;
      if (this.stopping) state = 'stopped';
      else if (!inc || inc.exited) state = 'restarting';
      else if (!inc.ready) state = 'starting';
      else state = this.opts.runningJobs(inc.token).length > 0 ? 'running' : 'idle';
      return {
        workerId: slot.workerId,
        ...(inc && !inc.exited && inc.pid !== undefined ? { pid: inc.pid } : {}),
        state,
        restarts: slot.restarts,
        ready: inc?.ready ?? false,
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
    if (!inc || inc.exited) return;
    inc.pendingStops.add(jobId);
    this.flushStops(inc);
    const timer = setTimeout(() => {
      inc.stopTimers.delete(jobId);
      if (inc.exited) return;
      this.opts.logger.warn(
        { worker: inc.workerId, workerPid: inc.pid, job: jobId },
        `worker ${inc.workerId} did not stop a cancelled job within ${this.opts.cancelGraceMs} ms; killing it`,
      );
      killGroup(inc, 'SIGKILL');
    }, this.opts.cancelGraceMs);
    inc.stopTimers.set(jobId, timer);
  }

  /** The incarnation reported that it runs no job: stop signals to it are settled. */
  noteIdle(inc: Incarnation): void {
    for (const t of inc.stopTimers.values()) clearTimeout(t);
    inc.stopTimers.clear();
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

  private flushStops(inc: Incarnation): void {
    if (!inc.stopWaiter) return;
    const ids = [...inc.pendingStops];
    if (ids.length === 0 && !inc.exited && !this.stopping) return;
    inc.pendingStops.clear();
    inc.stopWaiter(ids);
  }

  private spawn(slot: Slot): void {
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
      startedAt: Date.now(),
      ready: false,
      exited: false,
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
      for (const t of inc.stopTimers.values()) clearTimeout(t);
      inc.stopTimers.clear();
      inc.stopWaiter?.([]);
      killGroup(inc, 'SIGKILL'); // sweep helpers left behind by the worker
      const level = this.stopping ? 'info' : 'warn';
      logger[level]({ worker: slot.workerId, workerPid: inc.pid }, `worker ${slot.workerId} ${how}`);
      this.opts.onExit(inc, how);
      markExited();
      if (!this.stopping) this.scheduleRestart(slot, inc);
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
      slot.restarts++;
      this.spawn(slot);
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
