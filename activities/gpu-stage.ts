// A GPU stage's activity context, which outlives the activity's task once the stage only waits.
// A training waits hours on its RunPod job, and an activity held for that long costs the worker
// an activity slot and the SDK's per-activity state (bench/PROFILE.md: most of the 0.5–0.8 MiB a
// parked pipeline cost). So once its job is submitted the stage parks: the activity tells Temporal
// it completes asynchronously (CompleteAsyncError), and this process goes on with the same code,
// heartbeating, completing, failing or reporting the cancel by task token through the worker's
// client. A parked stage behaves as a held one: a heartbeat's answer carries a cancel back; a
// worker that dies stops heartbeating and the retry resumes from the last details; a worker shut
// down hands its parked stages back at once (a retryable failure), not after the heartbeat timeout.
import { AsyncLocalStorage } from 'node:async_hooks';
import { ApplicationFailure, CancelledFailure, CompleteAsyncError, Context, type Info, log } from '@temporalio/activity';
import { ActivityCancelledError, ActivityNotFoundError, ActivityPausedError, ActivityResetError, type Client } from '@temporalio/client';
import type { ActivitySlotInfo, CustomSlotSupplier, SlotPermit, SlotReserveContext } from '@temporalio/worker';

/** Why a stage stopped waiting, as the SDK's cancellation details say it for a held activity. */
export interface StageStop {
  cancelRequested?: boolean;
  workerShutdown?: boolean;
  /** The activity is gone from the server (timed out, retried elsewhere, paused or reset). */
  gone?: boolean;
}

/** What GPU stages use of the activity context (activities/gpu-job.ts, gpu-wait.ts, gpu-slots.ts). */
export interface GpuStageContext {
  readonly info: Info;
  /** Sends the details; without any, the last ones again (a keep-alive). */
  heartbeat(details?: unknown): void;
  /** Sleeps, unless the stage is cancelled first. */
  sleep(ms: number): Promise<void>;
  /** Rejects with a CancelledFailure when the stage is cancelled. */
  readonly cancelled: Promise<never>;
  readonly cancellationSignal: AbortSignal;
  readonly cancellationDetails: StageStop | undefined;
  /** From here on the stage only waits: its activity may complete asynchronously. */
  park(): void;
}

/** A process's parked stages: they keep their GPU worker slot (slotSupplier), and are handed back when its workers shut down (lib/workers.ts). */
export class ParkedStages {
  private readonly stages = new Set<GpuStage>();
  /** Each parked stage's activity completion, until its RPC is answered. */
  private readonly finishing = new Set<Promise<void>>();
  private slots: StageSlots | undefined;

  get size(): number {
    return this.stages.size;
  }

  /**
   * The GPU worker's activity slots (LORAFLOW_MAX_GPU_JOBS): a parked stage keeps the one its
   * activity had until it finishes, so the process runs no more GPU stages than before, and the
   * rest wait in Temporal's queue, where higher-priority runs go first.
   */
  slotSupplier(max: number): CustomSlotSupplier<ActivitySlotInfo> {
    return (this.slots = new StageSlots(max));
  }

  add(stage: GpuStage, outcome: Promise<unknown>): void {
    this.slots?.keepNextRelease();
    this.stages.add(stage);
    const done: Promise<void> = stage.finish(outcome).finally(() => {
      this.stages.delete(stage);
      this.finishing.delete(done);
      this.slots?.free();
    });
    this.finishing.add(done);
  }

  /** Stops every parked stage as a worker shutdown does (their jobs run on), and waits until each activity is failed for a retry. */
  async handBack(): Promise<void> {
    for (const stage of this.stages) stage.stop({ workerShutdown: true });
    await Promise.allSettled([...this.finishing]);
  }
}

/**
 * At most `max` permits out, counting parked stages. A parked activity's task ends (the SDK
 * releases its slot) just after the stage parks: that release keeps the permit, which the stage
 * frees when it finishes. Which release keeps it does not matter, only how many do.
 */
class StageSlots implements CustomSlotSupplier<ActivitySlotInfo> {
  readonly type = 'custom';
  private held = 0;
  private kept = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly max: number) {}

  async reserveSlot(_ctx: SlotReserveContext, abort: AbortSignal): Promise<SlotPermit> {
    while (this.held >= this.max) {
      await new Promise<void>((resolve, reject) => {
        const wake = () => (abort.removeEventListener('abort', stop), resolve());
        const stop = () => {
          this.waiting.splice(this.waiting.indexOf(wake) >>> 0, 1);
          reject(Object.assign(new Error('slot reservation aborted'), { name: 'AbortError' }));
        };
        if (abort.aborted) return stop();
        abort.addEventListener('abort', stop, { once: true });
        this.waiting.push(wake);
      });
    }
    this.held++;
    return {};
  }

  tryReserveSlot(): SlotPermit | null {
    if (this.held >= this.max) return null;
    this.held++;
    return {};
  }

  markSlotUsed(): void {}

  releaseSlot(): void {
    if (this.kept > 0) this.kept--;
    else this.free();
  }

  keepNextRelease(): void {
    this.kept++;
  }

  free(): void {
    this.held = Math.max(0, this.held - 1);
    this.waiting.shift()?.();
  }
}

const stages = new AsyncLocalStorage<GpuStage>();
/** Stages made for code run outside runGpuStage (an activity that calls cancelGpuJob, tests). */
const unparkable = new WeakMap<Context, GpuStage>();

/** The current GPU stage: what runGpuStage runs, else the current activity's, which never parks. */
export function gpuStage(): GpuStageContext {
  const stage = stages.getStore();
  if (stage) return stage;
  const ctx = Context.current();
  let held = unparkable.get(ctx);
  if (!held) unparkable.set(ctx, (held = new GpuStage(ctx, undefined)));
  return held;
}

/**
 * Runs a GPU stage's activity `body`. Where `parked` is given and the worker has a client, the
 * body may park (gpuStage().park()): the activity then completes asynchronously, with the body's
 * result or failure, and `parked` hands it back when the workers stop.
 */
export async function runGpuStage<T>(parked: ParkedStages | undefined, body: () => Promise<T>): Promise<T> {
  const ctx = Context.current();
  const stage = new GpuStage(ctx, parked && clientOf(ctx));
  const outcome = stages.run(stage, body);
  // Settled either way, so a failure after parking is not left unhandled here (finish reports it).
  const first = await Promise.race([outcome.then((value) => ({ value }), (error: unknown) => ({ error })), stage.parked]);
  if (first === PARKED) {
    parked!.add(stage, outcome);
    throw new CompleteAsyncError();
  }
  if ('error' in first) throw first.error;
  return first.value;
}

const PARKED = Symbol('parked');

class GpuStage implements GpuStageContext {
  readonly info: Info;
  readonly cancelled: Promise<never>;
  readonly parked: Promise<typeof PARKED>;
  private readonly abort = new AbortController();
  private stopped: StageStop | undefined;
  private onPark: (() => void) | undefined;
  /** Set once parked: heartbeats and the outcome go through it, by task token. */
  private client: Client | undefined;
  private last: unknown;
  private sending: Promise<void> | undefined;
  private pending: { details: unknown } | undefined;

  constructor(
    private readonly ctx: Context,
    private readonly parkWith: Client | undefined,
  ) {
    this.info = ctx.info;
    this.last = ctx.info.heartbeatDetails;
    this.cancelled = new Promise<never>((_, reject) => this.abort.signal.addEventListener('abort', () => reject(this.abort.signal.reason as Error), { once: true }));
    this.cancelled.catch(() => undefined); // nobody need be listening
    this.parked = new Promise((resolve) => (this.onPark = () => resolve(PARKED)));
    // While held, the activity's own cancel is the stage's.
    const cancel = () => this.stop({ ...ctx.cancellationDetails }, ctx.cancellationSignal.reason);
    if (ctx.cancellationSignal.aborted) cancel();
    else ctx.cancellationSignal.addEventListener('abort', cancel, { once: true });
  }

  get cancellationSignal(): AbortSignal {
    return this.abort.signal;
  }

  get cancellationDetails(): StageStop | undefined {
    return this.stopped;
  }

  park(): void {
    if (this.client || !this.parkWith || this.stopped) return;
    this.client = this.parkWith;
    this.onPark?.();
    this.onPark = undefined;
  }

  heartbeat(details: unknown = this.last): void {
    this.last = details;
    if (!this.client) return this.ctx.heartbeat(details);
    // One heartbeat RPC at a time; the newest details wait for the one in flight.
    if (this.sending) {
      this.pending = { details };
      return;
    }
    this.sending = this.send(details).finally(() => {
      this.sending = undefined;
      const next = this.pending;
      this.pending = undefined;
      if (next && !this.stopped) this.heartbeat(next.details);
    });
  }

  sleep(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([new Promise<void>((resolve) => (timer = setTimeout(resolve, ms))), this.cancelled]).finally(() => clearTimeout(timer));
  }

  stop(why: StageStop, reason: unknown = new CancelledFailure(why.cancelRequested ? 'CANCELLED' : why.workerShutdown ? 'WORKER_SHUTDOWN' : 'NOT_FOUND')): void {
    if (this.stopped) return;
    this.stopped = why;
    this.abort.abort(reason);
  }

  private async send(details: unknown): Promise<void> {
    try {
      await this.client!.activity.heartbeat(this.info.taskToken, details);
    } catch (err) {
      // What the SDK does for a held activity: a cancel is the workflow's; the rest mean the
      // server no longer waits for this attempt, and its job runs on for the next one.
      if (err instanceof ActivityCancelledError) this.stop({ cancelRequested: true });
      else if (err instanceof ActivityNotFoundError || err instanceof ActivityPausedError || err instanceof ActivityResetError) this.stop({ gone: true });
      else log.debug('heartbeat of a parked GPU stage not delivered; the next one may be', { error: String(err) });
    }
  }

  /** Completes the parked activity with the body's outcome, as the worker would have. */
  async finish(outcome: Promise<unknown>): Promise<void> {
    const token = this.info.taskToken;
    const activity = this.client!.activity;
    const report = await outcome.then(
      (value) => () => activity.complete(token, value),
      (err: unknown) => {
        const why = this.stopped;
        if (why?.gone) return undefined;
        if (why?.cancelRequested && err instanceof CancelledFailure) return () => activity.reportCancellation(token);
        if (why?.workerShutdown) return () => activity.fail(token, ApplicationFailure.retryable('the worker shut down while the GPU stage waited; the next attempt resumes waiting on its job', 'WorkerShutdown'));
        return () => activity.fail(token, err instanceof Error ? err : new Error(String(err)));
      },
    );
    await this.sending?.catch(() => undefined); // the last details first
    for (let attempt = 1; report; attempt++) {
      try {
        return await report();
      } catch (err) {
        if (err instanceof ActivityNotFoundError || attempt >= 5) {
          // The activity timed out meanwhile: its retry resumes from the last heartbeat.
          return log.warn('the parked GPU stage could not report its outcome; its activity times out and is retried', { attempt, error: String(err) });
        }
        await new Promise((r) => setTimeout(r, 500 * 2 ** attempt));
      }
    }
  }
}

/** The worker's client (absent in a MockActivityEnvironment without one: the stage never parks). */
function clientOf(ctx: Context): Client | undefined {
  try {
    return ctx.client;
  } catch {
    return undefined;
  }
}
