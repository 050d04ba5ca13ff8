// One generation of a GPU stage's work: the presigned URLs its job gets (a write-once claim, its
// checkpoint, the newest earlier checkpoint to resume from), and who holds a claim.
import { ApplicationFailure, log } from '@temporalio/activity';
import { exists, getJson, listKeys, presignGet, presignPut, presignPutIfAbsent } from '../lib/s3.js';
import type { ActivityDeps } from './deps.js';

/** Where one stage keeps its claims and checkpoints (each `<prefix>/<generation>.<ext>`). */
export interface GenerationKeys {
  claimPrefix?: string;
  checkpointPrefix?: string;
}

/** What makeInput needs to build one generation's job: presigned URLs made at submit time. */
export interface Submission {
  claimUrl?: string;
  checkpointUrl?: string;
  resumeUrl?: string;
}

export const claimKey = (keys: GenerationKeys, generation: number) => (keys.claimPrefix ? `${keys.claimPrefix}/${generation}.json` : undefined);

/** Presigned URLs for one generation: its claim, its checkpoint, and the newest earlier checkpoint. */
export async function submissionFor(deps: Pick<ActivityDeps, 'storage'>, keys: GenerationKeys, generation: number): Promise<Submission> {
  const result: Submission = {};
  const claim = claimKey(keys, generation);
  if (claim) result.claimUrl = await presignPutIfAbsent(deps.storage, claim);
  if (keys.checkpointPrefix) {
    result.checkpointUrl = await presignPut(deps.storage, `${keys.checkpointPrefix}/${generation}.ckpt`);
    const earlier = (await listKeys(deps.storage, `${keys.checkpointPrefix}/`))
      .map((key) => ({ key, generation: Number(/\/(\d+)\.ckpt$/.exec(key)?.[1] ?? NaN) }))
      .filter((c) => c.generation < generation)
      .sort((a, b) => b.generation - a.generation)[0];
    if (earlier) result.resumeUrl = await presignGet(deps.storage, earlier.key, 12 * 3600);
  }
  return result;
}

/** The job id written in a claim, if the claim exists. */
export async function claimOwner(deps: Pick<ActivityDeps, 'storage'>, key: string | undefined): Promise<string | undefined> {
  if (!key || !(await exists(deps.storage, key))) return undefined;
  return (await getJson<{ jobId: string }>(deps.storage, key)).jobId;
}

/** Our job lost the claim: follow the job that holds it. */
export async function claimedElsewhere(deps: Pick<ActivityDeps, 'storage'>, gpuJobId: string, key: string | undefined): Promise<string> {
  const owner = await claimOwner(deps, key);
  if (!owner || owner === gpuJobId) {
    // Only if the answer to our own claim write was lost.
    throw ApplicationFailure.nonRetryable(`GPU job ${gpuJobId} could not confirm its claim on this training`, 'GpuClaimUnconfirmed');
  }
  log.info('another GPU job holds the claim on this training; following it', { gpuJobId, owner });
  return owner;
}
