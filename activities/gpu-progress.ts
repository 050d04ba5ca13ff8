// What a GPU stage tells its workflow while it waits: the job's status read together with the
// endpoint's health, so a pipeline says "waiting for GPU capacity" or "cold-starting" instead of
// a bare IN_QUEUE, sent as a signal (the `progress` query then answers without any I/O).
import { Context, log } from '@temporalio/activity';
import type { GpuProgress } from '../contract/gpu-job.js';
import type { GpuProgressSignal, GpuState } from '../contract/pipeline.js';
import type { RunpodHealth } from '../lib/runpod-client.js';
import { gpuProgressSignal } from '../workflows/definitions.js';
import type { ActivityDeps } from './deps.js';

/** A GPU stage's heartbeat details: what a retried attempt resumes from. */
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

/** Unchanged progress is re-sent at most this often (a changed status or state goes at once). */
const SIGNAL_EVERY_MS = 5_000;
/** The endpoint's health is read at most this often while a job waits. */
const HEALTH_EVERY_MS = 2_000;

/**
 * Sends progress to the workflow on changes of status or state and every few seconds. Never
 * throws: reporting must not disturb the job it reports on.
 */
export function progressReporter(deps: Pick<ActivityDeps, 'runpod'>) {
  let lastSent = 0;
  let lastKey = '';
  let health: { at: number; value?: RunpodHealth } = { at: 0 };
  return async (beat: GpuHeartbeat, lostWith?: string) => {
    try {
      const waiting = !beat.gpuJobId || beat.gpuStatus === 'IN_QUEUE';
      if (waiting && Date.now() - health.at >= HEALTH_EVERY_MS) {
        health = { at: Date.now(), value: await deps.runpod.health().catch(() => undefined) };
      }
      const { gpuState, gpuDetail } = gpuStateOf(beat, waiting ? health.value : undefined, lostWith);
      const now = Date.now();
      const key = `${beat.gpuJobId}|${beat.gpuStatus}|${gpuState}|${gpuDetail}`;
      if (key === lastKey && now - lastSent < SIGNAL_EVERY_MS) return;
      lastSent = now;
      lastKey = key;
      const execution = Context.current().info.workflowExecution;
      if (!execution) return; // not run by a workflow (MockActivityEnvironment)
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
