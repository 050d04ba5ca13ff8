// The Temporal worker: runs the trainLora workflow and its activities on the loraflow task queue,
// and its GPU stages on loraflow-gpu (lib/workers.ts). Everything comes from the config.
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Runtime } from '@temporalio/worker';
import { activityDepsFrom } from './activities/deps.js';
import { createActivities } from './activities/index.js';
import { dataConverterFor } from './lib/codec.js';
import { serveCompletionWebhook } from './lib/completion-webhook.js';
import { loadConfig } from './lib/config.js';
import { makeLogger, temporalLogger } from './lib/logger.js';
import { ensureJanitorSchedule } from './lib/janitor-schedule.js';
import { ensureBucket, probeConditionalWrites } from './lib/s3.js';
import { connectPatiently, temporalConnectionOptions } from './lib/temporal-connection.js';
import { createWorkers } from './lib/workers.js';

async function run() {
  const config = loadConfig();
  Runtime.install({
    logger: temporalLogger(makeLogger({ name: 'loraflow-worker', level: config.LORAFLOW_LOG_LEVEL })),
    // Prometheus /metrics: the SDK's worker metrics and the pipelines' own (runs by outcome).
    ...(config.LORAFLOW_METRICS_ADDRESS
      ? { telemetryOptions: { metrics: { prometheus: { bindAddress: config.LORAFLOW_METRICS_ADDRESS, countersTotalSuffix: true } } } }
      : {}),
  });
  const deps = activityDepsFrom(config);
  if (config.LORAFLOW_CREATE_BUCKET) await ensureBucket(deps.storage);
  // Claims are write-once objects: a store that does not enforce them could pay for a training twice.
  const logger = makeLogger({ name: 'loraflow-worker', level: config.LORAFLOW_LOG_LEVEL });
  await probeConditionalWrites(deps.storage, { onUnreachable: (err, attempt) => logger.warn({ attempt, error: String(err) }, 'S3 does not answer yet; probing it again') });
  if (config.LORAFLOW_JANITOR_MINUTES > 0) {
    // Another worker creates it if this one cannot: a missing schedule is no reason not to work.
    await (async () => {
      const client = new Client({ connection: await Connection.connect(temporalConnectionOptions(config)), namespace: config.TEMPORAL_NAMESPACE, dataConverter: dataConverterFor(config) });
      await ensureJanitorSchedule(client, config.LORAFLOW_TASK_QUEUE, config.LORAFLOW_JANITOR_MINUTES).finally(() => client.connection.close());
    })().catch((err: unknown) => logger.warn({ error: String(err) }, 'the janitor schedule could not be created now'));
  }
  // RunPod's completion webhooks: an end is asked about at once, not at its turn among the waiting jobs.
  const hook = deps.gpuJobs.completionWebhook;
  if (hook) {
    const { port } = await serveCompletionWebhook(hook, (jobId) => deps.runpod.nudge(jobId));
    logger.info({ listen: hook.listen, port, path: new URL(hook.url).pathname }, 'serving the completion webhook');
  }
  const workers = await createWorkers({
    // TLS / mTLS / API key when configured; a server that is not up yet is waited for.
    connection: await connectPatiently(
      () => NativeConnection.connect(temporalConnectionOptions(config)),
      (err, attempt) => logger.warn({ attempt, address: config.TEMPORAL_ADDRESS, error: String(err) }, 'Temporal does not answer yet; connecting again'),
    ),
    namespace: config.TEMPORAL_NAMESPACE,
    taskQueue: config.LORAFLOW_TASK_QUEUE,
    dataConverter: dataConverterFor(config), // AES-GCM payload encryption when LORAFLOW_PAYLOAD_KEY is set
    workflowsPath: fileURLToPath(new URL('./workflows/index.ts', import.meta.url)),
    activities: createActivities(deps),
    // Heartbeats carry cancellation back to GPU activities: keep them frequent.
    maxHeartbeatThrottleInterval: '2 seconds',
    maxConcurrentActivityTaskExecutions: config.LORAFLOW_MAX_ACTIVITIES,
    ...(config.LORAFLOW_MAX_CACHED_WORKFLOWS !== undefined ? { maxCachedWorkflows: config.LORAFLOW_MAX_CACHED_WORKFLOWS } : {}),
    maxGpuJobs: config.LORAFLOW_MAX_GPU_JOBS,
    ...(config.LORAFLOW_BUILD_ID ? { deploymentVersion: { deploymentName: config.LORAFLOW_DEPLOYMENT_NAME, buildId: config.LORAFLOW_BUILD_ID } } : {}),
  });
  await workers.run();
}

run().catch((err) => {
  // A refusal to start (a store without conditional writes, a bad variable) is a message, not a trace.
  console.error(err instanceof Error && /^(config:|the S3 store)/.test(err.message) ? `loraflow worker: ${err.message}` : err);
  process.exit(1);
});
