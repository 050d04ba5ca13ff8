// The janitor's Temporal Schedule (workflows/janitor.ts): created by each worker at start, if it
// is missing, so a deployment always has one; `loraflow-janitor` in the Web UI's schedules.
import { type Client, ScheduleAlreadyRunning, ScheduleOverlapPolicy } from '@temporalio/client';

export const JANITOR_SCHEDULE_ID = 'loraflow-janitor';

export async function ensureJanitorSchedule(client: Client, taskQueue: string, everyMinutes: number): Promise<'created' | 'exists'> {
  try {
    await client.schedule.create({
      scheduleId: JANITOR_SCHEDULE_ID,
      spec: { intervals: [{ every: `${everyMinutes} minutes` }] },
      action: { type: 'startWorkflow', workflowType: 'janitor', taskQueue, workflowId: JANITOR_SCHEDULE_ID },
      policies: { overlap: ScheduleOverlapPolicy.SKIP },
    });
    return 'created';
  } catch (err) {
    if (err instanceof ScheduleAlreadyRunning) return 'exists';
    throw err;
  }
}
