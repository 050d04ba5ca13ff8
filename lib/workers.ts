// The Temporal workers of one loraflow process: the pipeline's workflows and activities on the
// task queue, and its GPU stages on `<task queue>-gpu`. The GPU worker's slots are the most GPU
// stages this process runs at once (LORAFLOW_MAX_GPU_JOBS): a burst of pipelines waits in
// Temporal's queue, where higher-priority runs (priorityKey 1) are dispatched first. The cap per
// endpoint across every process is the lease workflow's (workflows/gpu-slots.ts).
// With a build id (LORAFLOW_BUILD_ID) both poll as one Worker Deployment version, and every run
// they start stays PINNED to it: new workflow code ships as a new version (docs/operations.md).
import { Worker, type WorkerOptions } from '@temporalio/worker';
import { gpuTaskQueue } from '../workflows/definitions.js';

export interface LoraflowWorkers {
  /** Runs both workers until shutdown() or until one of them fails (the other is then stopped). */
  run(): Promise<void>;
  /** Runs the workers until `promise` settles, then shuts them down; returns its result. */
  runUntil<T>(promise: Promise<T>): Promise<T>;
  shutdown(): void;
  readonly workers: [main: Worker, gpu: Worker];
}

export interface LoraflowWorkerOptions extends WorkerOptions {
  /** GPU stages this process runs at once (LORAFLOW_MAX_GPU_JOBS). */
  maxGpuJobs: number;
  /** The Worker Deployment version both workers poll as; absent: unversioned. */
  deploymentVersion?: { deploymentName: string; buildId: string };
}

export async function createWorkers(options: LoraflowWorkerOptions): Promise<LoraflowWorkers> {
  const { maxGpuJobs, deploymentVersion, ...mainOptions } = options;
  const versioning: Partial<WorkerOptions> = deploymentVersion
    ? { workerDeploymentOptions: { useWorkerVersioning: true, version: deploymentVersion, defaultVersioningBehavior: 'PINNED' } }
    : {};
  const { workflowsPath: _w, workflowBundle: _b, ...activityOptions } = mainOptions;
  const main = await Worker.create({ ...mainOptions, ...versioning });
  const gpu = await Worker.create({ ...activityOptions, ...versioning, taskQueue: gpuTaskQueue(mainOptions.taskQueue), maxConcurrentActivityTaskExecutions: maxGpuJobs });
  const shutdown = () => {
    for (const w of [main, gpu]) if (w.getState() === 'RUNNING') w.shutdown();
  };
  const run = async () => {
    const runs = [main, gpu].map((w) => w.run().catch((err: unknown) => (shutdown(), Promise.reject(err))));
    const results = await Promise.allSettled(runs);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  };
  return {
    workers: [main, gpu],
    run,
    shutdown,
    async runUntil<T>(promise: Promise<T>): Promise<T> {
      const running = run();
      try {
        return await Promise.race([promise, running.then(() => Promise.reject(new Error('the workers stopped before the work was done')))]);
      } finally {
        shutdown();
        await running.catch(() => undefined);
      }
    },
  };
}
