// train: one training, possibly several GPU jobs. The worker downloads images and uploads the LoRA,
// checkpoints and samples through presigned URLs made here, so nothing signed reaches workflow
// history. A job that ends a segment or dies is continued from its last checkpoint (gpu-job.ts).
import { z } from 'zod';
import { TrainJobOutput, TrainingParams, TriggerWord } from '../contract/gpu-job.js';
import type { DatasetManifest, TrainResult } from '../contract/pipeline.js';
import { getJson, presignGet, presignPut } from '../lib/s3.js';
import type { Captions } from './caption.js';
import type { ActivityDeps } from './deps.js';
import { runGpuJob } from './gpu-job.js';
import { parseInput } from './ingest.js';
import { budgetGuard, gpuUsage } from './usage.js';

export const TrainInput = z.object({
  runKey: z.string().min(1),
  manifestKey: z.string().min(1),
  captionsKey: z.string().min(1),
  triggerWord: TriggerWord,
  baseModel: z.string().min(1),
  params: TrainingParams,
  format: z.enum(['diffusers', 'kohya']).default('diffusers'),
  sampleEvery: z.int().min(0).default(0),
  /** The run's GPU budget (price currency): its jobs are cancelled once their cost passes it. */
  budget: z.number().positive().optional(),
});

const DEFAULT_TRAINING = { checkpointEvery: 50, segmentSeconds: 480 };

export async function trainOnGpu(deps: ActivityDeps, raw: z.input<typeof TrainInput>): Promise<TrainResult> {
  const input = parseInput(TrainInput, raw);
  const training = deps.training ?? DEFAULT_TRAINING;
  const run = `runs/${input.runKey}`;
  const stagingKey = `${run}/lora.safetensors`;
  const sampleKey = (step: number) => `${run}/samples/step-${step}.png`;
  const sampleSteps = stepsToSample(input.params.steps, input.sampleEvery);

  const job = await runGpuJob(
    deps,
    async ({ claimUrl, checkpointUrl, resumeUrl }) => {
      const [manifest, captions] = await Promise.all([
        getJson<DatasetManifest>(deps.storage, input.manifestKey),
        getJson<Captions>(deps.storage, input.captionsKey),
      ]);
      return {
        task: 'train',
        baseModel: input.baseModel,
        triggerWord: input.triggerWord,
        params: input.params,
        format: input.format,
        images: await Promise.all(
          manifest.images.map(async (i) => ({ id: i.id, url: await presignGet(deps.storage, i.key, 12 * 3600), caption: captions[i.id] ?? input.triggerWord })),
        ),
        output: { loraUrl: await presignPut(deps.storage, stagingKey) },
        stopAfterSeconds: training.segmentSeconds,
        samples: {
          prompt: input.triggerWord,
          urls: Object.fromEntries(await Promise.all(sampleSteps.map(async (step) => [String(step), await presignPut(deps.storage, sampleKey(step))]))),
        },
        ...(claimUrl ? { claim: { url: claimUrl } } : {}),
        ...(checkpointUrl ? { checkpoint: { url: checkpointUrl, everySteps: training.checkpointEvery } } : {}),
        ...(resumeUrl ? { resume: { url: resumeUrl } } : {}),
      };
    },
    TrainJobOutput,
    {
      claimPrefix: `${run}/train-claims`,
      checkpointPrefix: `${run}/checkpoints`,
      jobsPrefix: `${run}/gpu-jobs`,
      isSegment: (output) => !output.lora,
      ...(input.budget ? { budget: budgetGuard(deps, input.runKey, input.budget) } : {}),
    },
  );

  const outputs = job.outputs;
  const samples = new Map<number, string>();
  for (const output of outputs) for (const sample of output.samples ?? []) samples.set(sample.step, sample.sha256);
  return {
    gpuJobId: job.gpuJobId,
    gpuJobIds: job.gpuJobIds,
    stagingKey,
    lora: job.output.lora!,
    samples: [...samples].sort(([a], [b]) => a - b).map(([step, sha256]) => ({ step, key: sampleKey(step), sha256 })),
    metrics: { ...mergeMetrics(outputs.map((o) => o.metrics)), steps: job.output.step },
    usage: await gpuUsage(deps, input.runKey, job.timings),
  };
}

/** Every `every` steps, and always the last one. */
export function stepsToSample(steps: number, every: number): number[] {
  const picked = every > 0 ? Array.from({ length: Math.floor(steps / every) }, (_, i) => (i + 1) * every) : [];
  return [...new Set([...picked, steps])];
}

type Metrics = TrainResult['metrics'];

/**
 * One training's metrics from its jobs. The worker carries the loss history in its checkpoints,
 * so the last job's curve and final loss cover the whole training; steps and phase seconds are
 * what each job spent (steps redone after a crash count: they were paid for), peaks are maxed.
 */
export function mergeMetrics(parts: Metrics[]): Metrics & { stepsPaid: number } {
  const last = parts.at(-1)!;
  const seconds: Record<string, number> = {};
  for (const p of parts) for (const [phase, s] of Object.entries(p.seconds)) seconds[phase] = (seconds[phase] ?? 0) + s;
  const peaks = parts.map((p) => p.peakMemoryBytes).filter((b): b is number => b !== undefined);
  return {
    ...last,
    stepsPaid: parts.reduce((n, p) => n + p.steps, 0),
    seconds,
    ...(peaks.length ? { peakMemoryBytes: Math.max(...peaks) } : {}),
  };
}
