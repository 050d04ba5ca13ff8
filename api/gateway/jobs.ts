// Gateway jobs and where their state lives, so any server instance, after any restart, answers the
// same: a job that is a pipeline *is* its workflow (its id is the workflow id; the status comes from
// Temporal), and a job answered at once (seed 004's health, lists, uploads…) is written to
// S3 (gateway-jobs/<id>.json) before its id is returned.
import { randomUUID } from 'node:crypto';
import { WorkflowNotFoundError } from '@temporalio/client';
import { status as pipelineStatus } from '../../cli/inspect.js';
import { gatewayJobKey, keyOfUri } from '../../lib/keys.js';
import { getBytesIfExists, presignGet, putBytes, type Storage } from '../../lib/s3.js';
import type { ApiDeps } from '../context.js';
import type { GatewayJob } from './schemas.js';

/** Ids of jobs answered at once; anything else names a workflow. */
const INSTANT = /^gw-[0-9a-f-]{36}$/;

export async function recordInstantJob(storage: Storage, result: { output?: unknown; error?: string }): Promise<GatewayJob> {
  const id = `gw-${randomUUID()}`;
  const job: GatewayJob = { id, status: result.error ? 'FAILED' : 'COMPLETED', delayTime: 0, executionTime: 0, ...(result.error ? { error: result.error } : { output: result.output }) };
  await putBytes(storage, gatewayJobKey(id), JSON.stringify(job), 'application/json');
  return job;
}

/** RunPod's status of a job; undefined when there is no such job (404). */
export async function jobStatus(deps: ApiDeps, id: string): Promise<GatewayJob | undefined> {
  if (INSTANT.test(id)) {
    const bytes = await getBytesIfExists(deps.storage, gatewayJobKey(id));
    return bytes ? (JSON.parse(bytes.toString()) as GatewayJob) : undefined;
  }
  return pipelineJob(deps, id);
}

/** A pipeline read as a RunPod job: seed 000's output once published (presigned, time-limited URLs). */
export async function pipelineJob(deps: ApiDeps, id: string): Promise<GatewayJob | undefined> {
  const s = await pipelineStatus(deps.client, id).catch((err: unknown) => {
    if ((err as { reason?: string }).reason === 'not-found' || err instanceof WorkflowNotFoundError) return undefined;
    throw err;
  });
  if (!s) return undefined;
  const started = s.stageStartedAt.ingest ?? s.updatedAt;
  const executionTime = Math.max(0, Date.now() - Date.parse(started));
  switch (s.status) {
    case 'RUNNING':
      return { id, status: s.stage === 'queued' ? 'IN_QUEUE' : 'IN_PROGRESS', output: { stage: s.stage, state: s.state, ...(s.step !== undefined ? { step: s.step, total_steps: s.totalSteps } : {}) } };
    case 'COMPLETED': {
      if (s.skipped) return { id, status: 'COMPLETED', output: { status: 'skipped', reason: s.skipped.reason, latest_version: s.skipped.latestVersion } };
      const r = s.result!;
      const url = await presignGet(deps.storage, keyOfUri(r.uri), deps.config.LORAFLOW_API_URL_SECONDS);
      return {
        id,
        status: 'COMPLETED',
        executionTime,
        output: { status: 'success', lora_files: [`${s.name}-${r.version}.safetensors`], public_urls: [url], sha256: r.sha256, version: r.version, urls_expire_in_seconds: deps.config.LORAFLOW_API_URL_SECONDS },
      };
    }
    case 'FAILED':
      return { id, status: 'FAILED', error: s.error ?? 'the pipeline failed' };
    case 'TIMED_OUT':
      return { id, status: 'TIMED_OUT' };
    default: // CANCELLED, TERMINATED
      return { id, status: 'CANCELLED' };
  }
}

/** Waits up to `waitMs` for a pipeline job to leave the queue and finish (runsync, status-sync). */
export async function waitForJob(deps: ApiDeps, id: string, waitMs: number): Promise<GatewayJob | undefined> {
  const deadline = Date.now() + waitMs;
  let job = await jobStatus(deps, id);
  while (job && (job.status === 'IN_QUEUE' || job.status === 'IN_PROGRESS') && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 1000));
    job = await jobStatus(deps, id);
  }
  return job;
}

