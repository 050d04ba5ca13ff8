// A training's (or schedule's) webhook: the URL is checked like a dataset URL before the run starts,
// stored in S3 (not in history: it may carry a token), and delivered by the deliverWebhooks workflow
// (workflows/webhooks.ts), one per training, started beside it; for a schedule, by its
// scheduleWebhooks workflow (workflows/schedule-webhooks.ts) as each scheduled run appears.
import type { Config } from '../../lib/config.js';
import { scheduleWebhookKey, webhookConfigKey } from '../../lib/keys.js';
import { deleteObject, putBytes } from '../../lib/s3.js';
import { startDelivery } from '../../lib/webhook-delivery.js';
import { resolveFetchable } from '../../lib/url-guard.js';
import type { WebhookConfig } from '../../contract/webhooks.js';
import type { ApiDeps } from '../context.js';
import { ApiError } from '../errors.js';

export async function checkWebhook(config: Config, raw: string): Promise<void> {
  if (!config.LORAFLOW_WEBHOOK_SECRET) throw new ApiError(400, 'invalid_request', 'webhook: this server has no LORAFLOW_WEBHOOK_SECRET to sign webhooks with', 'webhook');
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ApiError(400, 'invalid_request', 'webhook.url: not a URL', 'webhook.url');
  }
  await resolveFetchable(url, { allowInternal: config.LORAFLOW_ALLOW_PRIVATE_URLS }).catch((err: Error) => {
    throw new ApiError(400, 'invalid_request', `webhook.url: ${url.origin}${url.pathname}: ${err.message}`, 'webhook.url');
  });
}

/** Stores the webhook and starts (or finds) the training's delivery workflow; returns its id. */
export async function startWebhooks({ client, config, storage }: ApiDeps, trainingId: string, webhook: WebhookConfig): Promise<string> {
  await putBytes(storage, webhookConfigKey(trainingId), JSON.stringify(webhook), 'application/json');
  return startDelivery(client, config.LORAFLOW_TASK_QUEUE, trainingId);
}

export const scheduleWatcherId = (scheduleId: string) => `schedule-webhooks-${scheduleId}`;

/** Stores a schedule's webhook and starts (or finds) its watcher, which starts each run's delivery; returns the watcher's id. */
export async function startScheduleWebhooks({ client, config, storage }: ApiDeps, scheduleId: string, webhook: WebhookConfig): Promise<string> {
  await putBytes(storage, scheduleWebhookKey(scheduleId), JSON.stringify(webhook), 'application/json');
  const workflowId = scheduleWatcherId(scheduleId);
  await client.workflow.start('scheduleWebhooks', {
    taskQueue: config.LORAFLOW_TASK_QUEUE,
    workflowId,
    args: [{ scheduleId }],
    workflowIdConflictPolicy: 'USE_EXISTING',
  }).catch((err: Error) => {
    if (err.name !== 'WorkflowExecutionAlreadyStartedError') throw err;
  });
  return workflowId;
}

/** A deleted schedule's webhook goes too: its watcher ends, and a new schedule of the same id starts without it. */
export async function forgetScheduleWebhooks({ storage }: ApiDeps, scheduleId: string): Promise<void> {
  await deleteObject(storage, scheduleWebhookKey(scheduleId));
}
