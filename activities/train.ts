// train: one training, possibly several GPU jobs. The worker downloads images and uploads the LoRA,
// checkpoints and samples through presigned URLs made here, so nothing signed reaches workflow
// history. A job that ends a segment or dies is continued from its last checkpoint (gpu-job.ts).
import { ApplicationFailure, log } from '@temporalio/activity';
import { z } from 'zod';
import { Sha256, TrainJobOutput } from '../contract/gpu-job.js';
import { Budget, type Captions, type DatasetManifest, type TrainResult, TrainingSettings } from '../contract/pipeline.js';
import { sha256 } from '../lib/hash.js';
import { expandPrompts } from '../lib/prompts.js';
import { runKeys } from '../lib/keys.js';
import { getJson, presignGet, presignPut, urlLifetime } from '../lib/s3.js';
import type { ActivityDeps } from './deps.js';
import { encodingRefs } from './encodings.js';
import { runGpuJob, stageEndpoints } from './gpu-job.js';
import { parseInput } from './input.js';
import { budgetOf, gpuUsage } from './usage.js';

export const TrainInput = z.object({
  runKey: z.string().min(1),
  manifestKey: z.string().min(1),
  captionsKey: z.string().min(1),
  training: TrainingSettings,
  /** The run's GPU budget (price currency): its jobs are cancelled once their cost passes it. */
  budget: Budget.optional(),
  /** Start from these weights (resolveInitFrom): a published LoRA, or a final checkpoint to continue. */
  initFrom: z.object({ key: z.string().min(1), kind: z.enum(['lora', 'checkpoint']), sha256: Sha256 }).optional(),
  /** The GPU type the run is pinned to (`--gpu`): only endpoints of that type are used. */
  gpu: z.string().min(1).optional(),
});

export async function trainOnGpu(deps: ActivityDeps, raw: z.input<typeof TrainInput>): Promise<TrainResult> {
  const { runKey, manifestKey, captionsKey, training, budget, initFrom, gpu } = parseInput(TrainInput, raw);
  // Which endpoints fit this run (GPU memory for its model and settings, a pinned GPU type).
  const endpoints = stageEndpoints(deps, { baseModel: training.baseModel, params: training.params }, gpu);
  const { sampleEvery, samplePrompts, saveEvery, ...lora } = training;
  const keys = runKeys(runKey);
  const sampleSteps = stepsToSample(lora.params.steps, sampleEvery);
  const saveSteps = stepsToSave(lora.params.steps, saveEvery ?? 0);
  const prompts = samplePromptsOf(samplePrompts, lora.triggerWord);
  const [manifest, captions] = await Promise.all([getJson<DatasetManifest>(deps.storage, manifestKey), getJson<Captions>(deps.storage, captionsKey)]);
  const images = manifest.images.map((i) => ({ id: i.id, key: i.key, caption: captions[i.id] ?? lora.triggerWord }));

  const job = await runGpuJob(
    deps,
    async ({ generation, claim, resultUrl, checkpoint, resumeUrl }) => {
      const files = keys.generation('train', generation);
      await logUrlLifetime(deps, generation);
      // Asked anew for every job: a later segment reads what the earlier ones stored.
      const encodings = deps.gpuJobs.encodingCache ? await encodingRefs(deps.storage, lora, images, URL_LIFETIME_S) : undefined;
      return {
        task: 'train',
        ...lora,
        images: await Promise.all(
          images.map(async (i, n) => ({ id: i.id, url: await presignGet(deps.storage, i.key, URL_LIFETIME_S), caption: i.caption, ...(encodings ? { encoding: encodings[n] } : {}) })),
        ),
        output: { loraUrl: await presignPut(deps.storage, files.lora) },
        stopAfterSeconds: deps.gpuJobs.segmentSeconds,
        samples: {
          prompts,
          urls: Object.fromEntries(await Promise.all(sampleSteps.map(async (step) => [String(step), await Promise.all(prompts.map((_, i) => presignPut(deps.storage, files.sample(step, i))))]))),
        },
        ...(saveSteps.length ? { saves: { urls: Object.fromEntries(await Promise.all(saveSteps.map(async (step) => [String(step), await presignPut(deps.storage, files.save(step))]))) } } : {}),
        filesTag: files.prefix,
        claim,
        result: { url: resultUrl },
        // The final state too, so the published version can be extended without redoing a step.
        ...(checkpoint ? { checkpoint: { ...checkpoint, everySteps: deps.gpuJobs.checkpointEvery, finalUrl: await presignPut(deps.storage, files.finalCheckpoint, URL_LIFETIME_S) } } : {}),
        ...(resumeUrl ? { resume: { url: resumeUrl } } : {}),
        ...(initFrom ? { initFrom: { url: await presignGet(deps.storage, initFrom.key, URL_LIFETIME_S), kind: initFrom.kind } } : {}),
      };
    },
    TrainJobOutput,
    {
      runKey,
      stage: 'train',
      fingerprint: trainingFingerprint(lora, images, initFrom),
      isSegment: isTrainSegment,
      // Progress is what the next job can resume from: the checkpoint's step.
      stepOf: (output) => output.checkpoint?.step ?? output.step,
      budget: budgetOf(deps, runKey, budget),
      endpoints,
    },
  );

  // Each generation wrote its own files: a late writer of an earlier job cannot touch the last one's.
  // The worker reports the samples and saves an earlier job made (carried in its checkpoints) under
  // that job's files tag; a tag that is not one of this training's generation prefixes is refused.
  const samples = new Map<string, { step: number; prompt: number; key: string; sha256: string }>();
  const saves = new Map<number, { step: number; key: string; sha256: string; bytes: number }>();
  for (const { generation, output } of job.outputs) {
    const filesOf = (tag: string | undefined) => generationFiles(tag ?? keys.generation('train', generation).prefix, job.gpuJobId);
    for (const s of output.samples ?? []) {
      if (sampleSteps.includes(s.step) && s.prompt < prompts.length) samples.set(`${s.step}/${s.prompt}`, { step: s.step, prompt: s.prompt, key: filesOf(s.filesTag).sample(s.step, s.prompt), sha256: s.sha256 });
    }
    for (const s of output.saves ?? []) if (saveSteps.includes(s.step)) saves.set(s.step, { step: s.step, key: filesOf(s.filesTag).save(s.step), sha256: s.sha256, bytes: s.bytes });
  }
  const last = job.outputs.at(-1)!;
  const final = job.output.finalCheckpoint;
  return {
    gpuJobId: job.gpuJobId,
    gpuJobIds: job.gpuJobIds,
    stagingKey: keys.generation('train', last.generation).lora,
    lora: job.output.lora!,
    ...(final ? { finalCheckpoint: { key: keys.generation('train', last.generation).finalCheckpoint, ...final } } : {}),
    samples: [...samples.values()].sort((a, b) => a.step - b.step || a.prompt - b.prompt),
    ...(saves.size ? { saves: [...saves.values()].sort((a, b) => a.step - b.step) } : {}),
    metrics: { ...mergeMetrics(job.outputs.map((o) => o.output.metrics)), steps: job.output.step },
    usage: await gpuUsage(deps, runKey, job.timings),
  };
}

/** What a segment's URLs are signed for (a job may wait for a GPU before its segment starts). */
const URL_LIFETIME_S = 12 * 3600;

/** Each segment is signed anew, within what the signing credentials have left: said in the log,
 * as a warning when that is shorter than the segment may need. */
async function logUrlLifetime(deps: ActivityDeps, generation: number): Promise<void> {
  const { seconds, credentialsExpireAt } = await urlLifetime(deps.storage, URL_LIFETIME_S);
  const needed = deps.gpuJobs.segmentSeconds + deps.gpuJobs.setupSeconds;
  const fields = { generation, urlSeconds: seconds, ...(credentialsExpireAt ? { credentialsExpireAt: credentialsExpireAt.toISOString() } : {}) };
  if (seconds < needed) {
    log.warn('presigned URLs for this segment expire with the S3 credentials before the segment can end: its uploads may fail (403) and be retried with fresh URLs', { ...fields, neededSeconds: needed });
  } else {
    log.info('presigned URLs signed for this segment', fields);
  }
}

/**
 * A COMPLETED train job either finished (a LoRA) or ended a segment, which it can only do by
 * leaving a checkpoint for the next job. Neither is not a segment to continue from: the worker's
 * report cannot be trusted, and the training fails rather than paying for it again from the start.
 */
export function isTrainSegment(output: TrainJobOutput): boolean {
  if (output.lora) return false;
  if (!output.checkpoint) {
    throw ApplicationFailure.nonRetryable(`the GPU job reported COMPLETED at step ${output.step} with neither a LoRA nor a checkpoint`, 'GpuOutputInvalid');
  }
  return true;
}

/**
 * What makes two trainings the same one: base model, trigger word, every parameter, and each
 * image with its caption. Checkpoints are kept under it, so any run of the same training (a
 * retried request, a reset, a resubmission) resumes from the newest one; the worker checks its own
 * fingerprint inside the checkpoint too.
 */
export function trainingFingerprint(lora: Omit<TrainingSettings, 'sampleEvery' | 'samplePrompts' | 'saveEvery'>, images: { id: string; caption: string }[], initFrom?: { kind: string; sha256: string }): string {
  const { format: _format, ...trained } = lora; // the file layout is chosen at the end: not part of training
  // The weights it starts from are part of it (absent for a fresh start, so older fingerprints hold).
  const from = initFrom ? { initFrom: [initFrom.kind, initFrom.sha256] } : {};
  return sha256(JSON.stringify({ ...trained, ...from, images: images.map((i) => [i.id, i.caption]) }));
}

/** Every `every` steps, and always the last one. */
export function stepsToSample(steps: number, every: number): number[] {
  const picked = every > 0 ? Array.from({ length: Math.floor(steps / every) }, (_, i) => (i + 1) * every) : [];
  return [...new Set([...picked, steps])];
}

/** Every `every` steps before the last (the last one is the LoRA itself). */
export function stepsToSave(steps: number, every: number): number[] {
  return every > 0 ? Array.from({ length: Math.ceil(steps / every) - 1 }, (_, i) => (i + 1) * every) : [];
}

/** expandPrompts, its error not retried: the request itself is wrong. */
function samplePromptsOf(prompts: string[] | undefined, triggerWord: string): string[] {
  try {
    return expandPrompts(prompts, triggerWord);
  } catch (err) {
    throw ApplicationFailure.nonRetryable(`training.${(err as Error).message}`, 'InvalidInput');
  }
}

/** A generation's files from the tag the worker echoed: only one of this run's or another run's train generations. */
function generationFiles(tag: string, gpuJobId: string) {
  const m = /^runs\/(.+)\/train\/(\d+)$/.exec(tag);
  if (!m) throw ApplicationFailure.nonRetryable(`GPU job ${gpuJobId} reported files under ${JSON.stringify(tag)}, not a train generation's prefix`, 'GpuOutputInvalid');
  return runKeys(m[1]!).generation('train', Number(m[2]));
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
