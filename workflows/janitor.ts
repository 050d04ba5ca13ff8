// The janitor: on a schedule (loraflow-janitor, created by the worker), it stops GPU jobs whose run
// closed without stopping them, so no job bills on after its pipeline is gone.
import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import type { JanitorReport } from '../activities/janitor.js';

const { cancelOrphanGpuJobs } = proxyActivities<Activities>({
  startToCloseTimeout: '10 minutes',
  heartbeatTimeout: '1 minute',
  retry: { maximumAttempts: 3, initialInterval: '10 seconds' },
});

export async function janitor(): Promise<JanitorReport> {
  return cancelOrphanGpuJobs({});
}
