// Item 3: N concurrent pipelines held in the train stage against long GPU jobs (the handler
// sleeps) on one Temporal worker: worker RSS and CPU, Temporal server RSS, RunPod calls per second.
// The GPU jobs are held by a few Python worker processes running the async bench handler with a
// high per-worker concurrency (the SDK's concurrency_modifier). During the window a few chosen
// jobs are finished (a file the handler watches): how long until their workflow noticed, and
// runpod-local's own counts of the endpoint's status requests against RunPod's limits.
import { randomUUID } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loopbackWebhookEnv } from '../testkit/services.js';
import { makeDataset } from '../testkit/datasets.js';
import { progressQuery } from '../workflows/definitions.js';
import { trainLora } from '../workflows/index.js';
import { request, trainActivity } from './pipelines.js';
import { callsOf, descendants, diffCounts, percentile, pool, procSample, round, sampler, sleep, startBenchStack } from './lib.js';

const HANDLER = 'test/fixtures/bench_gpu_handler.py';

/** How far a chosen training ends from the ETA it reported (as real step times vary). */
const ETA_JITTER_MS = 2_000;

export async function benchScale(o: {
  n: number;
  windowSeconds: number;
  maxActivities?: number;
  maxCachedWorkflows?: number;
  finish?: number;
  perStage?: boolean;
  /** Trainings report an ETA, as the real trainer does; chosen ones end at it (± ETA_JITTER_MS), not unannounced. */
  eta?: boolean;
  /** The worker serves RunPod's completion webhook (LORAFLOW_RUNPOD_WEBHOOK_URL) and every job names it. */
  webhook?: boolean;
  log: (m: string) => void;
}) {
  const gpuWorkers = Math.max(1, Math.ceil(o.n / 250));
  const finishDir = path.join(os.tmpdir(), `bench-finish-${randomUUID()}`);
  mkdirSync(finishDir, { recursive: true });
  const stack = await startBenchStack({
    handler: HANDLER,
    gpuWorkers,
    // One job per pipeline, all at once; jobs run far longer than the measurement.
    workerEnv: { BENCH_CONCURRENCY: String(Math.ceil(o.n / gpuWorkers) + 10), BENCH_FINISH_DIR: finishDir, ...(o.eta ? { BENCH_ETA: '1' } : {}) },
    runpodExtra: { concurrency: Math.ceil(o.n / gpuWorkers) + 10, executionTimeoutMs: 0 },
    ...(o.maxActivities ? { maxActivities: o.maxActivities } : {}),
    ...(o.maxCachedWorkflows ? { maxCachedWorkflows: o.maxCachedWorkflows } : {}),
    // Every pipeline holds a GPU job at once: the endpoint's lease (LORAFLOW_MAX_GPU_JOBS, 10 by default) is not the subject here.
    env: { LORAFLOW_MAX_GPU_JOBS: String(o.n + 50), ...(o.perStage ? { BENCH_STATUS_PER_STAGE: '1' } : {}), ...(o.webhook ? await loopbackWebhookEnv() : {}) },
    log: o.log,
  });
  try {
    const dataset = await makeDataset(path.join(stack.dir, 'dataset'), { images: 2, captioned: 2 });
    const idle = { worker: procSample(stack.worker!.pid), temporal: procSample(stack.temporal.pid) };
    const req = request(dataset, { steps: 3600, msPerStep: 1000 }); // an hour per job

    const startedAt = Date.now();
    const workflowIds = Array.from({ length: o.n }, () => `scale-${randomUUID()}`);
    await pool(workflowIds, 50, async (workflowId) => stack.client.workflow.start(trainLora, { taskQueue: stack.taskQueue, workflowId, args: [req] }));
    const startSeconds = (Date.now() - startedAt) / 1000;
    o.log(`scale: ${o.n} workflows started in ${startSeconds.toFixed(1)} s`);

    // Wait until the train jobs stop growing (all submitted, or the worker's activity slots are full).
    const trainJobs = () => stack.runpod.ledger().filter((e) => e.task === 'train');
    let last = -1;
    let stableSince = Date.now();
    const deadline = Date.now() + 6 * 60_000;
    while (Date.now() < deadline) {
      const count = trainJobs().length;
      if (count !== last) {
        last = count;
        stableSince = Date.now();
        o.log(`scale: ${count} train jobs submitted`);
      }
      // Stable means the ramp is over only once some train jobs exist: on a loaded machine the
      // first ones take a while behind ingest and caption.
      if (count >= o.n || (count > 0 && Date.now() - stableSince > 15_000)) break;
      await sleep(2_000);
    }
    const rampSeconds = (Date.now() - startedAt) / 1000;
    // Long enough for every stage's first status (and its progress signal) to arrive.
    await sleep(10_000);

    // The measurement window: steady state with every pipeline parked in train.
    const gpuPids = descendants(process.pid).filter((p) => p !== stack.worker!.pid && p !== stack.temporal.pid);
    const samplers = { worker: sampler(stack.worker!.pid), temporal: sampler(stack.temporal.pid), benchProcess: sampler(process.pid) };
    // Pipelines spread over the start order whose train job runs: finished one by one in the window.
    const finishN = Math.min(o.finish ?? 40, o.n);
    const picks = Array.from({ length: finishN }, (_, i) => workflowIds[Math.floor((i * o.n) / finishN)]!);
    const running = new Set(trainJobs().filter((e) => e.status === 'IN_PROGRESS').map((e) => e.id));
    const chosen = (
      await pool(picks, 10, async (workflowId) => {
        const p = await stack.client.workflow.getHandle(workflowId).query(progressQuery).catch(() => undefined);
        return p?.stage === 'train' && p.gpuJobId && running.has(p.gpuJobId) ? { workflowId, gpuJobId: p.gpuJobId } : undefined;
      })
    ).filter((c) => c !== undefined);
    o.log(`scale: ${chosen.length} of ${finishN} chosen jobs will finish during the window`);
    const endpoint = stack.runpod.endpoint();
    endpoint.resetLimitStats();
    // Each chosen job's end, spread over the window; with ETAs, announced to its training first, as
    // a real training's ETA is known long before its end: the training reports it every 10 s, the
    // poller reads each job every ~7 s at 1,000 (then long-polls it, being within a minute of it).
    const planStart = Date.now() + (o.eta ? 30_000 : 0);
    const plannedAt = chosen.map((_, i) => planStart + ((i + 0.5) * o.windowSeconds * 1000) / chosen.length);
    if (o.eta) for (const [i, c] of chosen.entries()) writeFileSync(path.join(finishDir, `${c.gpuJobId}.eta`), String(plannedAt[i]! / 1000));
    await sleep(Math.max(0, planStart - Date.now()));
    const before = await stack.worker!.counts();
    const windowStart = Date.now();
    for (const [i, c] of chosen.entries()) {
      const jitter = o.eta ? (Math.random() * 2 - 1) * ETA_JITTER_MS : 0;
      await sleep(Math.max(0, plannedAt[i]! + jitter - Date.now()));
      writeFileSync(path.join(finishDir, c.gpuJobId), '');
    }
    await sleep(Math.max(0, windowStart + o.windowSeconds * 1000 - Date.now()));
    const afterCounts = await stack.worker!.counts();
    const calls = diffCounts(afterCounts, before);
    const limits = endpoint.limitStats('status');
    const stats = Object.fromEntries(Object.entries(samplers).map(([k, s]) => [k, s.stop()]));
    const pythonRssMiB = gpuPids.map((p) => procSample(p)?.rss ?? 0).reduce((a, b) => a + b, 0) / 2 ** 20;

    // When each finished job's workflow noticed: its train activity completed, its publish stage began.
    const toActivity: number[] = [];
    const toWorkflow: number[] = [];
    /** finishedAt → the endpoint first answered a status request with the final state (the poller's part). */
    const toAnswer: number[] = [];
    const noticeDeadline = Date.now() + 60_000;
    for (const c of chosen) {
      for (;;) {
        const p = await stack.client.workflow.getHandle(c.workflowId).query(progressQuery).catch(() => undefined);
        const entry = stack.runpod.ledger().find((e) => e.id === c.gpuJobId);
        const finishedAt = entry?.finishedAt;
        if (p?.stageStartedAt.publish && finishedAt) {
          toWorkflow.push((Date.parse(p.stageStartedAt.publish) - Date.parse(finishedAt)) / 1000);
          if (entry.finalAnsweredAt) toAnswer.push((Date.parse(entry.finalAnsweredAt) - Date.parse(finishedAt)) / 1000);
          const t = await trainActivity(stack, c.workflowId);
          if (t) toActivity.push((t.completedAt - Date.parse(finishedAt)) / 1000);
          break;
        }
        if (Date.now() > noticeDeadline) break;
        await sleep(500);
      }
    }

    const ledger = trainJobs();
    const byStatus: Record<string, number> = {};
    for (const e of ledger) byStatus[e.status] = (byStatus[e.status] ?? 0) + 1;
    const statusCalls = callsOf(calls, 'status') + callsOf(calls, 'status-sync');
    const throttled = Object.entries(calls.byOp).filter(([k]) => k.endsWith(' 429')).reduce((a, [, v]) => a + v, 0);
    return {
      n: o.n,
      /** The baseline: a long-poll per waiting stage (no shared poller). */
      statusPolling: o.perStage ? 'per stage (baseline)' : 'shared poller per endpoint',
      jobs: o.eta ? `trainings reporting an ETA; chosen ones end at it ± ${ETA_JITTER_MS / 1000} s` : 'no ETA; chosen ones end unannounced',
      completionWebhook: o.webhook === true,
      maxConcurrentActivityTaskExecutions: o.maxActivities ?? 'worker.ts default (LORAFLOW_MAX_ACTIVITIES, 1000; GPU stages uncapped here, see bench/worker.ts)',
      maxCachedWorkflows: o.maxCachedWorkflows ?? 'worker.ts default (SDK default, sized from memory)',
      gpuWorkerProcesses: gpuWorkers,
      startSeconds: round(startSeconds, 1),
      rampSeconds: round(rampSeconds, 1),
      trainJobsSubmitted: ledger.length,
      trainJobsByStatus: byStatus,
      /** Pipelines whose GPU job the worker is actually waiting on (the rest wait for an activity slot). */
      heldInTrain: ledger.length,
      windowSeconds: o.windowSeconds,
      worker: { ...stats.worker, idleRssMiB: round((idle.worker?.rss ?? 0) / 2 ** 20, 1) },
      temporalServer: { ...stats.temporal, idleRssMiB: round((idle.temporal?.rss ?? 0) / 2 ** 20, 1) },
      /** This process: runpod-local, S3 client, the benchmark itself. */
      benchProcess: stats.benchProcess,
      pythonGpuWorkersRssMiB: round(pythonRssMiB, 1),
      /** Worker RSS above idle per pipeline parked in train: what more pipelines would cost. */
      workerRssPerPipelineMiB: round(((stats.worker?.rssPeakMiB ?? 0) - (idle.worker?.rss ?? 0) / 2 ** 20) / Math.max(1, ledger.length), 3),
      temporalRssPerPipelineMiB: round(((stats.temporal?.rssPeakMiB ?? 0) - (idle.temporal?.rss ?? 0) / 2 ** 20) / Math.max(1, ledger.length), 3),
      /** Pipelines the worker's 1 GiB target holds at this cost per pipeline, and what this machine's free memory holds
       * at the cost per pipeline of every process together (worker, Temporal, Python GPU workers, this process). */
      extrapolated: extrapolate(o.n, ledger.length, stats, idle, pythonRssMiB),
      /** runpod-local's counts of the endpoint's /status + /status-sync requests in the window, against RunPod's limits. */
      statusLimits: limits,
      /** The worker's shared status poller per endpoint: its budget and what it sent since the start. */
      pollers: afterCounts.pollers,
      /** The worker's V8 heap, external and array buffers at the window's end (MiB): what of its RSS is JS objects. */
      workerMemoryMiB: afterCounts.memory ? Object.fromEntries(Object.entries(afterCounts.memory).map(([k, v]) => [k, round(v / 2 ** 20, 1)])) : undefined,
      /** Chosen jobs finished during the window, and how long until the pipeline noticed (s). */
      finished: { chosen: chosen.length, noticed: toWorkflow.length },
      completionNoticedSeconds: { p50: round(percentile(toWorkflow, 50)), p99: round(percentile(toWorkflow, 99)), max: round(Math.max(...toWorkflow)) },
      completionToActivitySeconds: { p50: round(percentile(toActivity, 50)), max: round(Math.max(...toActivity)) },
      /** Of that, until the endpoint first answered a status request with the final state. */
      completionToFinalAnswerSeconds: { p50: round(percentile(toAnswer, 50)), max: round(Math.max(...toAnswer)) },
      runpodCallsPerSecond: round(calls.total / o.windowSeconds, 1),
      statusCallsPerSecond: round(statusCalls / o.windowSeconds, 1),
      throttled429PerSecond: round(throttled / o.windowSeconds, 1),
      runpodCalls: calls.byOp,
      /** RunPod's documented /status limit: 2000 per 10 s per endpoint. */
      runpodStatusLimitPerSecond: 200,
      runpodStatusLimitConcurrent: 400,
      target: { workerRssMiB: 1024, statusConcurrent: 400, statusPerSecond: 200, completionNoticedP50Seconds: 1 },
    };
  } finally {
    await stack.stop();
    rmSync(finishDir, { recursive: true, force: true });
  }
}

/** What N the measured cost per parked pipeline allows: within the worker's 1 GiB, and within this machine's memory. */
function extrapolate(n: number, held: number, stats: Record<string, ReturnType<ReturnType<typeof sampler>['stop']>>, idle: Record<'worker' | 'temporal', { rss: number } | undefined>, pythonRssMiB: number) {
  const idleWorker = (idle.worker?.rss ?? 0) / 2 ** 20;
  const idleTemporal = (idle.temporal?.rss ?? 0) / 2 ** 20;
  const worker = ((stats.worker?.rssPeakMiB ?? 0) - idleWorker) / Math.max(1, held);
  const all = worker + ((stats.temporal?.rssPeakMiB ?? 0) - idleTemporal) / Math.max(1, held) + pythonRssMiB / Math.max(1, held) + (stats.benchProcess?.rssPeakMiB ?? 0) / Math.max(1, n);
  const freeMiB = os.freemem() / 2 ** 20;
  return {
    workerMiBPerPipeline: round(worker, 3),
    allProcessesMiBPerPipeline: round(all, 3),
    workerWithin1GiB: worker > 0 ? Math.floor((1024 - idleWorker) / worker) : undefined,
    machineFreeMiBAfter: round(freeMiB, 0),
    /** Pipelines more that 80 % of the memory still free would hold, at `all` each. */
    machineHoldsMore: all > 0 ? Math.floor((freeMiB * 0.8) / all) : undefined,
    workerRssAt10000MiB: round(idleWorker + worker * 10_000, 0),
  };
}
