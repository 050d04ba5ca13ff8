// The janitor's sweep (workflows/janitor.ts runs it on a schedule): GPU jobs listed as open whose
// run has closed without stopping them (a terminated run skips its cleanup; a cleanup can give up
// under a storm of 429s) are cancelled, each confirmed stopped; jobs found ended are taken off the
// list with their final state recorded.
import { Context, log } from '@temporalio/activity';
import { WorkflowNotFoundError } from '@temporalio/client';
import { OPEN_GPU_JOBS } from '../lib/keys.js';
import { RunpodJobNotFound, isFinalState } from '../lib/runpod-client.js';
import { getJson, listKeys } from '../lib/s3.js';
import type { ActivityDeps } from './deps.js';
import { cancelGpuJob } from './gpu-job.js';
import { type OpenGpuJob, recordFinal } from './gpu-records.js';
import { timingOf } from './gpu-result.js';

export interface JanitorReport {
  checked: number;
  /** Jobs of closed runs, now confirmed stopped. */
  cancelled: string[];
  /** Jobs found already ended, now off the open list. */
  ended: number;
  /** Jobs of closed runs that could not be confirmed stopped: tried again next time. */
  unconfirmed: string[];
}

export async function cancelOrphanGpuJobs(deps: ActivityDeps, _input: Record<string, never> = {}): Promise<JanitorReport> {
  const report: JanitorReport = { checked: 0, cancelled: [], ended: 0, unconfirmed: [] };
  const client = Context.current().client;
  for (const key of await listKeys(deps.storage, `${OPEN_GPU_JOBS}/`)) {
    const open = await getJson<OpenGpuJob>(deps.storage, key);
    report.checked++;
    Context.current().heartbeat(report.checked);
    const status = await deps.runpod.status(open.gpuJobId).catch((err: unknown) => (err instanceof RunpodJobNotFound ? ('gone' as const) : Promise.reject(err)));
    if (status === 'gone' || isFinalState(status.status)) {
      const final = status === 'gone' ? { gpuJobId: open.gpuJobId, status: 'PURGED' } : timingOf(status);
      await recordFinal(deps, open.runKey, open.gpuJobId, { ...final, seenAt: new Date().toISOString(), timing: status === 'gone' ? 'unknown' : 'endpoint' });
      report.ended++;
      continue;
    }
    const run = await client.workflow
      .getHandle(open.workflowId, open.runId)
      .describe()
      .then((d) => d.status.name, (err: unknown) => (err instanceof WorkflowNotFoundError ? 'GONE' : Promise.reject(err)));
    if (run === 'RUNNING') continue; // its own activities look after it
    if (await cancelGpuJob(deps, open.runKey, open.gpuJobId)) report.cancelled.push(open.gpuJobId);
    else report.unconfirmed.push(open.gpuJobId);
  }
  if (report.cancelled.length || report.unconfirmed.length) log.warn('janitor: GPU jobs of closed runs', { ...report });
  return report;
}
