// cancelGpuJobs: when a pipeline fails or is cancelled, no GPU job of it may keep running (and
// billing). Every submission was recorded under runs/<runKey>/gpu-jobs/, whatever happened to the
// activity that made it (worker killed, heartbeat timeout); this cancels those still queued or running.
import { log } from '@temporalio/activity';
import { z } from 'zod';
import { RunpodJobNotFound } from '../lib/runpod-client.js';
import { getJson, listKeys } from '../lib/s3.js';
import type { ActivityDeps } from './deps.js';
import { cancelJob } from './gpu-job.js';
import { parseInput } from './ingest.js';

export const CleanupInput = z.object({ runKey: z.string().min(1) });

export async function cancelGpuJobs(deps: ActivityDeps, raw: z.input<typeof CleanupInput>): Promise<{ cancelled: string[] }> {
  const { runKey } = parseInput(CleanupInput, raw);
  const cancelled: string[] = [];
  for (const key of await listKeys(deps.storage, `runs/${runKey}/gpu-jobs/`)) {
    const { gpuJobId } = await getJson<{ gpuJobId: string }>(deps.storage, key);
    const status = await deps.runpod.status(gpuJobId).catch((err: unknown) => {
      if (err instanceof RunpodJobNotFound) return undefined; // purged: long finished
      throw err;
    });
    if (status && (status.status === 'IN_QUEUE' || status.status === 'IN_PROGRESS')) {
      await cancelJob(deps, gpuJobId);
      cancelled.push(gpuJobId);
    }
  }
  if (cancelled.length) log.info('cancelled GPU jobs left by the pipeline', { cancelled });
  return { cancelled };
}
