// A training's webhooks, as their own workflow beside trainLora (which is not changed by them).
// Two loops share a queue: one watches the run and queues each event as it happens, the other
// delivers the queue in order, each event retried with backoff until the receiver takes it. So a
// receiver down for an hour still gets every event, in order, once it is back, and the events it
// missed meanwhile are the ones that happened, not a summary. History holds the events (stage, step,
// loss), never the URL or the secret (S3 and the worker's config). Continues as new every few
// hundred events to keep history small.
import { condition, continueAsNew, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import type { WatchSnapshot, WebhookEvent } from '../contract/webhooks.js';

const { watchTraining } = proxyActivities<Activities>({
  startToCloseTimeout: '15 minutes',
  heartbeatTimeout: '1 minute',
  retry: { initialInterval: '2 seconds', maximumInterval: '30 seconds' },
});

// Unlimited attempts over three days: backoff 1 s, 2 s, 4 s … then every 30 s.
const { deliverWebhook } = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  scheduleToCloseTimeout: '3 days',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', nonRetryableErrorTypes: ['WebhookNotConfigured'] },
});

const EVENTS_PER_RUN = 300;

interface Input {
  trainingId: string;
  /** Carried over by continue-as-new: the next sequence number, the last snapshot, events not yet delivered. */
  next?: number;
  last?: WatchSnapshot;
  pending?: WebhookEvent[];
}

export async function deliverWebhooks(input: Input): Promise<{ delivered: number }> {
  const { trainingId } = input;
  const queue: WebhookEvent[] = [...(input.pending ?? [])];
  let last = input.last;
  let closed = false;
  let watched = 0;
  let seq = input.next ?? 1;

  const watch = async () => {
    while (!closed && watched < EVENTS_PER_RUN) {
      const w = await watchTraining({ trainingId, ...(last ? { last } : {}) });
      queue.push(...w.events);
      watched += w.events.length;
      last = w.snapshot;
      closed = w.closed;
    }
  };
  const deliver = async () => {
    for (;;) {
      await condition(() => queue.length > 0 || closed || watched >= EVENTS_PER_RUN);
      if (!queue.length) return;
      await deliverWebhook({ trainingId, seq, event: queue[0]! });
      queue.shift();
      seq++;
    }
  };
  await Promise.all([watch(), deliver()]);
  if (closed) return { delivered: seq - 1 };
  return continueAsNew<typeof deliverWebhooks>({ trainingId, next: seq, ...(last ? { last } : {}), pending: queue });
}
