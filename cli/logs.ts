// `loraflow logs ID`: what each GPU job of a pipeline did (every run of it: a retried request is a
// new run), from the endpoint itself while it keeps the job, else from the run's own record of how
// the job ended (activities/gpu-records.ts), next to the pipeline's own account.
import type { Client } from '@temporalio/client';
import { describeState } from '../contract/describe.js';
import { GpuProgress } from '../contract/gpu-job.js';
import type { Config } from '../lib/config.js';
import { EndpointRouter, endpointsFrom } from '../activities/deps.js';
import { type RunpodClient, RunpodJobNotFound, type RunpodHealth } from '../lib/runpod-client.js';
import type { GpuJobRecord } from '../activities/gpu-records.js';
import type { WebhookDelivery } from '../contract/webhooks.js';
import { webhookDeliveriesPrefix } from '../lib/keys.js';
import { getJson, listKeys, makeStorage } from '../lib/s3.js';
import { status } from './inspect.js';

export interface GpuJobLog {
  gpuJobId: string;
  /** The run (of the workflow id) and the stage that submitted it. */
  runId: string;
  stage: string;
  generation: number;
  submittedAt: string;
  /** RunPod's status; once the endpoint no longer keeps the job, the recorded final one (PURGED when none). */
  status: string;
  workerId?: string;
  /** Queue wait (incl. cold start) and run time, ms, as the endpoint reports them. */
  delayMs?: number;
  executionMs?: number;
  /** The latest progress update (running) or a short account of the result. */
  detail: string;
  error?: string;
}

export interface PipelineLogs {
  workflowId: string;
  state: string;
  jobs: GpuJobLog[];
  endpoint?: RunpodHealth;
  /** Each webhook event, in order, with its attempts and outcome (trainings created with a webhook). */
  webhooks?: WebhookDelivery[];
}

export async function pipelineLogs(
  client: Client,
  config: Config,
  id: string,
  // Each job's status from the endpoint that has it (LORAFLOW_ENDPOINTS); the health of the first.
  runpod: Pick<RunpodClient, 'status' | 'health'> = new EndpointRouter(endpointsFrom(config)),
): Promise<PipelineLogs> {
  const s = await status(client, id);
  const storage = makeStorage(config);
  const jobs: GpuJobLog[] = [];
  const keys = (await listKeys(storage, `runs/${id}/`)).filter((k) => /\/gpu-jobs\/[^/]+\.json$/.test(k));
  const records = (await Promise.all(keys.map((k) => getJson<GpuJobRecord>(storage, k)))).sort((a, b) => a.submittedAt.localeCompare(b.submittedAt));
  for (const record of records) {
    const { gpuJobId, generation, stage, runId, submittedAt, final } = record;
    const base = { gpuJobId, runId, stage, generation, submittedAt };
    const job = await runpod.status(gpuJobId).catch((err: unknown) => {
      if (err instanceof RunpodJobNotFound) return undefined;
      throw err;
    });
    if (!job) {
      jobs.push({
        ...base,
        status: final?.status ?? 'PURGED',
        ...(final?.delayMs !== undefined ? { delayMs: final.delayMs } : {}),
        ...(final?.executionMs !== undefined ? { executionMs: final.executionMs } : {}),
        detail: final ? `no longer kept by the endpoint; recorded when it ended${final.timing === 'worker' ? ' (timing from the worker)' : ''}` : 'no longer kept by the endpoint',
        ...(final?.error ? { error: final.error } : {}),
      });
      continue;
    }
    jobs.push({
      ...base,
      status: job.status,
      ...(job.workerId ? { workerId: job.workerId } : {}),
      ...(job.delayTime !== undefined ? { delayMs: job.delayTime } : {}),
      ...(job.executionTime !== undefined ? { executionMs: job.executionTime } : {}),
      detail: detailOf(job.output),
      ...(job.error ? { error: job.error } : {}),
    });
  }
  const endpoint = await runpod.health().catch(() => undefined);
  const hookKeys = await listKeys(storage, webhookDeliveriesPrefix(id));
  const webhooks = await Promise.all(hookKeys.map((k) => getJson<WebhookDelivery>(storage, k)));
  return { workflowId: id, state: s.state, jobs, ...(endpoint ? { endpoint } : {}), ...(webhooks.length ? { webhooks } : {}) };
}

function detailOf(output: unknown): string {
  const progress = GpuProgress.safeParse(output);
  if (progress.success) {
    const p = progress.data;
    return [p.phase, p.step !== undefined && p.totalSteps ? `step ${p.step}/${p.totalSteps}` : '', p.loss !== undefined ? `loss ${p.loss.toFixed(4)}` : '', p.etaSeconds !== undefined ? `eta ${Math.round(p.etaSeconds)}s` : '']
      .filter(Boolean)
      .join(' ');
  }
  if (output && typeof output === 'object') {
    const o = output as { captions?: unknown[]; lora?: { sha256: string }; step?: number };
    if (Array.isArray(o.captions)) return `captioned ${o.captions.length} images`;
    if (o.lora) return `trained to step ${o.step}, LoRA sha256 ${o.lora.sha256.slice(0, 12)}…`;
    if (typeof o.step === 'number') return `segment ended at step ${o.step} (checkpoint)`;
  }
  return '';
}

export function describeLogs(logs: PipelineLogs): string {
  const lines = [`${logs.workflowId}: ${logs.state}`];
  if (!logs.jobs.length) lines.push('  no GPU jobs yet');
  for (const j of logs.jobs) {
    const timing = [j.delayMs !== undefined ? `waited ${(j.delayMs / 1000).toFixed(1)}s` : '', j.executionMs !== undefined ? `ran ${(j.executionMs / 1000).toFixed(1)}s` : ''].filter(Boolean).join(', ');
    lines.push(`  ${j.submittedAt}  ${j.gpuJobId}  ${j.stage} gen ${j.generation}  ${j.status}${j.workerId ? ` on ${j.workerId}` : ''}${timing ? ` (${timing})` : ''}${j.detail ? `  ${j.detail}` : ''}${j.error ? `\n    error: ${j.error}` : ''}`);
  }
  for (const w of logs.webhooks ?? []) {
    lines.push(`  webhook #${w.seq} ${w.type}: ${w.delivered ? 'delivered' : 'not delivered yet'} after ${w.attempts} attempt${w.attempts === 1 ? '' : 's'} (last ${w.at}: ${w.lastStatus !== undefined ? `HTTP ${w.lastStatus}` : w.lastError})`);
  }
  if (logs.endpoint) {
    const e = logs.endpoint;
    lines.push(`endpoint: ${e.jobs.inQueue} queued, ${e.jobs.inProgress} running; workers ${e.workers.running} running, ${e.workers.idle} idle${e.diagnosis ? `; ${e.diagnosis.queue}${e.diagnosis.lastWorkerFailure ? ` (last failure: ${e.diagnosis.lastWorkerFailure})` : ''}` : ''}`);
  }
  return lines.join('\n');
}
