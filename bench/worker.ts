// The Temporal worker the benchmarks run, in its own process so /proc gives its RSS and CPU alone.
// It is worker.ts with the same workflows, activities and options, plus a fetch wrapper that
// counts RunPod API calls by operation and HTTP status. The parent asks for the counts over IPC.
// BENCH_MAX_ACTIVITIES and BENCH_MAX_CACHED_WORKFLOWS override maxConcurrentActivityTaskExecutions
// and maxCachedWorkflows (unset: what worker.ts uses, LORAFLOW_MAX_ACTIVITIES and
// LORAFLOW_MAX_CACHED_WORKFLOWS). BENCH_STATUS_PER_STAGE=1 is the baseline of the scale benchmark:
// every waiting stage long-polls on its own, without the shared poller. BENCH_HEARTBEAT_THROTTLE
// (e.g. "10 seconds") overrides worker.ts's maxHeartbeatThrottleInterval of 2 s.
// One difference from worker.ts: GPU stages get as many slots as activities (BENCH_MAX_GPU_JOBS
// overrides), not LORAFLOW_MAX_GPU_JOBS, because the scale benchmark measures 1,000 pipelines each
// waiting on its own GPU job; with the shipped cap of 10, the rest would wait in Temporal's queue.
import { fileURLToPath } from 'node:url';
import type { Duration } from '@temporalio/common';
import { NativeConnection } from '@temporalio/worker';
import { createWorkers } from '../lib/workers.js';
import { serveCompletionWebhook } from '../lib/completion-webhook.js';
import { activityDepsFrom, createActivities } from '../activities/index.js';
import { loadConfig } from '../lib/config.js';
import { RunpodClient } from '../lib/runpod-client.js';

export interface CallCounts {
  /** e.g. "status 200": count */
  byOp: Record<string, number>;
  total: number;
  /** Each endpoint's shared status poller: its budget and what it sent (EndpointRouter.pollerStats). */
  pollers?: unknown[];
  /** process.memoryUsage() when asked: how the RSS splits into V8 heap, external and the rest (native). */
  memory?: NodeJS.MemoryUsage;
}

const counts: CallCounts = { byOp: {}, total: 0 };

const countingFetch: typeof fetch = async (input, init) => {
  const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
  // …/v2/{endpoint}/{op}[/{id}][?query]
  const op = new URL(url).pathname.split('/')[3] ?? 'unknown';
  try {
    const res = await fetch(input, init);
    const key = `${op} ${res.status}`;
    counts.byOp[key] = (counts.byOp[key] ?? 0) + 1;
    counts.total++;
    return res;
  } catch (err) {
    const key = `${op} error`;
    counts.byOp[key] = (counts.byOp[key] ?? 0) + 1;
    counts.total++;
    throw err;
  }
};

async function run() {
  const config = loadConfig();
  const connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  const maxActivities = process.env.BENCH_MAX_ACTIVITIES ? Number(process.env.BENCH_MAX_ACTIVITIES) : config.LORAFLOW_MAX_ACTIVITIES;
  const maxCachedWorkflows = process.env.BENCH_MAX_CACHED_WORKFLOWS ? Number(process.env.BENCH_MAX_CACHED_WORKFLOWS) : config.LORAFLOW_MAX_CACHED_WORKFLOWS;
  const client = RunpodClient.fromConfig(config, countingFetch);
  const deps = activityDepsFrom(config, { runpod: client });
  if (process.env.BENCH_STATUS_PER_STAGE === '1') {
    // The baseline: each waiting stage holds its own long-poll, as before the shared poller; a
    // failed one waits out the poll interval before the next, as that loop did.
    deps.runpod.watch = (id) =>
      client.waitForStatus(id, config.LORAFLOW_STATUS_WAIT_MS).catch(async (err: unknown) => {
        await new Promise((r) => setTimeout(r, config.LORAFLOW_POLL_MS));
        throw err;
      });
  }
  // As worker.ts: RunPod's completion webhook where LORAFLOW_RUNPOD_WEBHOOK_URL is set.
  const hook = deps.gpuJobs.completionWebhook;
  if (hook) await serveCompletionWebhook(hook, (id) => deps.runpod.nudge(id));
  const worker = await createWorkers({
    connection,
    namespace: config.TEMPORAL_NAMESPACE,
    taskQueue: config.LORAFLOW_TASK_QUEUE,
    workflowsPath: fileURLToPath(new URL('../workflows/index.ts', import.meta.url)),
    // The worker's own dependencies, with a RunPod client whose requests are counted.
    activities: createActivities(deps),
    maxHeartbeatThrottleInterval: (process.env.BENCH_HEARTBEAT_THROTTLE as Duration | undefined) ?? '2 seconds',
    ...(maxActivities ? { maxConcurrentActivityTaskExecutions: maxActivities } : {}),
    // The benchmarks measure orchestration at scale: GPU stages are not capped below the activity slots.
    maxGpuJobs: process.env.BENCH_MAX_GPU_JOBS ? Number(process.env.BENCH_MAX_GPU_JOBS) : maxActivities || config.LORAFLOW_MAX_ACTIVITIES,
    // As worker.ts: LORAFLOW_MAX_CACHED_WORKFLOWS where set, else the SDK's default.
    ...(maxCachedWorkflows !== undefined ? { maxCachedWorkflows } : {}),
  });
  process.on('message', (msg: unknown) => {
    if (msg === 'counts') process.send?.({ counts: { ...counts, byOp: { ...counts.byOp }, pollers: deps.runpod.pollerStats(), memory: process.memoryUsage() } });
    if (msg === 'stop') worker.shutdown();
  });
  process.send?.({ ready: true });
  await worker.run();
  await connection.close();
  process.exit(0);
}

run().catch((err) => {
  console.error(err);
  process.exit(1);
});
