// The activity profiles every workflow that runs GPU jobs shares: the GPU stages themselves and the
// cleanup that stops what they could not.
import { ActivityCancellationType, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import { gpuTaskQueue } from './definitions.js';

/**
 * GPU stages: retries resume waiting on the recorded RunPod job, they never submit a second one.
 * WAIT_CANCELLATION_COMPLETED: a cancelled pipeline waits until the GPU job is cancelled too.
 * They run on the GPU task queue; each endpoint's GPU slots, shared by every worker, cap its
 * concurrent jobs (activities/gpu-slots.ts). `startToClose`: the whole stage, every segment.
 */
export const gpuStages = (startToCloseTimeout: '24 hours' | '6 hours') =>
  proxyActivities<Activities>({
    taskQueue: gpuTaskQueue(workflowInfo().taskQueue),
    startToCloseTimeout,
    heartbeatTimeout: '30 seconds',
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 20 },
  });

// Cleanup after a failure or cancel: cancels GPU jobs the run's activities could not stop.
// The heartbeat timeout: a cleanup on a worker that died is retried within a minute, not after 5
// while the GPU job it should stop bills on.
export const { cancelGpuJobs } = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '1 minute',
  retry: { maximumAttempts: 10, maximumInterval: '30 seconds' },
});
