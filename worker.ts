// The Temporal worker: runs the trainLora workflow and its activities on the loraflow task queue,
// and its GPU stages on loraflow-gpu (lib/workers.ts). Everything comes from the config.
import { fileURLToPath } from 'node:url';
import { NativeConnection, Runtime } from '@temporalio/worker';
import { activityDepsFrom } from './activities/deps.js';
import { createActivities } from './activities/index.js';
import { dataConverterFor } from './lib/codec.js';
import { loadConfig } from './lib/config.js';
import { makeLogger, temporalLogger } from './lib/logger.js';
import { ensureBucket } from './lib/s3.js';
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
  const workers = await createWorkers({
    connection: await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS }),
    namespace: config.TEMPORAL_NAMESPACE,
    taskQueue: config.LORAFLOW_TASK_QUEUE,
    dataConverter: dataConverterFor(config), // AES-GCM payload encryption when LORAFLOW_PAYLOAD_KEY is set
    workflowsPath: fileURLToPath(new URL('./workflows/index.ts', import.meta.url)),
    activities: createActivities(deps),
    // Heartbeats carry cancellation back to GPU activities: keep them frequent.
    maxHeartbeatThrottleInterval: '2 seconds',
    maxConcurrentActivityTaskExecutions: config.LORAFLOW_MAX_ACTIVITIES,
    maxGpuJobs: config.LORAFLOW_MAX_GPU_JOBS,
    ...(config.LORAFLOW_BUILD_ID ? { deploymentVersion: { deploymentName: config.LORAFLOW_DEPLOYMENT_NAME, buildId: config.LORAFLOW_BUILD_ID } } : {}),
  });
  await workers.run();
}

run().catch((err) => {
  console.error(err);
  process.exit(1);
});
