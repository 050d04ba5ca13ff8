// A schedule's webhooks: scheduled runs start trainLora straight from Temporal, without the API, so
// this long-running workflow (one per schedule with a webhook, started by the API) looks at the
// schedule's runs every few seconds and starts each new run's deliverWebhooks, which then sends
// that run's events in order, retried and signed, like an API-created training's. trainLora is
// unchanged. It ends once the schedule (or its stored webhook) is gone. History holds run ids only,
// never the URL (S3). Continues as new every few hundred polls to keep history small.
import { continueAsNew, proxyActivities, sleep } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';

const { watchSchedule } = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '2 seconds', maximumInterval: '30 seconds' },
});

const POLL = '5 seconds';
const POLLS_PER_RUN = 200;
/** Runs already handed to a delivery; more than the schedule's recent actions (10) plus running ones. */
const SEEN_KEPT = 100;

interface Input {
  scheduleId: string;
  /** Carried over by continue-as-new: runs already started, and how many in all. */
  seen?: string[];
  runs?: number;
}

export async function scheduleWebhooks(input: Input): Promise<{ runs: number }> {
  const { scheduleId } = input;
  let seen = [...(input.seen ?? [])];
  let runs = input.runs ?? 0;
  for (let poll = 0; poll < POLLS_PER_RUN; poll++) {
    const w = await watchSchedule({ scheduleId, seen });
    if (w.ended) return { runs };
    runs += w.started.length;
    seen = [...seen, ...w.started].slice(-SEEN_KEPT);
    await sleep(POLL);
  }
  return continueAsNew<typeof scheduleWebhooks>({ scheduleId, seen, runs });
}
