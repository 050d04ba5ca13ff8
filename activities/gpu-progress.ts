// What a GPU stage tells its workflow while it waits: the job's status read together with the
// endpoint's state (its /health, and the REST API's max workers and worker states), so a pipeline
// says "waiting for GPU capacity" or "cold-starting" instead of a bare IN_QUEUE. Sent as a signal
// only when that state changes, so a day-long training adds a handful of events to history, not
// one every few seconds; step and loss travel in the activity's heartbeat, which `loraflow
// status` reads (cli/inspect.ts).
import { Context, log } from '@temporalio/activity';
import type { GpuProgress } from '../contract/gpu-job.js';
import type { GpuProgressSignal, GpuState } from '../contract/pipeline.js';
import type { RunpodEndpointConfig, RunpodHealth, RunpodWorkers } from '../lib/runpod-client.js';
import { gpuProgressSignal } from '../workflows/definitions.js';
import type { ActivityDeps } from './deps.js';

/** A GPU stage's heartbeat details: what a retried attempt resumes from, and its live progress. */
export interface GpuHeartbeat {
  /** Absent between a failed job and the next submission. */
  gpuJobId?: string;
  /** Each submission of this activity's work is a generation, with its own claim and checkpoint. */
  generation: number;
  /** Failures in a row (no progress between them). */
  failures: number;
  /** The step the last segment reached. */
  lastStep?: number;
  gpuStatus?: string;
  /** The job is queued again after it ran: the service retries it after its worker was lost. */
  retried?: boolean;
  progress?: GpuProgress;
  /** The endpoint the stage is on (LORAFLOW_ENDPOINTS), and why it left the one before. */
  endpointId?: string;
  moved?: { from: string; gpuJobId?: string; reason: string };
  /** The endpoint whose GPU slots are all held (by every worker's stages): this stage waits for one. */
  waitingForSlot?: string;
}

/** What is known about the endpoint while a job waits. */
export interface EndpointView {
  health?: RunpodHealth;
  config?: RunpodEndpointConfig;
  workers?: RunpodWorkers;
}

/** The endpoint is asked at most this often while a job waits (/health, and the REST API). */
const VIEW_EVERY_MS = 5_000;

/**
 * Sends progress to the workflow when its state changes (job, status, state, phase). Never
 * throws: reporting must not disturb the job it reports on.
 */
export function progressReporter(deps: { runpod: Pick<ActivityDeps['runpod'], 'health' | 'endpointConfig' | 'workers'> }, endpointId?: string, moved?: string) {
  let lastKey = '';
  let view: { at: number; value: EndpointView } = { at: 0, value: {} };
  return async (beat: GpuHeartbeat, lostWith?: string) => {
    try {
      const waiting = !beat.gpuJobId || beat.gpuStatus === 'IN_QUEUE';
      if (waiting && Date.now() - view.at >= VIEW_EVERY_MS) {
        const [health, config, workers] = await Promise.all([
          deps.runpod.health().catch(() => undefined),
          deps.runpod.endpointConfig().catch(() => undefined),
          deps.runpod.workers().catch(() => undefined),
        ]);
        view = { at: Date.now(), value: { ...(health ? { health } : {}), ...(config ? { config } : {}), ...(workers ? { workers } : {}) } };
      }
      const { gpuState, gpuDetail } = gpuStateOf(beat, waiting ? view.value : {}, lostWith);
      const key = JSON.stringify([beat.gpuJobId, beat.gpuStatus, gpuState, gpuDetail, beat.progress?.phase]);
      if (key === lastKey) return;
      lastKey = key;
      const execution = Context.current().info.workflowExecution;
      if (!execution) return; // not run by a workflow (MockActivityEnvironment)
      const signal: GpuProgressSignal = {
        ...(beat.gpuJobId ? { gpuJobId: beat.gpuJobId } : {}),
        ...(endpointId ? { gpuEndpoint: endpointId } : {}),
        ...(moved ? { gpuMoved: moved } : {}),
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
 * What a job's status means, with the endpoint's state while it waits. A job that follows a lost
 * one (failures > 0), or that the service queued again after its worker died, is "resuming" until
 * it runs. The REST API's worker states and max workers tell a cold start, a crash loop and an
 * endpoint without capacity apart; runpod-local's `diagnosis` (opt-in) adds the last failure.
 */
export function gpuStateOf(beat: Pick<GpuHeartbeat, 'gpuJobId' | 'gpuStatus' | 'failures' | 'retried'>, view: EndpointView = {}, lostWith?: string): { gpuState: GpuState; gpuDetail?: string } {
  const status = beat.gpuStatus;
  if (status === 'IN_PROGRESS' || status === 'RUNNING') return { gpuState: 'running' };
  if (status && status !== 'IN_QUEUE') return { gpuState: 'finished' };
  const { health, config, workers } = view;
  const failure = lostWith ?? health?.diagnosis?.lastWorkerFailure;
  if (!beat.gpuJobId || beat.failures > 0) return { gpuState: 'resuming', ...(failure ? { gpuDetail: failure } : {}) };
  if (beat.retried) return { gpuState: 'resuming', gpuDetail: failure ?? 'the endpoint is running the job again after its worker was lost' };
  const max = config?.workers?.max;
  if (max === 0) return { gpuState: 'waiting-for-capacity', gpuDetail: 'endpoint has no workers allowed (max workers 0)' };
  switch (health?.diagnosis?.queue) {
    case 'workers-crashing':
      return { gpuState: 'worker-crashing', ...(failure ? { gpuDetail: failure } : {}) };
    case 'no-workers':
      return { gpuState: 'waiting-for-capacity', gpuDetail: 'no workers available' };
  }
  const summary = workers?.summary;
  const running = summary?.running ?? health?.workers.running ?? 0;
  const idle = summary?.idle ?? health?.workers.idle ?? 0;
  if (summary && summary.unhealthy > 0) return { gpuState: 'worker-crashing', gpuDetail: failure ?? `${summary.unhealthy} unhealthy workers` };
  if (summary && summary.initializing > 0) return { gpuState: 'cold-starting' };
  if (summary && summary.throttled > 0) return { gpuState: 'waiting-for-capacity', gpuDetail: `no GPU free for ${summary.throttled} throttled workers` };
  if (running > 0 && idle === 0) return { gpuState: 'waiting-for-capacity', gpuDetail: max !== undefined && running >= max ? `all ${running} workers busy` : `${running} workers busy` };
  if (health?.diagnosis?.queue === 'cold-starting') return { gpuState: 'cold-starting' };
  return { gpuState: 'queued' };
}
