// One generation of a GPU stage's work: the presigned URLs its job gets (a write-once claim with its
// attempt markers, where to leave its result, its checkpoint, the newest checkpoint of the same
// training to resume from), and who holds a claim.
import { ApplicationFailure, log } from '@temporalio/activity';
import type { JobClaim } from '../contract/gpu-job.js';
import type { z } from 'zod';
import { checkpointKey, checkpointsOf, type GpuStage, runKeys } from '../lib/keys.js';
import { getBytesIfExists, listObjects, presignGet, presignPut, presignPutIfAbsent, putBytesIfAbsent } from '../lib/s3.js';
import type { ActivityDeps } from './deps.js';

/** Where one stage of one run keeps its generations' files. */
export interface StageKeys {
  runKey: string;
  stage: GpuStage;
  /** The training's fingerprint: its checkpoints live under it, shared by every run of it. */
  fingerprint?: string;
}

/** What makeInput needs to build one generation's job: presigned URLs made at submit time. */
export interface Submission {
  /** Which submission of the stage's work this is: its files are the generation's. */
  generation: number;
  claim: z.infer<typeof JobClaim>;
  resultUrl: string;
  checkpoint?: { url: string; readUrl: string };
  resumeUrl?: string;
}

/** Long enough for a job that waited in the queue and then ran a whole segment. */
const URL_LIFETIME_S = 12 * 3600;

export const claimKeyOf = (keys: StageKeys, generation: number) => runKeys(keys.runKey).generation(keys.stage, generation).claim;

/** Presigned URLs for one generation of a stage (`attempts` markers: how often its job may start). */
export async function submissionFor(deps: Pick<ActivityDeps, 'storage'>, keys: StageKeys, generation: number, attempts: number): Promise<Submission> {
  const g = runKeys(keys.runKey).generation(keys.stage, generation);
  const submission: Submission = {
    generation,
    claim: {
      url: await presignPutIfAbsent(deps.storage, g.claim, URL_LIFETIME_S),
      readUrl: await presignGet(deps.storage, g.claim, URL_LIFETIME_S),
      attemptUrls: await Promise.all(Array.from({ length: attempts }, (_, k) => presignPutIfAbsent(deps.storage, g.attempt(k), URL_LIFETIME_S))),
    },
    resultUrl: await presignPut(deps.storage, g.result, URL_LIFETIME_S),
  };
  if (keys.fingerprint) {
    const own = checkpointKey(keys.fingerprint, keys.runKey, generation);
    submission.checkpoint = { url: await presignPut(deps.storage, own, URL_LIFETIME_S), readUrl: await presignGet(deps.storage, own, URL_LIFETIME_S) };
    // The newest checkpoint of this training, from this run's earlier generations or from an
    // earlier run of the same request (a retried, reset or resubmitted run pays only for what is left).
    const newest = (await listObjects(deps.storage, `${checkpointsOf(keys.fingerprint)}/`)).filter((o) => o.key !== own).at(-1);
    if (newest) submission.resumeUrl = await presignGet(deps.storage, newest.key, URL_LIFETIME_S);
  }
  return submission;
}

/** The job id written in a generation's claim, if it exists. */
export async function claimOwner(deps: Pick<ActivityDeps, 'storage'>, keys: StageKeys, generation: number): Promise<string | undefined> {
  const bytes = await getBytesIfExists(deps.storage, claimKeyOf(keys, generation));
  return bytes ? (JSON.parse(bytes.toString('utf8')) as { jobId?: string }).jobId : undefined;
}

/** The claim's holder when a stage left the generation behind (abandonGeneration). */
const ABANDONED = 'abandoned:';
export const isAbandoned = (holder: string) => holder.startsWith(ABANDONED);

/**
 * The stage leaves a generation behind (its job was cancelled in the queue and the work moves to
 * another endpoint): its claim is taken in no job's name, so any other job holding the same input
 * (one created by a /run whose answer was lost) stops at the claim instead of doing paid work no
 * one will use. Undefined when taken (or the claim can't be read); else the job that claimed the
 * generation first.
 */
export async function abandonGeneration(deps: Pick<ActivityDeps, 'storage'>, keys: StageKeys, generation: number, cancelledJobId: string): Promise<string | undefined> {
  if (await putBytesIfAbsent(deps.storage, claimKeyOf(keys, generation), JSON.stringify({ jobId: `${ABANDONED}${cancelledJobId}` }), 'application/json')) return undefined;
  const holder = await claimOwner(deps, keys, generation);
  return holder && !isAbandoned(holder) ? holder : undefined;
}

/** Our job lost the claim: follow the job that holds it. */
export async function claimedElsewhere(deps: Pick<ActivityDeps, 'storage'>, gpuJobId: string, keys: StageKeys, generation: number): Promise<string> {
  const owner = await claimOwner(deps, keys, generation);
  if (!owner || owner === gpuJobId) {
    // A worker answers CLAIMED only for a claim holding another job's id.
    throw ApplicationFailure.nonRetryable(`GPU job ${gpuJobId} stopped at a claim it could not read back`, 'GpuClaimUnconfirmed');
  }
  log.info('another GPU job holds the claim on this work; following it', { gpuJobId, owner });
  return owner;
}

/** The result a job left next to its outputs (it outlives RunPod's retention), if any. */
export async function storedResult(deps: Pick<ActivityDeps, 'storage'>, keys: StageKeys, generation: number): Promise<unknown> {
  const bytes = await getBytesIfExists(deps.storage, runKeys(keys.runKey).generation(keys.stage, generation).result);
  return bytes ? (JSON.parse(bytes.toString('utf8')) as unknown) : undefined;
}
