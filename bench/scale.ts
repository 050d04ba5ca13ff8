// Item 3: N concurrent pipelines held in the train stage against long GPU jobs (the handler
// sleeps) on one Temporal worker: worker RSS and CPU, Temporal server RSS, RunPod calls per second.
// The GPU jobs are held by a few Python worker processes running the async bench handler with a
// high per-worker concurrency (the SDK's concurrency_modifier).
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { makeDataset } from '../testkit/datasets.js';
import { trainLora } from '../workflows/index.js';
import { request } from './pipelines.js';
import { callsOf, descendants, diffCounts, pool, procSample, round, sampler, sleep, startBenchStack } from './lib.js';

const HANDLER = 'test/fixtures/bench_gpu_handler.py';

export async function benchScale(o: { n: number; windowSeconds: number; maxActivities?: number; maxCachedWorkflows?: number; log: (m: string) => void }) {
  const gpuWorkers = Math.max(1, Math.ceil(o.n / 250));
  const stack = await startBenchStack({
    handler: HANDLER,
    gpuWorkers,
    // One job per pipeline, all at once; jobs run far longer than the measurement.
    workerEnv: { BENCH_CONCURRENCY: String(Math.ceil(o.n / gpuWorkers) + 10) },
    runpodExtra: { concurrency: Math.ceil(o.n / gpuWorkers) + 10, executionTimeoutMs: 0 },
    ...(o.maxActivities ? { maxActivities: o.maxActivities } : {}),
    ...(o.maxCachedWorkflows ? { maxCachedWorkflows: o.maxCachedWorkflows } : {}),
    log: o.log,
  });
  try {
    const dataset = await makeDataset(path.join(stack.dir, 'dataset'), { images: 2, captioned: 2 });
    const idle = { worker: procSample(stack.worker!.pid), temporal: procSample(stack.temporal.pid) };
    const req = request(dataset, { steps: 3600, msPerStep: 1000 }); // an hour per job

    const startedAt = Date.now();
    await pool(Array.from({ length: o.n }, (_, i) => i), 50, async () =>
      stack.client.workflow.start(trainLora, { taskQueue: stack.taskQueue, workflowId: `scale-${randomUUID()}`, args: [req] }),
    );
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
      if (count >= o.n || Date.now() - stableSince > 15_000) break;
      await sleep(2_000);
    }
    const rampSeconds = (Date.now() - startedAt) / 1000;
    await sleep(3_000);

    // The measurement window: steady state with every pipeline parked in train.
    const gpuPids = descendants(process.pid).filter((p) => p !== stack.worker!.pid && p !== stack.temporal.pid);
    const samplers = { worker: sampler(stack.worker!.pid), temporal: sampler(stack.temporal.pid), benchProcess: sampler(process.pid) };
    const before = await stack.worker!.counts();
    await sleep(o.windowSeconds * 1000);
    const calls = diffCounts(await stack.worker!.counts(), before);
    const stats = Object.fromEntries(Object.entries(samplers).map(([k, s]) => [k, s.stop()]));
    const pythonRssMiB = gpuPids.map((p) => procSample(p)?.rss ?? 0).reduce((a, b) => a + b, 0) / 2 ** 20;

    const ledger = trainJobs();
    const byStatus: Record<string, number> = {};
    for (const e of ledger) byStatus[e.status] = (byStatus[e.status] ?? 0) + 1;
    const statusCalls = callsOf(calls, 'status') + callsOf(calls, 'status-sync');
    const throttled = Object.entries(calls.byOp).filter(([k]) => k.endsWith(' 429')).reduce((a, [, v]) => a + v, 0);
    return {
      n: o.n,
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
      runpodCallsPerSecond: round(calls.total / o.windowSeconds, 1),
      statusCallsPerSecond: round(statusCalls / o.windowSeconds, 1),
      throttled429PerSecond: round(throttled / o.windowSeconds, 1),
      runpodCalls: calls.byOp,
      /** RunPod's documented /status limit: 2000 per 10 s per endpoint. */
      runpodStatusLimitPerSecond: 200,
      target: { workerRssMiB: 1024 },
    };
  } finally {
    await stack.stop();
  }
}
