// publish: only a verified artifact is published. The staged LoRA must exist with the sha256 the
// GPU worker reported (RunPod can say COMPLETED when the upload failed); then it is copied under
// loras/<name>/<version>/ with metadata.json, and loras/<name>/latest.json names it (with its dataset's
// manifest sha256). Re-running it writes the same objects: idempotent.
import { ApplicationFailure, log } from '@temporalio/activity';
import { z } from 'zod';
import { LoraName, type CaptionResult, type IngestResult, type LatestPublished, type PublishedLora, type TrainRequest, type TrainResult } from '../contract/pipeline.js';
import { copyObject, getBytesIfExists, putBytes, s3Uri, sha256OfObject } from '../lib/s3.js';
import { parseInput } from './ingest.js';
import type { ActivityDeps } from './deps.js';

export interface PublishInput {
  request: TrainRequest;
  version: string;
  dataset: IngestResult;
  captions: CaptionResult;
  trained: TrainResult;
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

  const prefix = `loras/${request.name}/${version}`;
  const loraKey = `${prefix}/lora.safetensors`;
  const metadataKey = `${prefix}/metadata.json`;
  await copyObject(deps.storage, trained.stagingKey, loraKey);
  const samples = [];
  for (const sample of trained.samples) {
    const key = `${prefix}/samples/step-${sample.step}.png`;
    await copyObject(deps.storage, sample.key, key);
    samples.push({ step: sample.step, sha256: sample.sha256, uri: s3Uri(deps.storage, key) });
  }
  const metadata = {
    name: request.name,
    version,
    triggerWord: request.triggerWord,
    baseModel: request.baseModel,
    params: request.params,
    format: request.format,
    sampleEvery: request.sampleEvery,
    lora: trained.lora,
    samples,
    dataset: { manifestSha256: input.dataset.manifestSha256, images: input.dataset.imageCount, captions: input.captions },
    gpuJobIds: trained.gpuJobIds,
    metrics: trained.metrics,
    ...(trained.usage ? { usage: trained.usage } : {}),
    ...(request.budget !== undefined ? { budget: request.budget } : {}),
  };
  await putBytes(deps.storage, metadataKey, JSON.stringify(metadata, null, 2), 'application/json');
  await recordLatest(deps, {
    name: request.name,
    version,
    manifestSha256: input.dataset.manifestSha256,
    uri: s3Uri(deps.storage, loraKey),
    metadataUri: s3Uri(deps.storage, metadataKey),
  });
  log.info('LoRA published', { uri: s3Uri(deps.storage, loraKey) });
  return {
    uri: s3Uri(deps.storage, loraKey),
    metadataUri: s3Uri(deps.storage, metadataKey),
    version,
    sha256: trained.lora.sha256,
    bytes: trained.lora.bytes,
    ...(trained.usage ? { usage: trained.usage } : {}),
  };
}

const latestKey = (name: string) => `loras/${name}/latest.json`;

/** loras/<name>/latest.json names the newest version (versions sort by start time): an older run
 * finishing late does not take it back. */
async function recordLatest(deps: ActivityDeps, latest: LatestPublished): Promise<void> {
  const current = await readLatest(deps, latest.name);
  if (current && current.version > latest.version) return;
  await putBytes(deps.storage, latestKey(latest.name), JSON.stringify(latest, null, 2), 'application/json');
}

async function readLatest(deps: ActivityDeps, name: string): Promise<LatestPublished | undefined> {
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
