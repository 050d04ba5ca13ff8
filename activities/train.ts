// train: one GPU training job per pipeline. The worker downloads images and uploads the LoRA
// through presigned URLs made here, so nothing signed ever reaches workflow history.
import { z } from 'zod';
import { TrainJobOutput, TrainingParams, TriggerWord } from '../contract/gpu-job.js';
import type { DatasetManifest, TrainResult } from '../contract/pipeline.js';
import { getJson, presignGet, presignPut } from '../lib/s3.js';
import type { Captions } from './caption.js';
import type { ActivityDeps } from './deps.js';
import { runGpuJob } from './gpu-job.js';
import { parseInput } from './ingest.js';

export const TrainInput = z.object({
  runKey: z.string().min(1),
  manifestKey: z.string().min(1),
  captionsKey: z.string().min(1),
  triggerWord: TriggerWord,
  baseModel: z.string().min(1),
  params: TrainingParams,
});

export async function trainOnGpu(deps: ActivityDeps, raw: z.input<typeof TrainInput>): Promise<TrainResult> {
  const input = parseInput(TrainInput, raw);
  const stagingKey = `runs/${input.runKey}/lora.safetensors`;
  const job = await runGpuJob(
    deps,
    async (claimUrl) => {
      const [manifest, captions] = await Promise.all([
        getJson<DatasetManifest>(deps.storage, input.manifestKey),
        getJson<Captions>(deps.storage, input.captionsKey),
      ]);
      return {
        task: 'train',
        baseModel: input.baseModel,
        triggerWord: input.triggerWord,
        params: input.params,
        images: await Promise.all(
          manifest.images.map(async (i) => ({ id: i.id, url: await presignGet(deps.storage, i.key, 12 * 3600), caption: captions[i.id] ?? input.triggerWord })),
        ),
        output: { loraUrl: await presignPut(deps.storage, stagingKey) },
        ...(claimUrl ? { claim: { url: claimUrl } } : {}),
      };
    },
    TrainJobOutput,
    { claimPrefix: `runs/${input.runKey}/train-claims` },
  );
  return { gpuJobId: job.gpuJobId, stagingKey, lora: job.output.lora, metrics: job.output.metrics };
}
