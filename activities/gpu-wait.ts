// Waiting on one GPU job: the endpoint's shared poller answers when its status changes (or after a
// tick), and each answer is heartbeated when new, reported as progress, checked against the
// run's budget, the endpoint's queue limit and the GPU slot's lease. Keep-alive heartbeats go on
// meanwhile (they carry a cancel back to the activity), paced by lib/keep-alive.ts.
import { ApplicationFailure, CancelledFailure, Context, log } from '@temporalio/activity';
import { GpuProgress } from '../contract/gpu-job.js';
import { isFinalState, isRunningState, RunpodJobNotFound, type RunpodJobStatus } from '../lib/runpod-client.js';
import type { ActivityDeps, GpuEndpoint } from './deps.js';
import type { GpuHeartbeat, progressReporter } from './gpu-progress.js';
import { type GpuSlot, RENEW_EVERY_MS } from './gpu-slots.js';
import { recordFinal } from './gpu-records.js';
import { timingOf } from './gpu-result.js';
import type { BudgetGuard } from './usage.js';

/** How often a queued job's endpoint is asked whether it allows any worker (the REST API). */
const WORKERS_CHECK_MS = 10_000;

/** waitUntilFinished's answer for a job that should leave its endpoint's queue. */
export class MoveOn {
  constructor(readonly reason: string) {}
}

/** The REST API says the endpoint may start no worker (an endpoint scaled to 0 after idle days). */
export async function allowsNoWorkers(endpoint: GpuEndpoint): Promise<boolean> {
  const config = await endpoint.client.endpointConfig().catch(() => undefined);
  return config?.workers?.max === 0;
}

/** Waits until the job is final, heartbeating and reporting progress; undefined when the endpoint no longer knows it. */
export async function waitUntilFinished(
  deps: ActivityDeps,
  runKey: string,
  gpuJobId: string,
  start: GpuHeartbeat,
  reporter: ReturnType<typeof progressReporter>,
  budget?: Awaited<ReturnType<BudgetGuard['forJob']>>,
  queueLimit?: { endpoint: GpuEndpoint; waitMs: number },
  slot?: GpuSlot,
): Promise<RunpodJobStatus | undefined | MoveOn> {
  const ctx = Context.current();
  let last: GpuHeartbeat = start;
  let lastKey = JSON.stringify(last);
  // Each heartbeat is an RPC the Temporal server pays for: new details go at once, the same ones
  // only as a keep-alive, at the pace set for this process's waiting stages (lib/keep-alive.ts).
  let beatAt = 0;
  const heartbeat = (h: GpuHeartbeat) => {
    ctx.heartbeat(h);
    beatAt = Date.now();
  };
  // Half the pace: a timer tick just short of a full interval still sends (never two intervals apart).
  const keepAlive = () => Date.now() - beatAt >= deps.gpuJobs.keepAlive.everyMs() / 2 && heartbeat(last);
  let runningSince: number | undefined;
  let seenRunning = false;
  const queuedSince = Date.now();
  let renewedAt = Date.now();
  let askedWorkersAt = 0;
  /** The last status read: the endpoint's poller wakes this stage when the job's differs. */
  let seen: RunpodJobStatus | undefined;
  for (;;) {
    if (slot && Date.now() - renewedAt > RENEW_EVERY_MS) {
      renewedAt = Date.now();
      await slot.renew();
    }
    const asked = Date.now();
    const status = await statusOnce(deps, gpuJobId, seen, keepAlive);
    if (status === 'lost') return undefined;
    if (status) {
      seen = status;
      const progress = GpuProgress.safeParse(status.output);
      const running = isRunningState(status.status);
      // Queued again after running: the service is retrying the job after its worker died.
      const retried = last.retried === true || (seenRunning && status.status === 'IN_QUEUE');
      seenRunning ||= running;
      const next: GpuHeartbeat = { ...start, gpuStatus: running ? 'IN_PROGRESS' : status.status, ...(progress.success ? { progress: progress.data } : {}), ...(retried && !running ? { retried } : {}) };
      const key = JSON.stringify(next);
      const changed = key !== lastKey;
      [last, lastKey] = [next, key];
      if (changed) heartbeat(last);
      else keepAlive();
      await reporter(last);
      if (status.status === 'CANCELLED') throw ApplicationFailure.nonRetryable(`GPU job ${gpuJobId} was cancelled outside loraflow`, 'GpuJobCancelled');
      if (isFinalState(status.status)) {
        await recordFinal(deps, runKey, gpuJobId, { ...timingOf(status), seenAt: new Date().toISOString(), timing: 'endpoint', ...(status.error ? { error: status.error } : {}) });
        return status;
      }
      // Never taken by a worker: past the limit, or where no worker may start, the job moves on.
      if (queueLimit && !seenRunning && status.status === 'IN_QUEUE') {
        const waitedMs = Date.now() - queuedSince;
        if (waitedMs > queueLimit.waitMs) return new MoveOn(`queued ${Math.round(waitedMs / 1000)} s for capacity on ${queueLimit.endpoint.id} (limit ${Math.round(queueLimit.waitMs / 1000)} s)`);
        if (Date.now() - askedWorkersAt > WORKERS_CHECK_MS) {
          askedWorkersAt = Date.now();
          if (await allowsNoWorkers(queueLimit.endpoint)) return new MoveOn(`${queueLimit.endpoint.id} allows no workers (max workers 0)`);
        }
      }
      // The endpoint's executionTime is the billed clock; our own count is the fallback.
      if (running) runningSince ??= asked;
      if (runningSince !== undefined) budget?.check(Math.max(status.executionTime ?? 0, Date.now() - runningSince));
    }
    // No sleep here: the endpoint's poller paces the requests, and answers at the latest after a tick.
  }
}

/**
 * The job's next status from the endpoint's shared poller (activities/deps.ts, lib/status-poller.ts):
 * as soon as its state or progress differs from `since`, else after one tick (the long-poll's
 * length, or the poll interval) with the latest known, so budget, queue and slot checks still run.
 * Heartbeats go on while it waits, so cancellation still reaches the activity. Transport errors
 * and 5xx are logged and retried by the poller; 'lost' when the endpoint no longer knows the job.
 */
async function statusOnce(deps: ActivityDeps, gpuJobId: string, since: RunpodJobStatus | undefined, keepAlive: () => void): Promise<RunpodJobStatus | 'lost' | undefined> {
  const ctx = Context.current();
  // Heartbeats go on while the status is awaited, so cancellation still reaches the activity;
  // their pace follows how many stages of this process wait (nearly all of their time is here).
  const left = deps.gpuJobs.keepAlive.enter();
  const timer = setInterval(keepAlive, deps.gpuJobs.keepAlive.everyMs());
  const tickMs = Math.max(deps.gpuJobs.statusWaitMs, deps.gpuJobs.pollIntervalMs);
  try {
    return await Promise.race([deps.runpod.watch(gpuJobId, since, { maxWaitMs: tickMs, signal: ctx.cancellationSignal }), ctx.cancelled]);
  } catch (err) {
    if (err instanceof CancelledFailure) throw err;
    if (err instanceof RunpodJobNotFound) return 'lost';
    log.warn('GPU status poll failed; will retry', { gpuJobId, error: err instanceof Error ? err.message : String(err) });
    return undefined;
  } finally {
    clearInterval(timer);
    left();
  }
}
