// cancelGpuJobs: when a pipeline fails or is cancelled, no GPU job of it may keep running (and
// billing). Every job the run submitted or followed is recorded (gpu-records.ts), whatever happened
// to the activity that made it (worker killed, heartbeat timeout); this cancels those not known
// to have ended, and fails (to be retried) until each is confirmed stopped.
import { ApplicationFailure, Context, log } from '@temporalio/activity';
import { z } from 'zod';
import type { ActivityDeps } from './deps.js';
import { cancelGpuJob } from './gpu-job.js';
import { jobRecords } from './gpu-records.js';
import { parseInput } from './input.js';

export const CleanupInput = z.object({ runKey: z.string().min(1) });

export async function cancelGpuJobs(deps: ActivityDeps, raw: z.input<typeof CleanupInput>): Promise<{ cancelled: string[] }> {
  const { runKey } = parseInput(CleanupInput, raw);
  const cancelled: string[] = [];
  const unconfirmed: string[] = [];
  for (const record of await jobRecords(deps, runKey)) {
    Context.current().heartbeat();
    if (record.final) continue;
    if (await cancelGpuJob(deps, runKey, record.gpuJobId)) cancelled.push(record.gpuJobId);
    else unconfirmed.push(record.gpuJobId);
  }
  if (cancelled.length) log.info('stopped GPU jobs left by the pipeline', { cancelled });
  // Retried by the workflow's cleanup policy; after that, the janitor schedule keeps trying.
  if (unconfirmed.length) throw ApplicationFailure.retryable(`GPU jobs not confirmed stopped yet: ${unconfirmed.join(', ')}`, 'GpuCancelUnconfirmed');
  return { cancelled };
}
