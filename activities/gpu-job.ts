// Runs one GPU stage's work on the RunPod endpoint and waits for it, durably: the job id goes
// into the activity's heartbeat details the moment /run returns, so a retried attempt (worker
// crash, timeout) resumes waiting on that job instead of paying for a second one; a write-once
// claim in S3 covers the moment before that heartbeat; every job is recorded in S3 with how it
// ended (gpu-records.ts), and leaves its result there, so nothing depends on RunPod's 30-minute
// retention; checkpoints let a job that ended a segment or died be continued by the next
// generation (gpu-submission.ts). Cancelling the activity cancels the RunPod job first.
// Endpoints are tried in order of preference: a job still queued for capacity past the limit, or
// on an endpoint that allows no workers, is cancelled (it never ran) and the next generation goes
// to the next endpoint; a slot (gpu-slots.ts) caps each endpoint's jobs across every worker.
// The wait on each job (poller, heartbeats, budget, queue limit) is gpu-wait.ts.
import { ApplicationFailure, CancelledFailure, Context, log } from '@temporalio/activity';
import type { z } from 'zod';
import type { GpuJobInput } from '../contract/gpu-job.js';
import { RunpodPayloadTooLarge, type RunpodJobStatus } from '../lib/runpod-client.js';
import type { ActivityDeps, GpuEndpoint } from './deps.js';
import { type GpuHeartbeat, progressReporter } from './gpu-progress.js';
import { acquireGpuSlot, type GpuSlot } from './gpu-slots.js';
import { allowsNoWorkers, MoveOn, waitUntilFinished } from './gpu-wait.js';
import { recordFinal, recordJob } from './gpu-records.js';
import { classify, failureOf, type GpuJobTiming, parseOutput, timingOf } from './gpu-result.js';
import { abandonGeneration, claimedElsewhere, isAbandoned, claimOwner, type StageKeys, storedResult, type Submission, submissionFor } from './gpu-submission.js';
import type { BudgetGuard } from './usage.js';
import { eligibleEndpoints, memoryNeededGb, noEndpointMessage, type RunShape } from '../lib/endpoints.js';

export interface GpuJobOptions<T> extends StageKeys {
  /** True when a COMPLETED output is a segment, not the end: the next generation continues it. */
  isSegment?: (output: T) => boolean;
  /** The step a segment reached: each segment must get further than the one before. */
  stepOf?: (output: T) => number;
  /** Failures in a row (lost jobs, segments without progress) before giving up (default 5). */
  maxFailures?: number;
  /** First wait before resubmitting after a failure, doubled each time up to 30 s (default 5 s). */
  retryBackoffMs?: number;
  /** The run's budget: checked before each submission and on every status of a running job. */
  budget?: BudgetGuard | undefined;
  /** The endpoints this stage may use, in order (default: every configured one). */
  endpoints?: GpuEndpoint[];
}

export interface GpuJobResult<T> {
  /** The job that produced `output`; `gpuJobIds` lists every job this stage used. */
  gpuJobId: string;
  gpuJobIds: string[];
  output: T;
  /** Every COMPLETED output, with the generation whose files it wrote. */
  outputs: { generation: number; output: T }[];
  timings: GpuJobTiming[];
}

/** The job's TTL beyond its execution budget: as long as the service's default queue allowance. */
const QUEUE_ALLOWANCE_MS = 24 * 3_600_000;
/** Checkpoint upload and result after the segment's last step. */
const WRAP_UP_MS = 5 * 60_000;

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
  let lastStep = recorded?.lastStep;
  const endpoints = [...(opts.endpoints ?? deps.endpoints)];
  let at = Math.max(0, endpoints.findIndex((e) => e.id === recorded?.endpointId));
  /** Why the stage left the endpoint before the current one, for the next job's record. */
  let moved: MoveReason | undefined = recorded?.moved;
  if (gpuJobId) {
    log.info('resuming GPU job from an earlier attempt', { gpuJobId, generation, endpointId: endpoints[at]!.id });
    deps.runpod.remember(gpuJobId, endpoints[at]!.id);
  }
  const outputs: { generation: number; output: T }[] = [];
  const jobs = new Set<string>();
  /** Each finished job's timing fields, as the endpoint reported them (cost accounting). */
  const timings = new Map<string, GpuJobTiming>();
  const beat = (extra: Partial<GpuHeartbeat> = {}): GpuHeartbeat => ({
    generation,
    failures,
    ...(lastStep !== undefined ? { lastStep } : {}),
    endpointId: endpoints[at]!.id,
    ...(moved ? { moved } : {}),
    ...extra,
  });
  const holder = `${opts.runKey}/${opts.stage}`;
  let slot: GpuSlot | undefined;

  try {
    for (;;) {
      const endpoint = endpoints[at]!;
      if (slot?.endpointId !== endpoint.id) {
        await slot?.release();
        const known = gpuJobId ? { gpuJobId } : {};
        slot = await acquireGpuSlot(endpoint.id, holder, deps.gpuJobs.slots, (waiting) => ctx.heartbeat(beat(waiting ? { ...known, waitingForSlot: endpoint.id } : known)), deps.gpuJobs.versioned);
      }
      // Which endpoint is named only where there is a choice of them.
      const reporter = progressReporter({ runpod: endpoint.client }, deps.endpoints.length > 1 ? endpoint.id : undefined, moved?.reason);
      const next = endpoints[at + 1];
      if (!gpuJobId) {
        // A job submitted by an attempt that died before its heartbeat already holds the claim.
        const owner = await claimOwner(deps, opts, generation);
        if (owner !== undefined && isAbandoned(owner)) {
          generation++; // left behind when the stage moved on (a heartbeat older than the move)
          continue;
        }
        if (!owner && next && (await allowsNoWorkers(endpoint))) {
          moved = { from: endpoint.id, reason: `${endpoint.id} allows no workers (max workers 0)` };
          log.warn('GPU endpoint allows no workers; trying the next one', { endpointId: endpoint.id, next: next.id });
          at++;
          continue;
        }
        gpuJobId = owner ?? (await submit(deps, opts, generation, makeInput, endpoint, () => ctx.heartbeat(beat()), moved));
        if (owner) await record(deps, opts, owner, generation, endpoint.id, moved);
        deps.runpod.remember(gpuJobId, endpoint.id);
      }
      ctx.heartbeat(beat({ gpuJobId }));
      jobs.add(gpuJobId);

      const queueLimit = next ? { endpoint, waitMs: deps.gpuJobs.queueWaitMs } : undefined;
      const waited = await waitUntilFinished(deps, opts.runKey, gpuJobId, beat({ gpuJobId }), reporter, await opts.budget?.forJob(gpuJobId, endpoint), queueLimit, slot);
      if (waited instanceof MoveOn) {
        // Queued too long (or no workers allowed): cancel it; only a job that never ran moves on.
        // A job that holds its generation's claim has run: the service queued it again after its
        // worker died (an attempt resumed after a restart cannot have seen it running), and its
        // retry resumes from its own checkpoint, where a job elsewhere would start further back.
        if ((await claimOwner(deps, opts, generation)) === gpuJobId) {
          log.info('GPU job is queued again after running (its worker died); staying on its endpoint', { gpuJobId, endpointId: endpoint.id });
          endpoints.splice(at + 1);
          continue;
        }
        const outcome = await deps.runpod.cancelJob(gpuJobId, { onRetry: () => ctx.heartbeat(beat({ gpuJobId })) }).catch(() => 'unconfirmed' as const);
        if (outcome === 'cancelled') {
          await recordFinal(deps, opts.runKey, gpuJobId, { ...timingOf(await deps.runpod.status(gpuJobId).catch(() => ({ id: gpuJobId!, status: 'CANCELLED' }) as RunpodJobStatus)), seenAt: new Date().toISOString(), timing: 'endpoint', error: waited.reason });
          // Cancelled untaken: the generation is closed behind it, unless another job of the same
          // input (a /run whose answer was lost) claimed it first: that one is followed instead.
          const holder = await abandonGeneration(deps, opts, generation, gpuJobId);
          if (holder && holder !== gpuJobId) {
            log.warn('another GPU job of this generation holds its claim; following it instead of moving on', { gpuJobId, owner: holder });
            gpuJobId = holder;
            await record(deps, opts, gpuJobId, generation, endpoint.id, moved);
            deps.runpod.remember(gpuJobId, endpoint.id);
            endpoints.splice(at + 1);
            continue;
          }
          log.warn('GPU job waited too long for capacity; cancelled it and trying the next endpoint', { gpuJobId, endpointId: endpoint.id, next: next!.id, reason: waited.reason });
          moved = { from: endpoint.id, gpuJobId, reason: waited.reason };
          at++;
          generation++; // a fresh claim: the cancelled job may have taken this generation's
          gpuJobId = undefined;
          ctx.heartbeat(beat());
          continue;
        }
        // It started (or finished) meanwhile: it stays, and is waited on where it is.
        log.info('GPU job left the queue before it could be moved; staying on its endpoint', { gpuJobId, outcome });
        endpoints.splice(at + 1); // no more moves for this stage
        continue;
      }
      const status = waited ?? (await lostJob(deps, opts, gpuJobId, generation));
      timings.set(gpuJobId, timingOf(status));
      if (status.status === 'FAILED' && classify(status.error).cls === 'CLAIMED') {
        gpuJobId = await claimedElsewhere(deps, gpuJobId, opts, generation);
        await record(deps, opts, gpuJobId, generation, endpoint.id, moved);
        continue;
      }
      if (status.status === 'COMPLETED') {
        const output = parseOutput(gpuJobId, status, outputSchema);
        outputs.push({ generation, output });
        if (!opts.isSegment?.(output)) return { gpuJobId, gpuJobIds: [...jobs], output, outputs, timings: [...timings.values()] };
        const step = opts.stepOf?.(output);
        if (step !== undefined && lastStep !== undefined && step <= lastStep) {
          failures = countFailure(opts, failures, `GPU job ${gpuJobId} ended a segment at step ${step} without getting past step ${lastStep}`, 'GpuNoProgress');
        } else {
          failures = 0;
        }
        if (step !== undefined) lastStep = Math.max(step, lastStep ?? 0);
        log.info('GPU job ended a segment; continuing from its checkpoint', { gpuJobId, generation, step });
      } else {
        const failure = failureOf(gpuJobId, status);
        const resumable = failure.cls === 'TRANSIENT' || (opts.fingerprint !== undefined && failure.cls === 'INTERNAL');
        if (!resumable) throw ApplicationFailure.create({ message: failure.message, type: `Gpu${failure.cls}`, nonRetryable: true });
        failures = countFailure(opts, failures, failure.message, `Gpu${failure.cls}`);
        // Back off before paying for another cold start: transient trouble (S3, network) needs time.
        const backoffMs = Math.min(30_000, (opts.retryBackoffMs ?? 5_000) * 2 ** (failures - 1));
        log.warn('GPU job failed; submitting the next generation from the last checkpoint', { gpuJobId, generation, backoffMs, error: failure.message });
        generation++;
        gpuJobId = undefined;
        ctx.heartbeat(beat());
        await reporter(beat(), failure.message);
        await ctx.sleep(backoffMs);
        continue;
      }
      generation++;
      gpuJobId = undefined;
    }
  } catch (err) {
    // Only a cancel asked for by the workflow, or the budget, stops the GPU job. A worker shutdown
    // or a timeout leaves it running: the next attempt resumes waiting on it, so no GPU time is lost.
    const cancelled = err instanceof CancelledFailure && ctx.cancellationDetails?.cancelRequested;
    const overBudget = err instanceof ApplicationFailure && err.type === 'BudgetExceeded';
    if ((cancelled || overBudget) && gpuJobId) await cancelGpuJob(deps, opts.runKey, gpuJobId);
    throw err;
  } finally {
    // A worker shutdown keeps the slot: the next attempt (same holder) resumes in it.
    if (!ctx.cancellationDetails?.workerShutdown) await slot?.release();
  }
}

/** The endpoints a stage may use, in order: pinned to `gpu` where asked, with the memory `run`
 * needs (the caption job needs no more than any endpoint has). None: the stage fails, naming each. */
export function stageEndpoints(deps: Pick<ActivityDeps, 'endpoints'>, run: RunShape | undefined, gpu: string | undefined): GpuEndpoint[] {
  const choice = eligibleEndpoints(deps.endpoints, run ? memoryNeededGb(run) : undefined, gpu);
  if (!choice.eligible.length) throw ApplicationFailure.nonRetryable(noEndpointMessage(choice), 'NoGpuEndpoint');
  return choice.eligible as GpuEndpoint[];
}

/** Why a stage left an endpoint: recorded on the next job, shown by status and the report. */
export interface MoveReason {
  from: string;
  gpuJobId?: string;
  reason: string;
}

/** One more failure in a row; past maxFailures the stage fails with the last one's message. */
function countFailure(opts: Pick<GpuJobOptions<unknown>, 'maxFailures'>, failures: number, message: string, type: string): number {
  if (failures + 1 > (opts.maxFailures ?? 5)) throw ApplicationFailure.create({ message, type, nonRetryable: true });
  return failures + 1;
}

/** Records a job of this generation (submitted here, or followed through its claim). */
async function record(deps: ActivityDeps, opts: StageKeys, gpuJobId: string, generation: number, endpointId: string, moved?: MoveReason): Promise<void> {
  const { workflowId, runId } = Context.current().info.workflowExecution ?? { workflowId: opts.runKey, runId: '' };
  await recordJob(deps, opts.runKey, { gpuJobId, stage: opts.stage, generation, workflowId, runId, submittedAt: new Date().toISOString(), endpointId, ...(moved ? { movedFrom: moved } : {}) });
}

/** Submits one generation's job (within the budget and the payload limit) and records it. */
async function submit(
  deps: ActivityDeps,
  opts: StageKeys & Pick<GpuJobOptions<unknown>, 'budget'>,
  generation: number,
  makeInput: (s: Submission) => Promise<GpuJobInput>,
  endpoint: GpuEndpoint,
  /** Heartbeats: a burst of stages waits out /run's rate limit (429s) here, for longer than the heartbeat timeout. */
  keepAlive: () => void,
  moved?: MoveReason,
): Promise<string> {
  await opts.budget?.beforeSubmit();
  const input = await makeInput(await submissionFor(deps, opts, generation, deps.gpuJobs.attempts));
  const ctx = Context.current();
  // Sized to the work, not the endpoint's default (10 minutes): setup, a whole segment, wrap-up.
  const executionTimeout = Math.round((deps.gpuJobs.setupSeconds + deps.gpuJobs.segmentSeconds) * 1000) + WRAP_UP_MS;
  const gpuJobId = await endpoint.client
    .submit(input, { policy: { executionTimeout, ttl: executionTimeout + QUEUE_ALLOWANCE_MS }, ...(deps.gpuJobs.completionWebhook ? { webhook: deps.gpuJobs.completionWebhook.url } : {}) }, { sleep: (ms) => (keepAlive(), ctx.sleep(ms)), onRetry: (_what, attempt, error) => log.warn('RunPod /run failed; retrying', { attempt, error: String(error) }) })
    .catch((err: unknown) => {
      if (!(err instanceof RunpodPayloadTooLarge)) throw err;
      const images = 'images' in input ? input.images.length : 0;
      throw ApplicationFailure.nonRetryable(`the GPU job input is ${(err.bytes / 1e6).toFixed(1)} MB, over RunPod's 10 MB limit for /run (${images} images)`, 'GpuPayloadTooLarge');
    });
  log.info('GPU job submitted', { gpuJobId, generation, stage: opts.stage, endpointId: endpoint.id });
  // Every job of the run is recorded: a failed or cancelled pipeline stops them all (cleanup.ts).
  await record(deps, opts, gpuJobId, generation, endpoint.id, moved);
  return gpuJobId;
}

/**
 * The endpoint no longer knows the job (its result was purged, or its TTL ran out): the result it
 * left in S3 is read instead; without one, the job counts as lost and the next generation resumes
 * from the last checkpoint.
 */
async function lostJob(deps: ActivityDeps, opts: StageKeys, gpuJobId: string, generation: number): Promise<RunpodJobStatus> {
  const output = await storedResult(deps, opts, generation);
  const seenAt = new Date().toISOString();
  if (output !== undefined) {
    log.warn('the endpoint no longer has the GPU job; using the result it stored', { gpuJobId });
    const seconds = (output as { metrics?: { seconds?: Record<string, number> } }).metrics?.seconds;
    const executionMs = seconds ? Math.round(Object.values(seconds).reduce((a, b) => a + b, 0) * 1000) : undefined;
    await recordFinal(deps, opts.runKey, gpuJobId, { gpuJobId, status: 'COMPLETED', ...(executionMs !== undefined ? { executionMs } : {}), seenAt, timing: executionMs !== undefined ? 'worker' : 'unknown' });
    return { id: gpuJobId, status: 'COMPLETED', output, delayTime: undefined, executionTime: executionMs, error: undefined, workerId: undefined };
  }
  log.warn('the endpoint no longer has the GPU job and it left no result; continuing from the last checkpoint', { gpuJobId });
  await recordFinal(deps, opts.runKey, gpuJobId, { gpuJobId, status: 'PURGED', seenAt, timing: 'unknown' });
  return { id: gpuJobId, status: 'PURGED', error: `[TRANSIENT] GPU job ${gpuJobId} disappeared from the endpoint (result purged or job expired) before its result was read`, delayTime: undefined, executionTime: undefined, workerId: undefined };
}

/** A cancelled pipeline must not leave its GPU job running. The activity is already cancelled:
 * the retries wait on plain timers, not ctx.sleep; what cannot be confirmed here, the run's
 * cleanup and then the janitor keep trying. */
export async function cancelGpuJob(deps: Pick<ActivityDeps, 'runpod' | 'storage'>, runKey: string, gpuJobId: string): Promise<boolean> {
  try {
    const outcome = await deps.runpod.cancelJob(gpuJobId, { onRetry: () => Context.current().heartbeat() });
    log.info(outcome === 'not-found' ? 'GPU job to cancel is no longer known to the endpoint' : `GPU job ${outcome}`, { gpuJobId });
    if (outcome === 'not-found') await recordFinal(deps, runKey, gpuJobId, { gpuJobId, status: 'PURGED', seenAt: new Date().toISOString(), timing: 'unknown' });
    else await recordFinal(deps, runKey, gpuJobId, { ...timingOf(await deps.runpod.status(gpuJobId).catch(() => ({ id: gpuJobId, status: outcome === 'cancelled' ? 'CANCELLED' : 'COMPLETED' }) as RunpodJobStatus)), seenAt: new Date().toISOString(), timing: 'endpoint' });
    return true;
  } catch (err) {
    log.warn('could not confirm the GPU job was cancelled; cleanup will try again', { gpuJobId, error: String(err) });
    return false;
  }
}
