// Runs one GPU stage's work on the RunPod endpoint and waits for it, durably: the job id goes
// into the activity's heartbeat details the moment /run returns, so a retried attempt (worker
// crash, timeout) resumes waiting on that job instead of paying for a second one; a write-once
// claim in S3 covers the moment before that heartbeat, and checkpoints let a job that ended a
// segment or died be continued by the next generation (gpu-submission.ts).
// Cancelling the activity cancels the RunPod job before the cancellation is reported.
import { ApplicationFailure, CancelledFailure, Context, log } from '@temporalio/activity';
import type { z } from 'zod';
import { GpuProgress, type GpuJobInput } from '../contract/gpu-job.js';
import { runKeys } from '../lib/keys.js';
import { RunpodJobNotFound, RunpodPayloadTooLarge, type RunpodJobStatus } from '../lib/runpod-client.js';
import { putBytes } from '../lib/s3.js';
import type { ActivityDeps } from './deps.js';
import { type GpuHeartbeat, progressReporter } from './gpu-progress.js';
import { classify, failureOf, type GpuJobTiming, parseOutput, timingOf } from './gpu-result.js';
import { claimedElsewhere, claimKey, claimOwner, type GenerationKeys, type Submission, submissionFor } from './gpu-submission.js';
import type { BudgetGuard } from './usage.js';

export interface GpuJobOptions<T> extends GenerationKeys {
  /** The run whose GPU jobs these are: every submitted job id is recorded under its gpu-jobs/. */
  runKey: string;
  /** True when a COMPLETED output is a segment, not the end: the next generation continues it. */
  isSegment?: (output: T) => boolean;
  /** Resumable failures in a row before giving up (default 5). */
  maxFailures?: number;
  /** First wait before resubmitting after a failure, doubled each time up to 30 s (default 5 s). */
  retryBackoffMs?: number;
  /** The run's budget: checked before each submission and on every status of a running job. */
  budget?: BudgetGuard | undefined;
}

export interface GpuJobResult<T> {
  /** The job that produced `output`; `gpuJobIds` lists every job this stage used. */
  gpuJobId: string;
  gpuJobIds: string[];
  output: T;
  outputs: T[];
  timings: GpuJobTiming[];
}

/** Heartbeats sent while a long-poll is open, so cancellation still reaches the activity. */
const HEARTBEAT_EVERY_MS = 2_000;

export async function runGpuJob<T>(
  deps: ActivityDeps,
  makeInput: (submission: Submission) => Promise<GpuJobInput>,
  outputSchema: z.ZodType<T>,
  opts: GpuJobOptions<T>,
): Promise<GpuJobResult<T>> {
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

  try {
    for (;;) {
      // A job submitted by an attempt that died before its heartbeat already holds the claim.
      gpuJobId ??= (await claimOwner(deps, claimKey(opts, generation))) ?? (await submit(deps, opts, generation, makeInput));
      ctx.heartbeat({ gpuJobId, generation, failures } satisfies GpuHeartbeat);
      jobs.add(gpuJobId);

      const status = await waitUntilFinished(deps, gpuJobId, { generation, failures }, reporter, await opts.budget?.forJob(gpuJobId));
      timings.set(gpuJobId, timingOf(status));
      if (status.status === 'FAILED' && classify(status.error).cls === 'CLAIMED') {
        gpuJobId = await claimedElsewhere(deps, gpuJobId, claimKey(opts, generation));
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
        ctx.heartbeat({ generation: generation + 1, failures } satisfies GpuHeartbeat);
        await reporter({ generation: generation + 1, failures }, failure.message);
        await ctx.sleep(backoffMs);
      }
      generation++;
      gpuJobId = undefined;
    }
  } catch (err) {
    // Only a cancel asked for by the workflow, or the budget, stops the GPU job. A worker shutdown
    // or a timeout leaves it running: the next attempt resumes waiting on it, so no GPU time is lost.
    const cancelled = err instanceof CancelledFailure && ctx.cancellationDetails?.cancelRequested;
    const overBudget = err instanceof ApplicationFailure && err.type === 'BudgetExceeded';
    if ((cancelled || overBudget) && gpuJobId) await cancelGpuJob(deps, gpuJobId);
    throw err;
  }
}

/** Submits one generation's job (within the budget and the payload limit) and records its id. */
async function submit(deps: ActivityDeps, opts: Pick<GpuJobOptions<unknown>, 'runKey' | 'budget' | keyof GenerationKeys>, generation: number, makeInput: (s: Submission) => Promise<GpuJobInput>): Promise<string> {
  await opts.budget?.beforeSubmit();
  const input = await makeInput(await submissionFor(deps, opts, generation));
  const ctx = Context.current();
  const gpuJobId = await deps.runpod
    .submit(input, {}, { sleep: (ms) => ctx.sleep(ms), onRetry: (_what, attempt, error) => log.warn('RunPod /run failed; retrying', { attempt, error: String(error) }) })
    .catch((err: unknown) => {
      if (!(err instanceof RunpodPayloadTooLarge)) throw err;
      const images = 'images' in input ? input.images.length : 0;
      throw ApplicationFailure.nonRetryable(`the GPU job input is ${(err.bytes / 1e6).toFixed(1)} MB, over RunPod's 10 MB limit for /run (${images} images)`, 'GpuPayloadTooLarge');
    });
  log.info('GPU job submitted', { gpuJobId, generation });
  // Remember every job of the run, so a failed or cancelled pipeline can stop them all (cleanup.ts).
  await putBytes(deps.storage, runKeys(opts.runKey).gpuJob(gpuJobId), JSON.stringify({ gpuJobId, generation }), 'application/json');
  return gpuJobId;
}

/** A cancelled pipeline must not leave its GPU job running. The activity is already cancelled:
 * the retries wait on plain timers, not ctx.sleep. */
export async function cancelGpuJob(deps: Pick<ActivityDeps, 'runpod'>, gpuJobId: string): Promise<void> {
  try {
    const outcome = await deps.runpod.cancelJob(gpuJobId);
    log.info(outcome === 'cancelled' ? 'GPU job cancelled' : 'GPU job to cancel is no longer known to the endpoint', { gpuJobId });
  } catch (err) {
    log.warn('could not cancel GPU job', { gpuJobId, error: String(err) });
  }
}

/** Waits until the job is COMPLETED, FAILED or TIMED_OUT, heartbeating and reporting progress. */
async function waitUntilFinished(
  deps: ActivityDeps,
  gpuJobId: string,
  stage: Pick<GpuHeartbeat, 'generation' | 'failures'>,
  reporter: ReturnType<typeof progressReporter>,
  budget?: Awaited<ReturnType<BudgetGuard['forJob']>>,
): Promise<RunpodJobStatus> {
  const ctx = Context.current();
  let last: GpuHeartbeat = { gpuJobId, ...stage };
  let runningSince: number | undefined;
  for (;;) {
    const asked = Date.now();
    const status = await statusOnce(deps, gpuJobId, () => last);
    if (status) {
      const progress = GpuProgress.safeParse(status.output);
      last = { gpuJobId, ...stage, gpuStatus: status.status, ...(progress.success ? { progress: progress.data } : {}) };
      ctx.heartbeat(last);
      await reporter(last);
      if (status.status === 'CANCELLED') throw ApplicationFailure.nonRetryable(`GPU job ${gpuJobId} was cancelled outside loraflow`, 'GpuJobCancelled');
      if (['COMPLETED', 'FAILED', 'TIMED_OUT'].includes(status.status)) return status;
      // The endpoint's executionTime is the billed clock; our own count is the fallback.
      if (status.status === 'IN_PROGRESS') runningSince ??= asked;
      if (runningSince !== undefined) budget?.check(Math.max(status.executionTime ?? 0, Date.now() - runningSince));
    }
    // A long-poll held open goes straight on; a plain /status (or an early answer) waits out the interval.
    const rest = deps.gpuJobs.pollIntervalMs - (Date.now() - asked);
    if (rest > 0) await ctx.sleep(rest); // rejects with CancelledFailure when cancelled
  }
}

/**
 * One status call (a long-poll where the endpoint has it), heartbeating while it is open.
 * Transport errors and 5xx are logged and retried on the next tick; a job the endpoint no longer
 * knows is lost.
 */
async function statusOnce(deps: ActivityDeps, gpuJobId: string, beat: () => GpuHeartbeat): Promise<RunpodJobStatus | undefined> {
  const ctx = Context.current();
  const keepAlive = setInterval(() => ctx.heartbeat(beat()), HEARTBEAT_EVERY_MS);
  try {
    return await Promise.race([deps.runpod.waitForStatus(gpuJobId, deps.gpuJobs.statusWaitMs), ctx.cancelled]);
  } catch (err) {
    if (err instanceof CancelledFailure) throw err;
    if (err instanceof RunpodJobNotFound) throw ApplicationFailure.nonRetryable(`GPU job ${gpuJobId} disappeared from the endpoint`, 'GpuJobLost');
    log.warn('GPU status poll failed; will retry', { gpuJobId, error: err instanceof Error ? err.message : String(err) });
    return undefined;
  } finally {
    clearInterval(keepAlive);
  }
}
