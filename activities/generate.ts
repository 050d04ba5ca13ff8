// generate: images from published LoRAs, as durable as a training. resolveLoras pins each LoRA to
// a version (what `latest` named at the start goes into history), generateOnGpu runs one generate
// job through the same job loop as training (claim, records, resume, cancel, budget: gpu-job.ts),
// and storeGeneration publishes only what was verified: each staged PNG must have the sha256 the
// worker reported, then it is copied (ETag-conditional) under the LoRA version with generation.json.
import { ApplicationFailure, log } from '@temporalio/activity';
import { z } from 'zod';
import { GenerateJobOutput, GenerateParams } from '../contract/gpu-job.js';
import { Budget, type GeneratedImages, type GenerationResult, LoraRef, type LatestPublished, type LoraMetadata, type ResolvedLora } from '../contract/pipeline.js';
import { generationKeys, latestKey, loraKeys, runKeys } from '../lib/keys.js';
import { copyObject, getBytesIfExists, presignGet, presignPut, putBytes, s3Uri, sha256OfObject, SourceChanged } from '../lib/s3.js';
import type { ActivityDeps } from './deps.js';
import { runGpuJob } from './gpu-job.js';
import { parseInput } from './input.js';
import { budgetOf, gpuUsage } from './usage.js';

export const ResolveInput = z.object({ loras: z.array(LoraRef).min(1).max(8) });

/** Each LoRA's version (latest.json's when none is named) and its published file; one base model for all. */
export async function resolveLoras(deps: ActivityDeps, raw: z.input<typeof ResolveInput>): Promise<{ loras: ResolvedLora[] }> {
  const { loras } = parseInput(ResolveInput, raw);
  const notFound = (message: string) => ApplicationFailure.nonRetryable(message, 'LoraNotFound');
  const resolved: ResolvedLora[] = [];
  for (const [i, ref] of loras.entries()) {
    let version = ref.version;
    if (!version) {
      const latest = await getBytesIfExists(deps.storage, latestKey(ref.name));
      if (!latest) throw notFound(`loras.${i}: no published LoRA named ${ref.name}`);
      version = (JSON.parse(latest.toString('utf8')) as LatestPublished).version;
    }
    const keys = loraKeys(ref.name, version);
    const metadata = await getBytesIfExists(deps.storage, keys.metadata);
    if (!metadata) throw notFound(`loras.${i}: ${ref.name}@${version} is not published (no ${keys.metadata})`);
    const m = JSON.parse(metadata.toString('utf8')) as LoraMetadata;
    resolved.push({ name: ref.name, version, key: keys.lora, sha256: m.lora.sha256, baseModel: m.baseModel, weight: ref.weight });
  }
  const other = resolved.find((l) => l.baseModel !== resolved[0]!.baseModel);
  if (other) {
    throw ApplicationFailure.nonRetryable(`loras: ${other.name}@${other.version} was trained on ${other.baseModel}, ${resolved[0]!.name}@${resolved[0]!.version} on ${resolved[0]!.baseModel}: LoRAs of one generation share a base model`, 'InvalidInput');
  }
  return { loras: resolved };
}

export const GenerateInput = z.object({
  runKey: z.string().min(1),
  loras: z.array(z.object({ name: z.string(), version: z.string(), key: z.string(), sha256: z.string(), baseModel: z.string(), weight: z.number() })).min(1),
  params: GenerateParams,
  budget: Budget.optional(),
});

/** What a generate job's presigned URLs are signed for (it may wait in the queue first). */
const URL_LIFETIME_S = 12 * 3600;

export async function generateOnGpu(deps: ActivityDeps, raw: z.input<typeof GenerateInput>): Promise<GeneratedImages> {
  const { runKey, loras, params, budget } = parseInput(GenerateInput, raw);
  const count = params.prompts.length * params.n;
  const job = await runGpuJob(
    deps,
    async ({ generation, claim, resultUrl }) => {
      const files = runKeys(runKey).generation('generate', generation);
      return {
        task: 'generate',
        ...params,
        baseModel: loras[0]!.baseModel,
        loras: await Promise.all(loras.map(async (l) => ({ url: await presignGet(deps.storage, l.key, URL_LIFETIME_S), sha256: l.sha256, weight: l.weight }))),
        output: {
          images: await Promise.all(Array.from({ length: count }, (_, k) => presignPut(deps.storage, files.image(k), URL_LIFETIME_S))),
          contactSheet: await presignPut(deps.storage, files.contactSheet, URL_LIFETIME_S),
        },
        claim,
        result: { url: resultUrl },
      };
    },
    GenerateJobOutput,
    { runKey, stage: 'generate', budget: budgetOf(deps, runKey, budget) },
  );
  const last = job.outputs.at(-1)!;
  const files = runKeys(runKey).generation('generate', last.generation);
  if (job.output.images.length !== count) {
    throw ApplicationFailure.nonRetryable(`GPU job ${job.gpuJobId} reported ${job.output.images.length} images, ${count} were asked for`, 'GpuOutputInvalid');
  }
  return {
    gpuJobId: job.gpuJobId,
    gpuJobIds: job.gpuJobIds,
    images: job.output.images.map((image, k) => ({ prompt: image.prompt, seed: image.seed, sha256: image.sha256, key: files.image(k) })),
    contactSheet: { sha256: job.output.contactSheet.sha256, key: files.contactSheet },
    metrics: job.output.metrics,
    usage: await gpuUsage(deps, runKey, job.timings),
  };
}

export interface StoreInput {
  id: string;
  loras: ResolvedLora[];
  params: GenerateParams;
  generated: GeneratedImages;
}

/** Verifies every staged file, then copies it under the first LoRA's version; idempotent. */
export async function storeGeneration(deps: ActivityDeps, input: StoreInput): Promise<GenerationResult> {
  const { id, loras, params, generated } = input;
  const keys = generationKeys(loras[0]!.name, loras[0]!.version, id);
  const files = [
    ...generated.images.map((image) => ({ ...image, to: keys.image(image.prompt, image.seed) })),
    { ...generated.contactSheet, to: keys.contactSheet },
  ];
  const verified = [];
  for (const file of files) {
    const stored = await sha256OfObject(deps.storage, file.key);
    if (!stored || stored.sha256 !== file.sha256) {
      throw ApplicationFailure.nonRetryable(
        `GPU job ${generated.gpuJobId}: ${s3Uri(deps.storage, file.key)} is ${stored ? `sha256 ${stored.sha256}` : 'missing'}, the worker reported sha256 ${file.sha256}`,
        'ArtifactNotVerified',
      );
    }
    verified.push({ ...file, etag: stored.etag });
  }
  for (const file of verified) {
    await copyObject(deps.storage, file.key, file.to, { ifMatch: file.etag }).catch((err: unknown) => {
      if (err instanceof SourceChanged) throw ApplicationFailure.retryable(`the staged file ${file.key} changed while it was being stored`, 'ArtifactChanged');
      throw err;
    });
  }
  const result: GenerationResult = {
    id,
    uri: s3Uri(deps.storage, `${keys.prefix}/`),
    loras,
    baseModel: loras[0]!.baseModel,
    params,
    images: generated.images.map((image) => ({ prompt: image.prompt, seed: image.seed, sha256: image.sha256, uri: s3Uri(deps.storage, keys.image(image.prompt, image.seed)) })),
    contactSheet: { sha256: generated.contactSheet.sha256, uri: s3Uri(deps.storage, keys.contactSheet) },
    metrics: generated.metrics,
    gpuJobIds: generated.gpuJobIds,
    usage: generated.usage,
  };
  await putBytes(deps.storage, keys.record, JSON.stringify(result, null, 2), 'application/json');
  log.info('generation stored', { uri: result.uri, images: result.images.length });
  return result;
}
