// `status`, `list`, `cancel` and `download`: reading pipelines back from Temporal and S3.
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type Client, WorkflowNotFoundError } from '@temporalio/client';
import { decodeFromPayloadsAtIndex } from '@temporalio/common/lib/internal-non-workflow/index.js';
import proto from '@temporalio/proto';
import type { GpuHeartbeat } from '../activities/gpu-progress.js';
import { isSkipped, type LoraMetadata, type PipelineProgress, type PublishedLora, type TrainOutcome } from '../contract/pipeline.js';
import type { Config } from '../lib/config.js';
import { sha256 } from '../lib/hash.js';
import { keyOfUri } from '../lib/keys.js';
import { getBytes, listKeys, makeStorage } from '../lib/s3.js';
import { describeState } from '../contract/describe.js';
import { GPU_STAGE_ACTIVITIES, LoraNameKey, LoraStageKey, progressQuery } from '../workflows/definitions.js';
import { CliError } from './connect.js';

export async function status(client: Client, id: string): Promise<PipelineProgress & { workflowId: string; status: string; state: string }> {
  const handle = client.workflow.getHandle(id);
  const description = await handle.describe().catch((err: unknown) => {
    throw err instanceof WorkflowNotFoundError ? new CliError(`no pipeline with id ${id} (see \`loraflow list\`)`, 'not-found') : err;
  });
  const queried = await handle.query(progressQuery).catch(() => undefined);
  // The workflow hears of state changes only (history stays small); the running GPU stage's
  // heartbeat has its live step, loss and speed.
  const live = await liveGpuProgress(client, description.raw.pendingActivities ?? []);
  const progress = queried && live && (queried.stage === 'caption' || queried.stage === 'train') ? { ...queried, ...live } : queried;
  const stage = description.typedSearchAttributes.get(LoraStageKey) ?? 'unknown';
  const p = progress ?? { stage: stage as PipelineProgress['stage'], name: description.typedSearchAttributes.get(LoraNameKey) ?? '', stageStartedAt: {}, updatedAt: '' };
  // Without a worker to answer the query, the memo's last summary is the best account there is.
  const memo = description.memo?.summary;
  let state = progress ? describeState(progress) : typeof memo === 'string' ? memo.replace(/^[^:]+: /, '') : describeState(p);
  // A GPU stage not yet started by a worker waits for one of the GPU slots (LORAFLOW_MAX_GPU_JOBS).
  const gpuStageQueued = (description.raw.pendingActivities ?? []).some(
    (a) => GPU_STAGE_ACTIVITIES.includes(a.activityType?.name ?? '') && a.state === proto.temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_SCHEDULED,
  );
  if (gpuStageQueued && !p.gpuState) state = `${p.stage}: waiting for a GPU slot (all LORAFLOW_MAX_GPU_JOBS in use; higher-priority runs go first)`;
  // Started, but every slot of its endpoint is held by the stages of all workers together.
  else if (live?.waitingForSlot) state = `${p.stage}: waiting for a GPU slot on ${live.waitingForSlot} (its LORAFLOW_MAX_GPU_JOBS are all in use, across every worker)`;
  return { ...p, workflowId: id, status: description.status.name, state };
}

/** The step, loss and speed in a running GPU stage's last heartbeat, if any, or the endpoint whose slots it waits for. */
async function liveGpuProgress(client: Client, pending: proto.temporal.api.workflow.v1.IPendingActivityInfo[]): Promise<(Partial<PipelineProgress> & { waitingForSlot?: string }) | undefined> {
  const stage = pending.find((a) => GPU_STAGE_ACTIVITIES.includes(a.activityType?.name ?? '') && a.heartbeatDetails?.payloads?.length);
  if (!stage) return undefined;
  const details = await decodeFromPayloadsAtIndex<Pick<GpuHeartbeat, 'progress' | 'waitingForSlot'>>(client.options.loadedDataConverter, 0, stage.heartbeatDetails!.payloads).catch(() => undefined);
  if (details?.waitingForSlot) return { waitingForSlot: details.waitingForSlot };
  if (!details?.progress) return undefined;
  const { phase, step, totalSteps, loss } = details.progress;
  return { ...(phase ? { phase } : {}), ...(step !== undefined ? { step } : {}), ...(totalSteps !== undefined ? { totalSteps } : {}), ...(loss !== undefined ? { loss } : {}) };
}

/** Recent pipelines, newest first; `name` and `stage` must be checked values (LoraName, Stage): they go into the query. */
export async function list(client: Client, limit = 50, filter: { name?: string; stage?: string } = {}) {
  const rows = [];
  const query = [`WorkflowType = 'trainLora'`, ...(filter.name ? [`LoraName = '${filter.name}'`] : []), ...(filter.stage ? [`LoraStage = '${filter.stage}'`] : [])].join(' AND ');
  for await (const wf of client.workflow.list({ query })) {
    rows.push({
      workflowId: wf.workflowId,
      status: wf.status.name,
      stage: wf.typedSearchAttributes.get(LoraStageKey) ?? '',
      name: wf.typedSearchAttributes.get(LoraNameKey) ?? '',
      started: wf.startTime.toISOString(),
    });
    if (rows.length >= limit) break;
  }
  return rows;
}

export async function cancel(client: Client, id: string): Promise<string> {
  const handle = client.workflow.getHandle(id);
  await handle.cancel().catch((err: unknown) => {
    throw err instanceof WorkflowNotFoundError ? new CliError(`no running pipeline with id ${id}`, 'not-found') : err;
  });
  // The workflow closes only after its GPU job is cancelled (WAIT_CANCELLATION_COMPLETED).
  await handle.result().catch(() => undefined);
  return (await handle.describe()).status.name;
}

/** A published pipeline's outcome; a clear error for one that is missing, not finished or skipped. */
export async function publishedOf(client: Client, id: string, what: 'download' | 'report' | 'extend'): Promise<PublishedLora> {
  const handle = client.workflow.getHandle(id);
  const description = await handle.describe().catch(() => undefined);
  if (!description) throw new CliError(`no pipeline with id ${id}`, 'not-found');
  if (description.status.name !== 'COMPLETED') {
    const why = { download: 'nothing published to download', report: 'a report is written once it is published', extend: 'only a published run can be extended' }[what];
    throw new CliError(`pipeline ${id} is ${description.status.name}: ${why}`, 'conflict');
  }
  const outcome = (await handle.result()) as TrainOutcome;
  if (isSkipped(outcome)) {
    throw new CliError(
      what !== 'report' ? `pipeline ${id} was skipped (dataset unchanged); download ${outcome.latestVersion} from the run that published it (${outcome.latestUri})` : `pipeline ${id} was skipped (dataset unchanged): see the report of ${outcome.latestVersion}`,
      'conflict',
    );
  }
  return outcome;
}

/** Writes lora.safetensors and metadata.json into `out`, checked against the published sha256. */
export async function download(client: Client, config: Config, id: string, out: string): Promise<{ lora: string; metadata: string }> {
  const published = await publishedOf(client, id, 'download');
  const storage = makeStorage(config);
  const [lora, metadata] = await Promise.all([getBytes(storage, keyOfUri(published.uri)), getBytes(storage, keyOfUri(published.metadataUri))]);
  // After `loraflow promote`, metadata.json records the promoted step's sha256.
  const meta = JSON.parse(metadata.toString('utf8')) as Pick<LoraMetadata, 'lora' | 'promoted'>;
  const expected = meta.promoted ? meta.lora.sha256 : published.sha256;
  if (sha256(lora) !== expected) throw new CliError(`${published.uri} does not match its published sha256; not writing it`);
  await mkdir(out, { recursive: true });
  const files = { lora: path.join(out, 'lora.safetensors'), metadata: path.join(out, 'metadata.json') };
  // Write beside, then rename: never a half-written file under the final name.
  for (const [file, bytes] of [[files.lora, lora], [files.metadata, metadata]] as const) {
    await writeFile(`${file}.partial`, bytes);
    await rename(`${file}.partial`, file);
  }
  return files;
}

/** The S3 prefix and keys of a published pipeline's report (index.html and its PNGs). */
export async function reportKeys(client: Client, config: Config, id: string): Promise<{ prefix: string; keys: string[] }> {
  const outcome = await publishedOf(client, id, 'report');
  const storage = makeStorage(config);
  const prefix = keyOfUri(outcome.metadataUri).replace(/metadata\.json$/, 'report/');
  const keys = await listKeys(storage, prefix);
  if (!keys.includes(`${prefix}index.html`)) throw new CliError(`pipeline ${id} has no report at s3://${storage.bucket}/${prefix} (published before reports existed, or it could not be written: see the worker's log)`, 'not-found');
  return { prefix, keys };
}

/** Writes a published pipeline's report (index.html and its PNGs) into `out`; returns index.html's path. */
export async function report(client: Client, config: Config, id: string, out: string): Promise<{ index: string; files: string[]; reportUri: string }> {
  const { prefix, keys } = await reportKeys(client, config, id);
  const storage = makeStorage(config);
  await mkdir(out, { recursive: true });
  const files = [];
  for (const key of keys) {
    const file = path.join(out, key.slice(prefix.length));
    await writeFile(`${file}.partial`, await getBytes(storage, key));
    await rename(`${file}.partial`, file);
    files.push(file);
  }
  return { index: path.join(out, 'index.html'), files, reportUri: `s3://${storage.bucket}/${prefix}index.html` };
}
