// Webhooks for a training (deliverWebhooks, workflows/webhooks.ts): `watchTraining` reads the run the
// way `loraflow status` does and turns changes into events; `deliverWebhook` POSTs one event,
// signed per the Standard Webhooks spec, to the URL the API stored in S3 (never in history: it may
// carry a token). The host is checked like a dataset URL on every attempt and the request goes to
// the address that was checked. Each attempt's outcome is written beside the run for `loraflow logs`.
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { ApplicationFailure, Context, heartbeat, sleep } from '@temporalio/activity';
import { Webhook } from 'standardwebhooks';
import { status } from '../cli/inspect.js';
import { webhookConfigKey, webhookDeliveryKey } from '../lib/keys.js';
import { getBytesIfExists, getJson, putBytes } from '../lib/s3.js';
import { type ResolvedAddress, resolveFetchable } from '../lib/url-guard.js';
import type { WatchSnapshot, WebhookConfig, WebhookDelivery, WebhookEvent, WebhookEventType } from '../contract/webhooks.js';
import type { ActivityDeps } from './deps.js';

const FINAL: Record<string, WebhookEventType> = { published: 'training.published', skipped: 'training.skipped', failed: 'training.failed', cancelled: 'training.cancelled' };
/** The working stages in their order (queued before, the outcomes after). */
const STAGES = ['ingest', 'caption', 'train', 'publish'] as const;
/** A watch returns after this long without news, so its workflow's loop (and history) moves on. */
const WATCH_MS = 5 * 60_000;

export async function watchTraining(deps: ActivityDeps, input: { trainingId: string; last?: WatchSnapshot }): Promise<{ events: WebhookEvent[]; snapshot: WatchSnapshot; closed: boolean }> {
  const client = Context.current().client;
  const until = Date.now() + WATCH_MS;
  for (;;) {
    const s = await status(client, input.trainingId);
    const at = new Date().toISOString();
    const base = { trainingId: input.trainingId, stage: s.stage, status: s.status, at, ...(s.step !== undefined ? { step: s.step, totalSteps: s.totalSteps } : {}), ...(s.loss !== undefined ? { loss: s.loss } : {}) };
    const last = input.last;
    const events: WebhookEvent[] = [];
    if (!last) events.push({ ...base, type: 'training.started' });
    const closed = s.status !== 'RUNNING';
    const final = FINAL[s.stage];
    // Every stage entered since the last look, from the run's own record of when each started: a
    // stage shorter than a poll (publish) is reported too.
    const seen = last ? STAGES.indexOf(last.stage as (typeof STAGES)[number]) : -1;
    for (const [i, stage] of STAGES.entries()) {
      const entered = s.stageStartedAt[stage];
      if (i > seen && entered) events.push({ ...(stage === s.stage ? base : { trainingId: input.trainingId, status: s.status }), stage, at: entered, type: 'training.stage_changed' });
    }
    const progressDue = !last || Date.now() - last.progressAt >= deps.webhooks.progressSeconds * 1000;
    const progressed = s.step !== undefined && s.step !== last?.step;
    if (!closed && progressed && progressDue) events.push({ ...base, type: 'training.progress' });
    if (closed) events.push({ ...base, type: final ?? (s.status === 'COMPLETED' ? 'training.published' : s.status === 'FAILED' ? 'training.failed' : 'training.cancelled'), ...(s.error ? { error: s.error } : {}) });
    const snapshot = { stage: s.stage, ...(events.some((e) => e.type === 'training.progress') || !last ? { step: s.step, progressAt: Date.now() } : { step: last.step, progressAt: last.progressAt }) };
    if (events.length || closed || Date.now() > until) return { events, snapshot, closed };
    heartbeat();
    await sleep(deps.webhooks.pollMs);
  }
}

export async function deliverWebhook(deps: ActivityDeps, input: { trainingId: string; seq: number; event: WebhookEvent }): Promise<{ delivered: boolean }> {
  const { trainingId, seq, event } = input;
  const config = await getJson<WebhookConfig>(deps.storage, webhookConfigKey(trainingId));
  if (!config.events.includes(event.type)) return { delivered: false };
  if (!deps.webhooks.secret) throw ApplicationFailure.nonRetryable('LORAFLOW_WEBHOOK_SECRET is unset on the worker: webhooks cannot be signed', 'WebhookNotConfigured');
  const key = webhookDeliveryKey(trainingId, seq);
  const previous = await getBytesIfExists(deps.storage, key);
  const record: WebhookDelivery = previous ? (JSON.parse(previous.toString()) as WebhookDelivery) : { seq, type: event.type, attempts: 0, delivered: false, at: '' };
  record.attempts++;
  record.at = new Date().toISOString();
  const body = JSON.stringify({ type: event.type, timestamp: event.at, data: event });
  // The message id stays the same on every retry, so a receiver can drop a duplicate.
  const id = `msg_${trainingId}_${seq}`;
  const headers = signed(deps.webhooks.secret, id, body);
  try {
    const url = new URL(config.url);
    const address = await resolveFetchable(url, { allowInternal: deps.allowPrivateUrls });
    const code = await postPinned(url, address, body, headers, deps.webhooks.timeoutMs);
    record.lastStatus = code;
    delete record.lastError;
    record.delivered = code >= 200 && code < 300;
  } catch (err) {
    record.lastError = (err as Error).message;
    delete record.lastStatus;
  }
  await putBytes(deps.storage, key, JSON.stringify(record), 'application/json');
  if (!record.delivered) throw ApplicationFailure.retryable(`webhook ${event.type} #${seq}: ${record.lastError ?? `answered ${record.lastStatus}`}`, 'WebhookNotDelivered');
  return { delivered: true };
}

function signed(secret: string, id: string, body: string): Record<string, string> {
  const timestamp = new Date();
  return {
    'content-type': 'application/json',
    'webhook-id': id,
    'webhook-timestamp': String(Math.floor(timestamp.getTime() / 1000)),
    'webhook-signature': new Webhook(secret).sign(id, timestamp, body),
  };
}

/** POSTs to the checked address (the name is not resolved again); the status code, or throws. */
function postPinned(url: URL, to: ResolvedAddress, body: string, headers: Record<string, string>, timeoutMs: number): Promise<number> {
  const lookup: LookupFunction = (_host, options, callback) => {
    if ((options as { all?: boolean }).all) (callback as unknown as (e: null, a: ResolvedAddress[]) => void)(null, [to]);
    else callback(null, to.address, to.family);
  };
  return new Promise((resolve, reject) => {
    const req = (url.protocol === 'https:' ? https : http).request(url, { method: 'POST', lookup, headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, timeout: timeoutMs }, (res) => {
      res.resume(); // the answer's body is not read: only its status counts
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}
