// cancelGpuJobs: when a pipeline fails or is cancelled, no GPU job of it may keep running (and
// billing). Every submission was recorded under the run's gpu-jobs/ (lib/keys.ts), whatever
// happened to the activity that made it (worker killed, heartbeat timeout); this cancels those
// still queued or running.
import { log } from '@temporalio/activity';
import { z } from 'zod';
import { RunpodJobNotFound } from '../lib/runpod-client.js';
import type { ActivityDeps } from './deps.js';
import { cancelGpuJob } from './gpu-job.js';
import { parseInput } from './input.js';
import { gpuJobsOf } from './usage.js';

export const CleanupInput = z.object({ runKey: z.string().min(1) });

export async function cancelGpuJobs(deps: ActivityDeps, raw: z.input<typeof CleanupInput>): Promise<{ cancelled: string[] }> {
  const { runKey } = parseInput(CleanupInput, raw);
  const cancelled: string[] = [];
  for (const { gpuJobId } of await gpuJobsOf(deps, runKey)) {
    const status = await deps.runpod.status(gpuJobId).catch((err: unknown) => {
      if (err instanceof RunpodJobNotFound) return undefined; // purged: long finished
      throw err;
    });
    if (status && (status.status === 'IN_QUEUE' || status.status === 'IN_PROGRESS')) {
      await cancelGpuJob(deps, gpuJobId);
      cancelled.push(gpuJobId);
    }
  }
  if (cancelled.length) log.info('cancelled GPU jobs left by the pipeline', { cancelled });
  return { cancelled };
}
