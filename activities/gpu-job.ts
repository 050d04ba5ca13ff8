// Runs one GPU job on the RunPod endpoint and waits for it, durably:
// the job id goes into the activity's heartbeat details the moment /run returns, so a retried
// attempt (worker crash, timeout) resumes polling that job instead of paying for a second one;
// a write-once claim in S3 covers the moment before that heartbeat (see GpuJobOptions).
// Cancelling the activity cancels the RunPod job before the cancellation is reported.
import { ApplicationFailure, CancelledFailure, Context, log } from '@temporalio/activity';
import type { z } from 'zod';
import { GpuErrorClass, GpuProgress, type GpuJobInput } from '../contract/gpu-job.js';
import type { GpuProgressSignal } from '../contract/pipeline.js';
import { RunpodJobNotFound, type RunpodJobStatus } from '../lib/runpod-client.js';
import { gpuProgressSignal } from '../workflows/definitions.js';
import { exists, getJson, presignPutIfAbsent } from '../lib/s3.js';
import type { ActivityDeps } from './deps.js';

export interface GpuHeartbeat {
  gpuJobId: string;
  /** Counts deliberate resubmissions (after a transient failure); each has its own claim. */
  generation: number;
  gpuStatus?: string;
  progress?: GpuProgress;
}

const SIGNAL_EVERY_MS = 5_000;

export interface GpuJobOptions {
  /**
   * S3 prefix for write-once claims. The worker claims `<prefix>/<generation>.json` before any GPU
   * work, so a crash between `/run` returning and the first heartbeat cannot pay for two jobs:
   * the next attempt finds the claim and polls its owner, and a duplicate stops at once (CLAIMED).
   */
  claimPrefix?: string;
}

export async function runGpuJob<T>(
  deps: ActivityDeps,
  makeInput: (claimUrl?: string) => Promise<GpuJobInput>,
  outputSchema: z.ZodType<T>,
  opts: GpuJobOptions = {},
): Promise<{ gpuJobId: string; output: T }> {
  const ctx = Context.current();
  const recorded = ctx.info.heartbeatDetails as GpuHeartbeat | undefined;
  let generation = recorded?.generation ?? 0;
  let gpuJobId: string | undefined;
  if (recorded?.gpuJobId) {
    if (await isResumable(deps, recorded.gpuJobId)) gpuJobId = recorded.gpuJobId;
    else generation++;
  }
  const claimKey = opts.claimPrefix ? `${opts.claimPrefix}/${generation}.json` : undefined;
  if (!gpuJobId && claimKey) gpuJobId = await claimOwner(deps, claimKey); // submitted by an attempt that died before its heartbeat
  if (gpuJobId) {
    log.info('resuming GPU job from an earlier attempt', { gpuJobId });
  } else {
    const claimUrl = claimKey ? await presignPutIfAbsent(deps.storage, claimKey) : undefined;
    gpuJobId = (await deps.runpod.run(await makeInput(claimUrl))).id;
    log.info('GPU job submitted', { gpuJobId });
  }
  ctx.heartbeat({ gpuJobId, generation } satisfies GpuHeartbeat);

  const reporter = progressReporter();
  try {
    for (;;) {
      const status = await pollOnce(deps, gpuJobId);
      if (status) {
        if (status.status === 'FAILED' && classify(status.error).cls === 'CLAIMED') {
          gpuJobId = await claimedElsewhere(deps, gpuJobId, claimKey);
          ctx.heartbeat({ gpuJobId, generation } satisfies GpuHeartbeat);
          continue;
        }
        const progress = GpuProgress.safeParse(status.output);
        const beat: GpuHeartbeat = { gpuJobId, generation, gpuStatus: status.status, progress: progress.success ? progress.data : undefined };
        ctx.heartbeat(beat);
        await reporter(beat);
        const done = finished(gpuJobId, status, outputSchema);
        if (done) return { gpuJobId, output: done.output };
      }
      await ctx.sleep(deps.pollIntervalMs); // rejects with CancelledFailure when cancelled
    }
  } catch (err) {
    // Only a cancel asked for by the workflow stops the GPU job. A worker shutdown or a timeout
    // leaves it running: the next attempt resumes polling it, so no GPU time is lost.
    if (err instanceof CancelledFailure && ctx.cancellationDetails?.cancelRequested) {
      const cancelled = gpuJobId;
      await deps.runpod.cancel(cancelled).then(
        () => log.info('GPU job cancelled with its activity', { gpuJobId: cancelled }),
        (cancelErr: unknown) => log.warn('could not cancel GPU job', { gpuJobId: cancelled, error: String(cancelErr) }),
      );
    }
    throw err;
  }
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
    // Only if the answer to our own claim write was lost: retry as a new generation.
    throw ApplicationFailure.retryable(`GPU job ${gpuJobId} could not confirm its claim on this training`, 'GpuClaimUnconfirmed');
  }
  log.info('another GPU job holds the claim on this training; following it', { gpuJobId, owner });
  return owner;
}

/** A job recorded by an earlier attempt is resumed unless it already failed for a transient reason. */
async function isResumable(deps: ActivityDeps, gpuJobId: string): Promise<boolean> {
  const status = await deps.runpod.status(gpuJobId).catch((err: unknown) => {
    if (err instanceof RunpodJobNotFound) {
      throw ApplicationFailure.nonRetryable(
        `GPU job ${gpuJobId} from an earlier attempt is no longer known to the endpoint (results are purged after completion); not submitting a second one`,
        'GpuJobLost',
      );
    }
    throw err;
  });
  return !(status.status === 'FAILED' && classify(status.error).cls === 'TRANSIENT');
}

/** One status call; transport errors and 5xx are logged and retried on the next tick. */
async function pollOnce(deps: ActivityDeps, gpuJobId: string): Promise<RunpodJobStatus | undefined> {
  try {
    return await deps.runpod.status(gpuJobId);
  } catch (err) {
    if (err instanceof RunpodJobNotFound) {
      throw ApplicationFailure.nonRetryable(`GPU job ${gpuJobId} disappeared from the endpoint`, 'GpuJobLost');
    }
    log.warn('GPU status poll failed; will retry', { gpuJobId, error: err instanceof Error ? err.message : String(err) });
    return undefined;
  }
}

function finished<T>(gpuJobId: string, status: RunpodJobStatus, schema: z.ZodType<T>): { output: T } | undefined {
  switch (status.status) {
    case 'COMPLETED': {
      const parsed = schema.safeParse(status.output);
      if (!parsed.success) {
        throw ApplicationFailure.nonRetryable(
          `GPU job ${gpuJobId} reported COMPLETED without a valid result: ${parsed.error.issues[0]?.path.join('.')}: ${parsed.error.issues[0]?.message}`,
          'GpuOutputInvalid',
        );
      }
      return { output: parsed.data };
    }
    case 'FAILED':
    case 'TIMED_OUT': {
      const { cls, message } = classify(status.error ?? status.status);
      throw ApplicationFailure.create({
        message: `GPU job ${gpuJobId} ${status.status === 'TIMED_OUT' ? 'timed out' : 'failed'}: ${message}`,
        type: `Gpu${cls}`,
        nonRetryable: cls !== 'TRANSIENT',
      });
    }
    case 'CANCELLED':
      throw ApplicationFailure.nonRetryable(`GPU job ${gpuJobId} was cancelled outside loraflow`, 'GpuJobCancelled');
    default:
      return undefined;
  }
}

/** "[CLASS] message" from the worker; anything else (crashes, SDK tracebacks) is INTERNAL. */
export function classify(error: unknown): { cls: GpuErrorClass; message: string } {
  const text = typeof error === 'string' ? error : JSON.stringify(error ?? 'unknown error');
  const tagged = /^\[(OOM|INPUT|TRANSIENT|INTERNAL|CLAIMED)\] ([\s\S]*)$/.exec(text);
  if (tagged) return { cls: GpuErrorClass.parse(tagged[1]), message: redact(tagged[2]!) };
  try {
    const sdk = JSON.parse(text) as { error_message?: string; error_type?: string };
    if (sdk.error_message) return { cls: 'INTERNAL', message: redact(`${sdk.error_type ?? 'error'}: ${sdk.error_message}`) };
  } catch {
    // not the SDK's JSON form
  }
  return { cls: 'INTERNAL', message: redact(text) };
}

/** Presigned URLs must never reach history or logs: keep scheme, host and path only. */
export const redact = (text: string) => text.replace(/(https?:\/\/[^\s?"']+)\?[^\s"']*/g, '$1?<redacted>');

/** Sends progress to the workflow (for its `progress` query) on status changes and every few seconds. */
function progressReporter() {
  let lastSent = 0;
  let lastStatus = '';
  return async (beat: GpuHeartbeat) => {
    const now = Date.now();
    if (beat.gpuStatus === lastStatus && now - lastSent < SIGNAL_EVERY_MS) return;
    lastSent = now;
    lastStatus = beat.gpuStatus ?? '';
    const execution = Context.current().info.workflowExecution;
    if (!execution) return;
    const signal: GpuProgressSignal = { gpuJobId: beat.gpuJobId, gpuStatus: lastStatus, ...beat.progress };
    try {
      await Context.current().client.workflow.getHandle(execution.workflowId, execution.runId).signal(gpuProgressSignal, signal);
    } catch (err) {
      log.debug('progress signal not delivered', { error: String(err) });
    }
  };
}
