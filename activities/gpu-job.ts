// Runs one GPU job on the RunPod endpoint and waits for it, durably:
// the job id goes into the activity's heartbeat details the moment /run returns, so a retried
// attempt (worker crash, timeout) resumes polling that job instead of paying for a second one;
// a write-once claim in S3 covers the moment before that heartbeat, and checkpoints let a job
// that ended a segment or died be continued by the next one (see GpuJobOptions).
// Cancelling the activity cancels the RunPod job before the cancellation is reported.
import { ApplicationFailure, CancelledFailure, Context, log } from '@temporalio/activity';
import type { z } from 'zod';
import { GpuErrorClass, GpuProgress, type GpuJobInput } from '../contract/gpu-job.js';
import type { GpuProgressSignal, GpuState } from '../contract/pipeline.js';
import { RunpodHttpError, RunpodJobNotFound, type RunpodHealth, type RunpodJobStatus } from '../lib/runpod-client.js';
import { gpuProgressSignal } from '../workflows/definitions.js';
import { scrubUrls } from '../lib/logger.js';
import { exists, getJson, listKeys, presignGet, presignPut, presignPutIfAbsent, putBytes } from '../lib/s3.js';
import type { ActivityDeps } from './deps.js';
import type { BudgetGuard } from './usage.js';

export interface GpuHeartbeat {
  /** Absent between a failed job and the next submission. */
  gpuJobId?: string;
  /** Each submission of this activity's work is a generation, with its own claim and checkpoint. */
  generation: number;
  /** Resumable failures in a row (no progress between them). */
  failures: number;
  gpuStatus?: string;
  progress?: GpuProgress;
}

const SIGNAL_EVERY_MS = 5_000;

export interface GpuJobOptions<T> {
  /**
   * S3 prefix for write-once claims. The worker claims `<prefix>/<generation>.json` before any GPU
   * work, so a crash between `/run` returning and the first heartbeat cannot pay for two jobs:
   * the next attempt finds the claim and polls its owner, and a duplicate stops at once (CLAIMED).
   */
  claimPrefix?: string;
  /**
   * S3 prefix for checkpoints, `<prefix>/<generation>.ckpt`. With it, a job that ends a segment or
   * dies (worker crash, execution timeout, transient failure) is followed by the next generation,
   * resuming from the newest checkpoint: GPU work already paid for is kept.
   */
  checkpointPrefix?: string;
  /** True when a COMPLETED output is a segment, not the end: the next generation continues it. */
  isSegment?: (output: T) => boolean;
  /** Resumable failures in a row before giving up (default 5). */
  maxFailures?: number;
  /** First wait before resubmitting after a failure, doubled each time up to 30 s (default 5 s). */
  retryBackoffMs?: number;
  /** S3 prefix where every submitted job id is recorded (see cancelGpuJobs). */
  jobsPrefix?: string;
  /** The run's budget: checked before each submission and on every status of a running job. */
  budget?: BudgetGuard;
}

/** What makeInput needs to build one generation's job: presigned URLs made at submit time. */
export interface Submission {
  claimUrl?: string;
  checkpointUrl?: string;
  resumeUrl?: string;
}

export async function runGpuJob<T>(
  deps: ActivityDeps,
  makeInput: (submission: Submission) => Promise<GpuJobInput>,
  outputSchema: z.ZodType<T>,
  opts: GpuJobOptions<T> = {},
): Promise<{ gpuJobId: string; gpuJobIds: string[]; output: T; outputs: T[]; timings: GpuJobTiming[] }> {
  const ctx = Context.current();
  const recorded = ctx.info.heartbeatDetails as GpuHeartbeat | undefined;
  let generation = recorded?.generation ?? 0;
  let failures = recorded?.failures ?? 0;
  let gpuJobId = recorded?.gpuJobId;
  if (gpuJobId) log.info('resuming GPU job from an earlier attempt', { gpuJobId, generation });
  const outputs: T[] = [];
  const jobs = new Set<string>();
  /** Each finished job's timing fields, as the endpoint reported them (cost accounting). */
  const timings = new Map<string, GpuJobTiming>();
  const reporter = progressReporter(deps);
  const keyOf = (prefix: string | undefined, ext: string) => (prefix ? `${prefix}/${generation}.${ext}` : undefined);

  try {
    for (;;) {
      if (!gpuJobId) {
        const claimKey = keyOf(opts.claimPrefix, 'json');
        // A job submitted by an attempt that died before its heartbeat already holds the claim.
        gpuJobId = claimKey ? await claimOwner(deps, claimKey) : undefined;
        if (!gpuJobId) {
          await opts.budget?.beforeSubmit();
          gpuJobId = await submit(deps, withinPayloadLimit(await makeInput(await submission(deps, opts, generation))));
          log.info('GPU job submitted', { gpuJobId, generation });
          // Remember every job of the pipeline, so a failed or cancelled pipeline can stop them all.
          if (opts.jobsPrefix) await putBytes(deps.storage, `${opts.jobsPrefix}/${gpuJobId}.json`, JSON.stringify({ gpuJobId, generation }), 'application/json');
        }
      }
      ctx.heartbeat({ gpuJobId, generation, failures } satisfies GpuHeartbeat);
      jobs.add(gpuJobId);

      const status = await waitUntilFinished(deps, gpuJobId, generation, failures, reporter, await opts.budget?.forJob(gpuJobId));
      timings.set(gpuJobId, timingOf(status));
      if (status.status === 'FAILED' && classify(status.error).cls === 'CLAIMED') {
        gpuJobId = await claimedElsewhere(deps, gpuJobId, keyOf(opts.claimPrefix, 'json'));
        continue;
      }
      if (status.status === 'COMPLETED') {
        const output = parseOutput(gpuJobId, status, outputSchema);
        outputs.push(output);
        if (!opts.isSegment?.(output)) return { gpuJobId, gpuJobIds: [...jobs], output, outputs, timings: [...timings.values()] };
        log.info('GPU job ended a segment; continuing from its checkpoint', { gpuJobId, generation });
        failures = 0;
      } else {
        const failure = failureOf(gpuJobId, status);
        const resumable = failure.cls === 'TRANSIENT' || (opts.checkpointPrefix !== undefined && failure.cls === 'INTERNAL');
        if (!resumable || ++failures > (opts.maxFailures ?? 5)) {
          throw ApplicationFailure.create({ message: failure.message, type: `Gpu${failure.cls}`, nonRetryable: true });
        }
        // Back off before paying for another cold start: transient trouble (S3, network) needs time.
        const backoffMs = Math.min(30_000, (opts.retryBackoffMs ?? 5_000) * 2 ** (failures - 1));
        log.warn('GPU job failed; submitting the next generation from the last checkpoint', { gpuJobId, generation, backoffMs, error: failure.message });
        generation++;
        gpuJobId = undefined;
        ctx.heartbeat({ generation, failures } satisfies GpuHeartbeat);
        await reporter({ generation, failures }, failure.message);
        await ctx.sleep(backoffMs);
        continue;
      }
      generation++;
      gpuJobId = undefined;
    }
  } catch (err) {
    // Only a cancel asked for by the workflow stops the GPU job. A worker shutdown or a timeout
    // leaves it running: the next attempt resumes polling it, so no GPU time is lost.
    if (err instanceof CancelledFailure && ctx.cancellationDetails?.cancelRequested && gpuJobId) {
      await cancelJob(deps, gpuJobId);
    }
    if (err instanceof ApplicationFailure && err.type === 'BudgetExceeded' && gpuJobId) await cancelJob(deps, gpuJobId);
    throw err;
  }
}

/** What the endpoint bills by: queue wait (incl. cold start) and execution time of one job, ms. */
export interface GpuJobTiming {
  gpuJobId: string;
  status: string;
  /** The device the worker reported in its result (metrics.device), e.g. "cuda:NVIDIA H100 80GB HBM3". */
  gpu?: string;
  delayMs?: number;
  executionMs?: number;
}

export function timingOf(status: RunpodJobStatus): GpuJobTiming {
  const gpu = deviceOf(status.output);
  return {
    gpuJobId: status.id,
    status: status.status,
    ...(gpu ? { gpu } : {}),
    ...(status.delayTime !== undefined ? { delayMs: status.delayTime } : {}),
    ...(status.executionTime !== undefined ? { executionMs: status.executionTime } : {}),
  };
}

function deviceOf(output: unknown): string | undefined {
  const device = (output as { metrics?: { device?: unknown } } | undefined)?.metrics?.device;
  return typeof device === 'string' ? device : undefined;
}

/**
 * POST /run, riding out throttling and server errors. A 5xx could come after the job was created:
 * a claimed training then stops its duplicate before any work, so retrying is safe.
 */
async function submit(deps: ActivityDeps, input: GpuJobInput): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    try {
      return (await deps.runpod.run(input)).id;
    } catch (err) {
      const retryable = !(err instanceof RunpodHttpError) || err.status === 429 || err.status >= 500;
      if (!retryable || attempt === 5) throw err;
      log.warn('RunPod /run failed; retrying', { attempt, error: err instanceof Error ? err.message : String(err) });
      await Context.current().sleep(Math.min(10_000, 500 * 2 ** attempt));
    }
  }
}

/** A cancelled pipeline must not leave its GPU job running: retry the cancel through API errors. */
export async function cancelJob(deps: ActivityDeps, gpuJobId: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await deps.runpod.cancel(gpuJobId);
      log.info('GPU job cancelled with its activity', { gpuJobId });
      return;
    } catch (err) {
      if (err instanceof RunpodJobNotFound || attempt === 6) {
        log.warn('could not cancel GPU job', { gpuJobId, error: String(err) });
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 500 * attempt)); // the activity is already cancelled: no ctx.sleep
    }
  }
}

/** Polls until the job is COMPLETED, FAILED or TIMED_OUT, heartbeating and reporting progress. */
async function waitUntilFinished(
  deps: ActivityDeps,
  gpuJobId: string,
  generation: number,
  failures: number,
  reporter: ReturnType<typeof progressReporter>,
  budget?: Awaited<ReturnType<BudgetGuard['forJob']>>,
): Promise<RunpodJobStatus> {
  const ctx = Context.current();
  let last: GpuHeartbeat = { gpuJobId, generation, failures };
  let runningSince: number | undefined;
  for (;;) {
    const asked = Date.now();
    const status = await pollOnce(deps, gpuJobId, () => last);
    if (status) {
      const progress = GpuProgress.safeParse(status.output);
      last = { gpuJobId, generation, failures, gpuStatus: status.status, progress: progress.success ? progress.data : undefined };
      ctx.heartbeat(last);
      await reporter(last);
      if (status.status === 'CANCELLED') throw ApplicationFailure.nonRetryable(`GPU job ${gpuJobId} was cancelled outside loraflow`, 'GpuJobCancelled');
      if (['COMPLETED', 'FAILED', 'TIMED_OUT'].includes(status.status)) return status;
      // The endpoint's executionTime is the billed clock; our own count is the fallback.
      if (status.status === 'IN_PROGRESS') runningSince ??= asked;
      if (runningSince !== undefined) budget?.check(Math.max(status.executionTime ?? 0, Date.now() - runningSince));
    }
    // A long-poll held open goes straight on; a plain /status (or an early answer) waits out the interval.
    const rest = deps.pollIntervalMs - (Date.now() - asked);
    if (rest > 0) await ctx.sleep(rest); // rejects with CancelledFailure when cancelled
  }
}

/** Heartbeats sent while a long-poll is open, so cancellation still reaches the activity. */
const HEARTBEAT_EVERY_MS = 2_000;
/** False once the endpoint has shown it has no /status-sync (then /status every pollIntervalMs). */
let longPollSupported = true;

/** RunPod refuses /run bodies over 10 MB: say so clearly instead of surfacing an HTTP 413. */
export const RUNPOD_RUN_LIMIT_BYTES = 10 * 1000 * 1000;
export function withinPayloadLimit(input: GpuJobInput): GpuJobInput {
  const bytes = Buffer.byteLength(JSON.stringify({ input }));
  if (bytes > RUNPOD_RUN_LIMIT_BYTES) {
    throw ApplicationFailure.nonRetryable(
      `the GPU job input is ${(bytes / 1e6).toFixed(1)} MB, over RunPod's 10 MB limit for /run (${'images' in input ? input.images.length : 0} images)`,
      'GpuPayloadTooLarge',
    );
  }
  return input;
}

/** Presigned URLs for one generation: its claim, its checkpoint, and the newest earlier checkpoint. */
async function submission<T>(deps: ActivityDeps, opts: GpuJobOptions<T>, generation: number): Promise<Submission> {
  const result: Submission = {};
  if (opts.claimPrefix) result.claimUrl = await presignPutIfAbsent(deps.storage, `${opts.claimPrefix}/${generation}.json`);
  if (opts.checkpointPrefix) {
    result.checkpointUrl = await presignPut(deps.storage, `${opts.checkpointPrefix}/${generation}.ckpt`);
    const earlier = (await listKeys(deps.storage, `${opts.checkpointPrefix}/`))
      .map((key) => ({ key, generation: Number(/\/(\d+)\.ckpt$/.exec(key)?.[1] ?? NaN) }))
      .filter((c) => c.generation < generation)
      .sort((a, b) => b.generation - a.generation)[0];
    if (earlier) result.resumeUrl = await presignGet(deps.storage, earlier.key, 12 * 3600);
  }
  return result;
}

/** The job id written in a claim, if the claim exists. */
async function claimOwner(deps: ActivityDeps, claimKey: string): Promise<string | undefined> {
  if (!(await exists(deps.storage, claimKey))) return undefined;
  return (await getJson<{ jobId: string }>(deps.storage, claimKey)).jobId;
}

/** Our job lost the claim: follow the job that holds it. */
async function claimedElsewhere(deps: ActivityDeps, gpuJobId: string, claimKey: string | undefined): Promise<string> {
  const owner = claimKey ? await claimOwner(deps, claimKey) : undefined;
  if (!owner || owner === gpuJobId) {
    // Only if the answer to our own claim write was lost.
    throw ApplicationFailure.nonRetryable(`GPU job ${gpuJobId} could not confirm its claim on this training`, 'GpuClaimUnconfirmed');
  }
  log.info('another GPU job holds the claim on this training; following it', { gpuJobId, owner });
  return owner;
}

/**
 * One status call: a /status-sync long-poll where the endpoint has it, else /status. Transport
 * errors and 5xx are logged and retried on the next tick.
 */
async function pollOnce(deps: ActivityDeps, gpuJobId: string, beat: () => GpuHeartbeat): Promise<RunpodJobStatus | undefined> {
  const ctx = Context.current();
  try {
    if (deps.statusWaitMs && longPollSupported && deps.runpod.statusSync) {
      const keepAlive = setInterval(() => ctx.heartbeat(beat()), HEARTBEAT_EVERY_MS);
      try {
        return await Promise.race([deps.runpod.statusSync(gpuJobId, deps.statusWaitMs), ctx.cancelled]);
      } catch (err) {
        if (!(err instanceof RunpodHttpError && [400, 404, 405].includes(err.status))) throw err;
        // An endpoint without /status-sync refuses it: if /status knows the job, poll that for good.
        const status = await deps.runpod.status(gpuJobId);
        longPollSupported = false;
        log.info('the endpoint has no /status-sync; polling /status', { gpuJobId });
        return status;
      } finally {
        clearInterval(keepAlive);
      }
    }
    return await deps.runpod.status(gpuJobId);
  } catch (err) {
    if (err instanceof CancelledFailure) throw err;
    if (err instanceof RunpodJobNotFound) {
      throw ApplicationFailure.nonRetryable(`GPU job ${gpuJobId} disappeared from the endpoint`, 'GpuJobLost');
    }
    log.warn('GPU status poll failed; will retry', { gpuJobId, error: err instanceof Error ? err.message : String(err) });
    return undefined;
  }
}

function parseOutput<T>(gpuJobId: string, status: RunpodJobStatus, schema: z.ZodType<T>): T {
  const parsed = schema.safeParse(status.output);
  if (!parsed.success) {
    throw ApplicationFailure.nonRetryable(
      `GPU job ${gpuJobId} reported COMPLETED without a valid result: ${parsed.error.issues[0]?.path.join('.')}: ${parsed.error.issues[0]?.message}`,
      'GpuOutputInvalid',
    );
  }
  return parsed.data;
}

function failureOf(gpuJobId: string, status: RunpodJobStatus): { cls: GpuErrorClass; message: string } {
  const { cls, message } = classify(status.error ?? status.status);
  return { cls, message: `GPU job ${gpuJobId} ${status.status === 'TIMED_OUT' ? 'timed out' : 'failed'}: ${message}` };
}

/** "[CLASS] message" from the worker; anything else (crashes, SDK tracebacks) is INTERNAL. */
export function classify(error: unknown): { cls: GpuErrorClass; message: string } {
  const text = typeof error === 'string' ? error : JSON.stringify(error ?? 'unknown error');
  const tagged = /^\[(OOM|INPUT|TRANSIENT|INTERNAL|CLAIMED)\] ([\s\S]*)$/.exec(text);
  if (tagged) return { cls: GpuErrorClass.parse(tagged[1]), message: scrubUrls(tagged[2]!) };
  try {
    const sdk = JSON.parse(text) as { error_message?: string; error_type?: string };
    if (sdk.error_message) return { cls: 'INTERNAL', message: scrubUrls(`${sdk.error_type ?? 'error'}: ${sdk.error_message}`) };
  } catch {
    // not the SDK's JSON form
  }
  return { cls: 'INTERNAL', message: scrubUrls(text) };
}


const HEALTH_EVERY_MS = 2_000;

/**
 * Sends progress to the workflow (for its `progress` query) on changes of status or state and every
 * few seconds. While a job waits, the endpoint's health says why (capacity, cold start, crashing
 * workers), so the pipeline never shows a bare IN_QUEUE. Never throws: reporting must not disturb
 * the job it reports on.
 */
function progressReporter(deps: ActivityDeps) {
  let lastSent = 0;
  let lastKey = '';
  let health: { at: number; value?: RunpodHealth } = { at: 0 };
  return async (beat: GpuHeartbeat, lostWith?: string) => {
    try {
      const waiting = !beat.gpuJobId || beat.gpuStatus === 'IN_QUEUE';
      if (waiting && deps.runpod.health && Date.now() - health.at >= HEALTH_EVERY_MS) {
        health = { at: Date.now(), value: await deps.runpod.health().catch(() => undefined) };
      }
      const { gpuState, gpuDetail } = gpuStateOf(beat, waiting ? health.value : undefined, lostWith);
      const now = Date.now();
      const key = `${beat.gpuJobId}|${beat.gpuStatus}|${gpuState}|${gpuDetail}`;
      if (key === lastKey && now - lastSent < SIGNAL_EVERY_MS) return;
      lastSent = now;
      lastKey = key;
      const execution = Context.current().info.workflowExecution;
      if (!execution) return;
      const signal: GpuProgressSignal = {
        ...(beat.gpuJobId ? { gpuJobId: beat.gpuJobId } : {}),
        gpuStatus: beat.gpuStatus ?? '',
        gpuState,
        ...(gpuDetail ? { gpuDetail } : {}),
        ...beat.progress,
      };
      await Context.current().client.workflow.getHandle(execution.workflowId, execution.runId).signal(gpuProgressSignal, signal);
    } catch (err) {
      log.debug('progress signal not delivered', { error: String(err) });
    }
  };
}

/**
 * What a job's status means, with the endpoint's health while it waits. A job that follows a lost
 * one (failures > 0) is "resuming" until it runs. `diagnosis` is runpod-local's; on the real service
 * the worker counts are all there is.
 */
export function gpuStateOf(beat: Pick<GpuHeartbeat, 'gpuJobId' | 'gpuStatus' | 'failures'>, health?: RunpodHealth, lostWith?: string): { gpuState: GpuState; gpuDetail?: string } {
  const status = beat.gpuStatus;
  if (status === 'IN_PROGRESS') return { gpuState: 'running' };
  if (status && status !== 'IN_QUEUE') return { gpuState: 'finished' };
  const failure = health?.diagnosis?.lastWorkerFailure;
  if (!beat.gpuJobId || beat.failures > 0) return { gpuState: 'resuming', ...((lostWith ?? failure) ? { gpuDetail: lostWith ?? failure } : {}) };
  const workers = (health?.workers ?? {}) as Record<string, unknown>;
  const count = (k: string) => (typeof workers[k] === 'number' ? (workers[k] as number) : 0);
  switch (health?.diagnosis?.queue) {
    case 'waiting-for-capacity':
      return { gpuState: 'waiting-for-capacity', gpuDetail: `all ${count('running')} workers busy` };
    case 'no-workers':
      return { gpuState: 'waiting-for-capacity', gpuDetail: 'no workers available' };
    case 'cold-starting':
      return { gpuState: 'cold-starting' };
    case 'workers-crashing':
      return { gpuState: 'worker-crashing', ...(failure ? { gpuDetail: failure } : {}) };
    case 'running':
    case 'idle':
      return { gpuState: 'queued' };
  }
  if (!health) return { gpuState: 'queued' };
  if (count('unhealthy') > 0) return { gpuState: 'worker-crashing', gpuDetail: `${count('unhealthy')} unhealthy workers` };
  if (count('initializing') > 0) return { gpuState: 'cold-starting' };
  if (count('throttled') > 0 || (count('running') > 0 && count('idle') === 0)) return { gpuState: 'waiting-for-capacity', gpuDetail: `${count('running')} workers busy` };
  return { gpuState: 'queued' };
}
