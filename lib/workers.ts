// The Temporal workers of one loraflow process: the pipeline's workflows and activities on the
// task queue, and its GPU stages on `<task queue>-gpu`. The GPU worker's slots are the most GPU
// stages this process runs at once (LORAFLOW_MAX_GPU_JOBS): a burst of pipelines waits in
// Temporal's queue, where higher-priority runs (priorityKey 1) are dispatched first. The cap per
// endpoint across every process is the lease workflow's (workflows/gpu-slots.ts).
// With a build id (LORAFLOW_BUILD_ID) both poll as one Worker Deployment version, and every run
// they start stays PINNED to it: new workflow code ships as a new version (docs/operations.md).
import { Worker, type WorkerOptions } from '@temporalio/worker';
import type { ParkedStages } from '../activities/gpu-stage.js';
import { gpuTaskQueue } from '../workflows/definitions.js';

const fixed = (numSlots: number) => ({ type: 'fixed-size' as const, numSlots });

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
  /** The activities' parked GPU stages (deps.gpuJobs.parked): handed back for a retry once the workers stop. */
  parkedStages?: Pick<ParkedStages, 'handBack' | 'slotSupplier'> | undefined;
}

export async function createWorkers(options: LoraflowWorkerOptions): Promise<LoraflowWorkers> {
  const { maxGpuJobs, deploymentVersion, parkedStages, ...mainOptions } = options;
  const versioning: Partial<WorkerOptions> = deploymentVersion
    ? { workerDeploymentOptions: { useWorkerVersioning: true, version: deploymentVersion, defaultVersioningBehavior: 'PINNED' } }
    : {};
  const { workflowsPath: _w, workflowBundle: _b, ...activityOptions } = mainOptions;
  const main = await Worker.create({ ...mainOptions, ...versioning });
  const { maxConcurrentActivityTaskExecutions: _a, maxConcurrentLocalActivityExecutions: _l, maxConcurrentWorkflowTaskExecutions: _wt, ...gpuOptions } = activityOptions;
  // A parked GPU stage keeps its slot (activities/gpu-stage.ts); without parking, a fixed count.
  const gpuSlots = parkedStages
    ? { tuner: { activityTaskSlotSupplier: parkedStages.slotSupplier(maxGpuJobs), workflowTaskSlotSupplier: fixed(2), localActivityTaskSlotSupplier: fixed(1), nexusTaskSlotSupplier: fixed(1) } }
    : { maxConcurrentActivityTaskExecutions: maxGpuJobs };
  const gpu = await Worker.create({ ...gpuOptions, ...versioning, taskQueue: gpuTaskQueue(mainOptions.taskQueue), ...gpuSlots });
  const shutdown = () => {
    for (const w of [main, gpu]) if (w.getState() === 'RUNNING') w.shutdown();
  };
  const run = async () => {
    const runs = [main, gpu].map((w) => w.run().catch((err: unknown) => (shutdown(), Promise.reject(err))));
    const results = await Promise.allSettled(runs);
    // A parked stage waits on in this process after its activity's task: a stopped worker must
    // not go on waiting (nor completing) for it, and its retry should not wait for the heartbeat timeout.
    await parkedStages?.handBack();
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
