// publish: only verified artifacts are published. The staged LoRA and samples must exist with the
// sha256s the GPU worker reported (RunPod can say COMPLETED when the upload failed); then it is copied under
// loras/<name>/<version>/ with metadata.json, and loras/<name>/latest.json names it (with its
// dataset's manifest sha256). Re-running it writes the same objects: idempotent.
import { ApplicationFailure, log } from '@temporalio/activity';
import { z } from 'zod';
import { type CaptionResult, type IngestResult, type LatestPublished, type LoraMetadata, LoraName, type PublishedLora, type ResolvedInitFrom, type TrainRequest, type TrainResult } from '../contract/pipeline.js';
import { latestKey, loraKeys } from '../lib/keys.js';
import { expandPrompts } from '../lib/prompts.js';
import { copyObject, getBytesIfExists, putBytes, s3Uri, sha256OfObject, SourceChanged } from '../lib/s3.js';
import type { ActivityDeps } from './deps.js';
import { parseInput } from './input.js';

export interface PublishInput {
  request: TrainRequest;
  version: string;
  dataset: IngestResult;
  captions: CaptionResult;
  trained: TrainResult;
  /** The version the training started from (resolveInitFrom). */
  initFrom?: ResolvedInitFrom['parent'];
}

export async function publishLora(deps: ActivityDeps, input: PublishInput): Promise<PublishedLora> {
  const { request, version, trained } = input;
  const staged = await sha256OfObject(deps.storage, trained.stagingKey);
  if (!staged) {
    throw ApplicationFailure.nonRetryable(
      `GPU job ${trained.gpuJobId} reported COMPLETED but its LoRA is missing at ${s3Uri(deps.storage, trained.stagingKey)}`,
      'ArtifactNotVerified',
    );
  }
  if (staged.sha256 !== trained.lora.sha256 || staged.bytes !== trained.lora.bytes) {
    throw ApplicationFailure.nonRetryable(
      `GPU job ${trained.gpuJobId}: the stored LoRA (sha256 ${staged.sha256}, ${staged.bytes} bytes) is not what the worker reported (sha256 ${trained.lora.sha256}, ${trained.lora.bytes} bytes)`,
      'ArtifactNotVerified',
    );
  }

  // Samples are verified like the LoRA, all before anything is copied: what is published is what
  // the worker reported rendering, and a refusal publishes nothing.
  const verified = [];
  for (const sample of trained.samples) {
    const stored = await sha256OfObject(deps.storage, sample.key);
    if (!stored || stored.sha256 !== sample.sha256) {
      throw ApplicationFailure.nonRetryable(
        `GPU job ${trained.gpuJobId}: sample of step ${sample.step} at ${s3Uri(deps.storage, sample.key)} is ${stored ? `sha256 ${stored.sha256}` : 'missing'}, the worker reported sha256 ${sample.sha256}`,
        'ArtifactNotVerified',
      );
    }
    verified.push({ ...sample, etag: stored.etag });
  }
  // Intermediate LoRAs likewise: sha256 and size as the worker reported them.
  const savesVerified = [];
  for (const save of trained.saves ?? []) {
    const stored = await sha256OfObject(deps.storage, save.key);
    if (!stored || stored.sha256 !== save.sha256 || stored.bytes !== save.bytes) {
      throw ApplicationFailure.nonRetryable(
        `GPU job ${trained.gpuJobId}: the LoRA of step ${save.step} at ${s3Uri(deps.storage, save.key)} is ${stored ? `sha256 ${stored.sha256}, ${stored.bytes} bytes` : 'missing'}, the worker reported sha256 ${save.sha256}, ${save.bytes} bytes`,
        'ArtifactNotVerified',
      );
    }
    savesVerified.push({ ...save, etag: stored.etag });
  }
  // The final checkpoint (for `loraflow extend`) likewise; a training without one publishes without it.
  const final = trained.finalCheckpoint;
  const finalStored = final ? await sha256OfObject(deps.storage, final.key) : undefined;
  if (final && (!finalStored || finalStored.sha256 !== final.sha256)) {
    throw ApplicationFailure.nonRetryable(`GPU job ${trained.gpuJobId}: the final checkpoint at ${s3Uri(deps.storage, final.key)} is ${finalStored ? `sha256 ${finalStored.sha256}` : 'missing'}, the worker reported sha256 ${final.sha256}`, 'ArtifactNotVerified');
  }

  const keys = loraKeys(request.name, version);
  // Only the bytes just verified: a late writer (a job cancelled or timed out but still running)
  // that overwrote a staged file since then makes the copy fail, and the retry verifies again.
  const copyVerified = (from: string, to: string, etag: string) =>
    copyObject(deps.storage, from, to, { ifMatch: etag }).catch((err: unknown) => {
      if (err instanceof SourceChanged) throw ApplicationFailure.retryable(`the staged file ${from} changed while it was being published`, 'ArtifactChanged');
      throw err;
    });
  await copyVerified(trained.stagingKey, keys.lora, staged.etag);
  const samples = [];
  for (const sample of verified) {
    const to = keys.sample(sample.step, sample.prompt);
    await copyVerified(sample.key, to, sample.etag);
    samples.push({ step: sample.step, prompt: sample.prompt, sha256: sample.sha256, uri: s3Uri(deps.storage, to) });
  }
  const savedSteps = [];
  for (const save of savesVerified) {
    await copyVerified(save.key, keys.stepLora(save.step), save.etag);
    savedSteps.push({ step: save.step, sha256: save.sha256, bytes: save.bytes, uri: s3Uri(deps.storage, keys.stepLora(save.step)) });
  }
  if (final && finalStored) await copyVerified(final.key, keys.checkpoint, finalStored.etag);
  // The captions it was trained on, beside it: what a review changed, and what extend trains on.
  await copyObject(deps.storage, input.captions.captionsKey, keys.captions);
  const skippedFiles = input.dataset.skippedCount ? { count: input.dataset.skippedCount, files: input.dataset.skipped ?? [] } : undefined;
  const metadata: LoraMetadata = {
    name: request.name,
    version,
    ...request.training,
    lora: trained.lora,
    samples,
    prompts: expandPrompts(request.training.samplePrompts, request.training.triggerWord),
    ...(savedSteps.length ? { savedSteps } : {}),
    dataset: { manifestSha256: input.dataset.manifestSha256, images: input.dataset.imageCount, captions: input.captions, ...(skippedFiles ? { skippedFiles } : {}) },
    gpuJobIds: trained.gpuJobIds,
    metrics: trained.metrics,
    ...(trained.usage ? { usage: trained.usage } : {}),
    ...(request.budget !== undefined ? { budget: request.budget } : {}),
    ...(request.hub ? { hub: request.hub } : {}),
    ...(input.initFrom ? { initFrom: input.initFrom } : {}),
    ...(request.captions ? { captionSettings: request.captions } : {}),
    ...(final ? { checkpoint: { sha256: final.sha256, bytes: final.bytes, step: final.step, uri: s3Uri(deps.storage, keys.checkpoint) } } : {}),
  };
  await putBytes(deps.storage, keys.metadata, JSON.stringify(metadata, null, 2), 'application/json');
  const published = { uri: s3Uri(deps.storage, keys.lora), metadataUri: s3Uri(deps.storage, keys.metadata) };
  await recordLatest(deps, { name: request.name, version, manifestSha256: input.dataset.manifestSha256, ...published });
  log.info('LoRA published', { uri: published.uri });
  return { ...published, version, sha256: trained.lora.sha256, bytes: trained.lora.bytes, ...(trained.usage ? { usage: trained.usage } : {}), ...(skippedFiles ? { skippedFiles } : {}) };
}

/** loras/<name>/latest.json names the newest version (versions sort by start time): an older run
 * finishing late does not take it back. */
export async function recordLatest(deps: Pick<ActivityDeps, 'storage'>, latest: LatestPublished, opts: { force?: boolean } = {}): Promise<void> {
  const current = await readLatest(deps, latest.name);
  if (!opts.force && current && current.version > latest.version) return;
  await putBytes(deps.storage, latestKey(latest.name), JSON.stringify(latest, null, 2), 'application/json');
}

export async function readLatest(deps: Pick<ActivityDeps, 'storage'>, name: string): Promise<LatestPublished | undefined> {
  const bytes = await getBytesIfExists(deps.storage, latestKey(name));
  return bytes ? (JSON.parse(bytes.toString('utf8')) as LatestPublished) : undefined;
}

export const LatestInput = z.object({ name: LoraName });

/** The newest published version of a LoRA name (scheduled runs compare its dataset with theirs). */
export async function latestPublished(deps: ActivityDeps, raw: z.input<typeof LatestInput>): Promise<{ latest?: LatestPublished }> {
  const { name } = parseInput(LatestInput, raw);
  const latest = await readLatest(deps, name);
  return latest ? { latest } : {};
}
