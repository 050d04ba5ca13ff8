// A schedule's webhooks (scheduleWebhooks, workflows/schedule-webhooks.ts): `watchSchedule` reads
// the runs the schedule started (Temporal keeps its recent and running actions) and, for each one
// not seen before, copies the schedule's webhook (S3, never history) to the run's own key and starts
// the run's deliverWebhooks, exactly as the API does for a training it creates.
import { Context } from '@temporalio/activity';
import { ScheduleNotFoundError } from '@temporalio/client';
import { scheduleWebhookKey, webhookConfigKey } from '../lib/keys.js';
import { getBytesIfExists, putBytes } from '../lib/s3.js';
import { startDelivery } from '../lib/webhook-delivery.js';
import type { ActivityDeps } from './deps.js';

export async function watchSchedule(deps: ActivityDeps, input: { scheduleId: string; seen: string[] }): Promise<{ started: string[]; ended: boolean }> {
  const { client, info } = Context.current();
  // No webhook stored (the schedule was deleted through the API) or no schedule: nothing to watch.
  const config = await getBytesIfExists(deps.storage, scheduleWebhookKey(input.scheduleId));
  if (!config) return { started: [], ended: true };
  const d = await client.schedule.getHandle(input.scheduleId).describe().catch((err: unknown) => {
    if (err instanceof ScheduleNotFoundError) return undefined;
    throw err;
  });
  if (!d) return { started: [], ended: true };
  const seen = new Set(input.seen);
  const runs = [...d.info.recentActions.map((a) => a.action.workflow.workflowId), ...d.info.runningActions.map((a) => a.workflow.workflowId)];
  const started: string[] = [];
  for (const trainingId of new Set(runs)) {
    if (seen.has(trainingId)) continue;
    await putBytes(deps.storage, webhookConfigKey(trainingId), config, 'application/json');
    // The delivery runs on this worker's queue, the one trainLora and its watchers poll.
    await startDelivery(client, info.taskQueue, trainingId);
    started.push(trainingId);
  }
  return { started, ended: false };
}
