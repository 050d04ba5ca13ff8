// The run's own account of its GPU jobs, in S3: RunPod forgets a job's result and timings about
// 30 minutes after it ends, so each job is recorded when it is submitted (or found through its
// claim), and its final state and billed timings as soon as they are first seen. Cost, budget,
// cleanup, `loraflow logs` and the janitor read these records; the open-jobs index lists the jobs
// that may still run, whatever became of their run.
import { log } from '@temporalio/activity';
import type { GpuStage } from '../lib/keys.js';
import { openGpuJobKey, runKeys } from '../lib/keys.js';
import { deleteObject, getBytesIfExists, getJson, listKeys, putBytes } from '../lib/s3.js';
import type { ActivityDeps } from './deps.js';
import type { GpuJobTiming } from './gpu-result.js';

export interface GpuJobRecord {
  gpuJobId: string;
  stage: GpuStage;
  generation: number;
  workflowId: string;
  runId: string;
  submittedAt: string;
  /** The endpoint it was submitted to (absent in records older than several endpoints). */
  endpointId?: string;
  /** Why the stage came to this endpoint from the one before it. */
  movedFrom?: { from: string; gpuJobId?: string; reason: string };
  /** How the job ended, written when first seen: the endpoint purges it later. */
  final?: GpuJobTiming & {
    seenAt: string;
    /** Where the timing comes from: the endpoint's /status, the worker's own result (the endpoint
     * had purged it), or nowhere. */
    timing: 'endpoint' | 'worker' | 'unknown';
    error?: string;
  };
}

/** An open-jobs index entry: enough for the janitor to find the job's run. */
export interface OpenGpuJob {
  gpuJobId: string;
  runKey: string;
  workflowId: string;
  runId: string;
}

const JSON_TYPE = 'application/json';

/** Records a job the run submitted or follows (through a claim), and lists it as open. */
export async function recordJob(deps: Pick<ActivityDeps, 'storage'>, runKey: string, record: GpuJobRecord): Promise<void> {
  const key = runKeys(runKey).gpuJob(record.gpuJobId);
  if (await getBytesIfExists(deps.storage, key)) return; // followed again after a retry: keep the first record
  await putBytes(deps.storage, key, JSON.stringify(record), JSON_TYPE);
  const open: OpenGpuJob = { gpuJobId: record.gpuJobId, runKey, workflowId: record.workflowId, runId: record.runId };
  await putBytes(deps.storage, openGpuJobKey(record.gpuJobId), JSON.stringify(open), JSON_TYPE);
}

/** Writes how a job ended (once) and takes it off the open-jobs index. */
export async function recordFinal(deps: Pick<ActivityDeps, 'storage'>, runKey: string, gpuJobId: string, final: NonNullable<GpuJobRecord['final']>): Promise<void> {
  const key = runKeys(runKey).gpuJob(gpuJobId);
  const bytes = await getBytesIfExists(deps.storage, key);
  if (bytes) {
    const record = JSON.parse(bytes.toString('utf8')) as GpuJobRecord;
    // The endpoint's own timing wins over the worker's estimate; a final state is never rewritten otherwise.
    if (!record.final || (record.final.timing !== 'endpoint' && final.timing === 'endpoint')) {
      await putBytes(deps.storage, key, JSON.stringify({ ...record, final }), JSON_TYPE);
    }
  } else {
    log.warn('final state of a GPU job without a record', { gpuJobId });
  }
  await deleteObject(deps.storage, openGpuJobKey(gpuJobId));
}

/** Every GPU job the run recorded, oldest submission first. */
export async function jobRecords(deps: Pick<ActivityDeps, 'storage'>, runKey: string): Promise<GpuJobRecord[]> {
  const keys = await listKeys(deps.storage, `${runKeys(runKey).gpuJobs}/`);
  const records = await Promise.all(keys.map((key) => getJson<GpuJobRecord>(deps.storage, key)));
  return records.sort((a, b) => a.submittedAt.localeCompare(b.submittedAt) || a.generation - b.generation);
}
