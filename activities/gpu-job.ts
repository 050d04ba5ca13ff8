// Runs one GPU job on the RunPod endpoint and waits for it, durably:
// the job id goes into the activity's heartbeat details the moment /run returns, so a retried
// attempt (worker crash, timeout) resumes polling that job instead of paying for a second one.
// Cancelling the activity cancels the RunPod job before the cancellation is reported.
import { ApplicationFailure, CancelledFailure, Context, log } from '@temporalio/activity';
import type { z } from 'zod';
import { GpuErrorClass, GpuProgress, type GpuJobInput } from '../contract/gpu-job.js';
import type { GpuProgressSignal } from '../contract/pipeline.js';
import { RunpodJobNotFound, type RunpodJobStatus } from '../lib/runpod-client.js';
import { gpuProgressSignal } from '../workflows/definitions.js';
import type { ActivityDeps } from './deps.js';

export interface GpuHeartbeat {
  gpuJobId: string;
  gpuStatus?: string;
  progress?: GpuProgress;
}

const SIGNAL_EVERY_MS = 5_000;

export async function runGpuJob<T>(
  deps: ActivityDeps,
  makeInput: () => Promise<GpuJobInput>,
  outputSchema: z.ZodType<T>,
): Promise<{ gpuJobId: string; output: T }> {
  const ctx = Context.current();
  const recorded = ctx.info.heartbeatDetails as GpuHeartbeat | undefined;
  const resumable = recorded?.gpuJobId && (await isResumable(deps, recorded.gpuJobId)) ? recorded.gpuJobId : undefined;
  const gpuJobId = resumable ?? (await deps.runpod.run(await makeInput())).id;
  log.info(resumable ? 'resuming GPU job from an earlier attempt' : 'GPU job submitted', { gpuJobId });
  ctx.heartbeat({ gpuJobId } satisfies GpuHeartbeat);

  const reporter = progressReporter(gpuJobId);
  try {
    for (;;) {
      const status = await pollOnce(deps, gpuJobId);
      if (status) {
        const progress = GpuProgress.safeParse(status.output);
        const beat: GpuHeartbeat = { gpuJobId, gpuStatus: status.status, progress: progress.success ? progress.data : undefined };
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
      await deps.runpod.cancel(gpuJobId).then(
        () => log.info('GPU job cancelled with its activity', { gpuJobId }),
        (cancelErr: unknown) => log.warn('could not cancel GPU job', { gpuJobId, error: String(cancelErr) }),
      );
    }
    throw err;
  }
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
  const tagged = /^\[(OOM|INPUT|TRANSIENT|INTERNAL)\] ([\s\S]*)$/.exec(text);
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
function progressReporter(gpuJobId: string) {
  let lastSent = 0;
  let lastStatus = '';
  return async (beat: GpuHeartbeat) => {
    const now = Date.now();
    if (beat.gpuStatus === lastStatus && now - lastSent < SIGNAL_EVERY_MS) return;
    lastSent = now;
    lastStatus = beat.gpuStatus ?? '';
    const execution = Context.current().info.workflowExecution;
    if (!execution) return;
    const signal: GpuProgressSignal = { gpuJobId, gpuStatus: lastStatus, ...beat.progress };
    try {
      await Context.current().client.workflow.getHandle(execution.workflowId, execution.runId).signal(gpuProgressSignal, signal);
    } catch (err) {
      log.debug('progress signal not delivered', { error: String(err) });
    }
  };
}
