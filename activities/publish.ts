// publish: only a verified artifact is published. The staged LoRA must exist with the sha256 the
// GPU worker reported (RunPod can say COMPLETED when the upload failed); then it is copied under
// loras/<name>/<version>/ with metadata.json. Re-running it writes the same objects: idempotent.
import { ApplicationFailure, log } from '@temporalio/activity';
import type { CaptionResult, IngestResult, PublishedLora, TrainRequest, TrainResult } from '../contract/pipeline.js';
import { copyObject, putBytes, s3Uri, sha256OfObject } from '../lib/s3.js';
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
  };
  await putBytes(deps.storage, metadataKey, JSON.stringify(metadata, null, 2), 'application/json');
  log.info('LoRA published', { uri: s3Uri(deps.storage, loraKey) });
  return { uri: s3Uri(deps.storage, loraKey), metadataUri: s3Uri(deps.storage, metadataKey), version, sha256: trained.lora.sha256, bytes: trained.lora.bytes };
}
