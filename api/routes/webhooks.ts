// A training's webhook: the URL is checked like a dataset URL before the run starts, stored in S3
// (not in history: it may carry a token), and delivered by the deliverWebhooks workflow
// (workflows/webhooks.ts), one per training, started beside it.
import type { Config } from '../../lib/config.js';
import { webhookConfigKey } from '../../lib/keys.js';
import { putBytes } from '../../lib/s3.js';
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
  const workflowId = `webhooks-${trainingId}`;
  await client.workflow.start('deliverWebhooks', {
    taskQueue: config.LORAFLOW_TASK_QUEUE,
    workflowId,
    args: [{ trainingId }],
    workflowIdConflictPolicy: 'USE_EXISTING',
    workflowIdReusePolicy: 'REJECT_DUPLICATE',
  }).catch((err: Error) => {
    if (err.name !== 'WorkflowExecutionAlreadyStartedError') throw err;
  });
  return workflowId;
}
