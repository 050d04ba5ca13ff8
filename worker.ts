// The Temporal worker: runs the trainLora workflow and its activities on the loraflow task queue,
// and its GPU stages on loraflow-gpu (lib/workers.ts).
import { fileURLToPath } from 'node:url';
import { NativeConnection, Runtime } from '@temporalio/worker';
import { createActivities } from './activities/index.js';
import { dataConverterFromEnv } from './lib/codec.js';
import { loadConfig } from './lib/config.js';
import { makeLogger, temporalLogger } from './lib/logger.js';
import { RunpodClient } from './lib/runpod-client.js';
import { ensureBucket, makeStorage } from './lib/s3.js';
import { createWorkers } from './lib/workers.js';

async function run() {
  const config = loadConfig();
  Runtime.install({
    logger: temporalLogger(makeLogger({ name: 'loraflow-worker' })),
    // Prometheus /metrics: the SDK's worker metrics and the pipelines' own (runs by outcome).
    ...(config.LORAFLOW_METRICS_ADDRESS
      ? { telemetryOptions: { metrics: { prometheus: { bindAddress: config.LORAFLOW_METRICS_ADDRESS, countersTotalSuffix: true } } } }
      : {}),
  });
  const storage = makeStorage(config);
  if (config.LORAFLOW_CREATE_BUCKET) await ensureBucket(storage);
  const connection = await NativeConnection.connect({ address: config.TEMPORAL_ADDRESS });
  // Two workers on one connection: the pipelines, and their GPU stages (at most LORAFLOW_MAX_GPU_JOBS at once).
  const workers = await createWorkers({
    connection,
    namespace: config.TEMPORAL_NAMESPACE,
    taskQueue: config.LORAFLOW_TASK_QUEUE,
    dataConverter: dataConverterFromEnv(), // AES-GCM payload encryption when LORAFLOW_PAYLOAD_KEY is set
    workflowsPath: fileURLToPath(new URL('./workflows/index.ts', import.meta.url)),
    activities: createActivities({
      storage,
      runpod: new RunpodClient({ baseUrl: config.RUNPOD_API_BASE, apiKey: config.RUNPOD_API_KEY, endpointId: config.RUNPOD_ENDPOINT_ID }),
      pollIntervalMs: config.LORAFLOW_POLL_MS,
      statusWaitMs: config.LORAFLOW_STATUS_WAIT_MS,
      captioner: config.LORAFLOW_CAPTIONER,
      gpuPricePerHour: config.LORAFLOW_GPU_PRICE_PER_HOUR,
      gpuPrices: config.LORAFLOW_GPU_PRICES,
      ...(config.LORAFLOW_GPU_TYPE ? { gpuType: config.LORAFLOW_GPU_TYPE } : {}),
      allowPrivateUrls: config.LORAFLOW_ALLOW_PRIVATE_URLS,
      training: { checkpointEvery: config.LORAFLOW_CHECKPOINT_EVERY, segmentSeconds: config.LORAFLOW_SEGMENT_SECONDS },
      // Hugging Face Hub pushes only when HF_TOKEN is set.
      ...(config.HF_TOKEN
        ? {
            hub: {
              token: config.HF_TOKEN,
              endpoint: config.LORAFLOW_HF_ENDPOINT,
              namespace: config.LORAFLOW_HF_NAMESPACE,
              repoTemplate: config.LORAFLOW_HF_REPO,
              private: config.LORAFLOW_HF_PRIVATE,
              baseModels: config.LORAFLOW_HF_BASE_MODELS,
            },
          }
        : {}),
    }),
    // Heartbeats carry cancellation back to GPU activities: keep them frequent.
    maxHeartbeatThrottleInterval: '2 seconds',
    maxConcurrentActivityTaskExecutions: config.LORAFLOW_MAX_ACTIVITIES,
    maxGpuJobs: config.LORAFLOW_MAX_GPU_JOBS,
  });
  await workers.run();
}

run().catch((err) => {
  console.error(err);
  process.exit(1);
});
